"""The websocket: the live feed out, deposit/withdraw/transfer requests in.

Only a signed-in user's handshake is accepted (the session cookie, or a bearer
token): any other is refused with HTTP 401 before it is accepted. Each connection
carries what its user may see (staff: everything; a customer: their own accounts
and the transactions that touch them), and its requests go through the same use
cases as the REST API's. The session is checked again with every request and every
SESSION_CHECK_SECONDS: once it is revoked or expired, the connection is closed with
SIGNED_OUT_CLOSE_CODE (4401) and the reason "signed out".

Whatever a client sends, the handler answers and carries on: a binary frame,
text that is not JSON (or nested too deeply to parse), JSON that is not a request
object or a request that is not valid each get an error reply, recorded nothing,
and repeat at most a bounded request_id. A message over MAX_MESSAGE_BYTES ends
the connection with close code 1009 and a reason; uvicorn's ws_max_size (the
server's setting) refuses larger ones the same way before they reach the app.

While the bank is busy (too many commands wait: bankaccounts.backpressure), a
request is refused, recording nothing, with an error reply that says when to try
again, in words and as "retry_after" seconds, as REST's 503 does with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from json import JSONDecodeError
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from bankaccounts.exceptions import (
    BusyError,
    CommandConflictError,
    ForbiddenError,
    TransactionError,
)
from bankaccounts.web.api import get_banking
from bankaccounts.web.auth import authenticate_websocket
from bankaccounts.web.feed import RECONNECT_CLOSE_CODE, encode
from bankaccounts.web.schemas import (
    CLIENT_MESSAGE,
    DepositMessage,
    TransferMessage,
    WithdrawMessage,
    load_json,
    to_request_id,
)
from bankaccounts.web.security import (
    WEBSOCKET_POLICY_VIOLATION,
    AllowedHosts,
    origin_matches_host,
)

if TYPE_CHECKING:
    from uuid import UUID

    from bankaccounts.usecases import Banking
    from bankaccounts.users import Actor
    from bankaccounts.web.feed import FeedClient, FeedHub

logger = logging.getLogger(__name__)

MESSAGE_TOO_BIG = 1009
#: The largest message read (a real request is about 200 bytes); uvicorn's
#: ws_max_size should be no larger, so that it is not buffered first.
MAX_MESSAGE_BYTES = 64 * 1024
#: Longest field name repeated in an error reply (an unknown field may be any size).
MAX_FIELD_NAME = 64
BACKLOG_PAGE = 500
#: Closes a connection whose session was revoked or has expired (4000-4999 are the
#: application's own; 4401 reads as HTTP's 401).
SIGNED_OUT_CLOSE_CODE = 4401
#: How often an open connection's session is checked again (and with each request).
SESSION_CHECK_SECONDS = 5.0
_POSITION = re.compile(r"[0-9]{1,18}")
_TOO_BIG = f"message too big: at most {MAX_MESSAGE_BYTES} bytes"
router = APIRouter()


def is_same_origin(websocket: WebSocket) -> bool:
    """True unless a page from another origin, or from a host not allowed, opened it."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser page: browsers always send Origin
    allowed: AllowedHosts = websocket.app.state.allowed_hosts
    return origin_matches_host(origin, websocket.headers.get("host"), allowed)


@router.websocket("/ws")
async def feed_socket(websocket: WebSocket) -> None:
    """Sends the feed after ?after=<position>, then live; takes money requests."""
    hub: FeedHub = websocket.app.state.hub
    if not is_same_origin(websocket):
        await websocket.close(code=WEBSOCKET_POLICY_VIOLATION, reason="cross-origin")
        return
    actor = await _authenticate(websocket)
    if actor is None:
        await _refuse_unauthenticated(websocket)
        return
    after_text = websocket.query_params.get("after", "0")
    if not _POSITION.fullmatch(after_text):
        reason = "after must be a feed position: 0 or more, in digits"
        await websocket.close(code=WEBSOCKET_POLICY_VIOLATION, reason=reason)
        return
    after = int(after_text)
    banking = get_banking(websocket)
    await websocket.accept()
    client = hub.connect(actor)
    sender = asyncio.create_task(_send(websocket, banking, client, after))
    watcher = asyncio.create_task(_watch_session(websocket, actor, sender))
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            frame: str | bytes | None = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            if _too_big(frame):
                await _close(websocket, sender, MESSAGE_TOO_BIG, _TOO_BIG)
                break
            if await _session_ended(websocket, actor, sender):
                break
            if isinstance(frame, bytes):
                reply = _error("Binary frames are not read: send JSON text")
            else:
                reply = await _handle_safely(banking, actor, frame)
            client.offer(reply)
    except WebSocketDisconnect:
        pass
    finally:
        hub.disconnect(client)
        sender.cancel()
        watcher.cancel()


async def _authenticate(websocket: WebSocket) -> Actor | None:
    """The user of the connection's session, or None."""
    return await authenticate_websocket(websocket)


async def _refuse_unauthenticated(websocket: WebSocket) -> None:
    """Refuses the handshake: HTTP 401 where the server can say so, else a close."""
    response = JSONResponse(
        {"detail": "Sign in first"},
        status_code=status.HTTP_401_UNAUTHORIZED,
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # no denial responses: the server answers 403
        await websocket.close(code=WEBSOCKET_POLICY_VIOLATION, reason="sign in first")


async def _watch_session(
    websocket: WebSocket, actor: Actor, sender: asyncio.Task[None]
) -> None:
    """Checks the session every SESSION_CHECK_SECONDS until it ends."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while not sender.done():
            await asyncio.sleep(SESSION_CHECK_SECONDS)
            if await _session_ended(websocket, actor, sender):
                return


async def _session_ended(
    websocket: WebSocket, actor: Actor, sender: asyncio.Task[None]
) -> bool:
    """True, having closed the connection, if its session no longer holds.

    Revoked or expired: 4401 "signed out". The same session with another role now
    (staff made customer, or the reverse) sees another feed: the client is told to
    reconnect from its last position, as an overrun one is.
    """
    try:
        current = await _authenticate(websocket)
    except Exception:  # the users' store did not answer: checked again soon
        logger.warning("Could not check a websocket's session", exc_info=True)
        return False
    if current is None:
        await _close(websocket, sender, SIGNED_OUT_CLOSE_CODE, "signed out")
        return True
    if current != actor:
        await _close(websocket, sender, RECONNECT_CLOSE_CODE, "role changed")
        return True
    return False


async def _close(
    websocket: WebSocket, sender: asyncio.Task[None], code: int, reason: str
) -> None:
    """Ends the connection with a code and reason, once the sender stopped writing."""
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
    with contextlib.suppress(Exception):  # the client may have gone already
        await websocket.close(code=code, reason=reason)


def _too_big(frame: str | bytes) -> bool:
    """True if the message is over MAX_MESSAGE_BYTES (UTF-8 encoded)."""
    if len(frame) > MAX_MESSAGE_BYTES:
        return True  # without encoding: a character is at least a byte
    if isinstance(frame, str) and len(frame) * 4 > MAX_MESSAGE_BYTES:
        return len(frame.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES
    return False


async def _send(
    websocket: WebSocket, banking: Banking, client: FeedClient, after: int
) -> None:
    """Sends the backlog, then the live messages, skipping what was already sent.

    The client's queue fills from the moment it connected, so the live messages
    overlap the backlog; positions up to the last one sent are skipped. The task
    registers itself as the client's sender: an overrun cancels it wherever it
    waits (for the database, for a message, or in a send that the client does not
    read), and it closes the connection with RECONNECT_CLOSE_CODE.
    """
    client.sender = asyncio.current_task()
    last = after
    try:
        newest = await run_in_threadpool(banking.feed_position)
        if after > newest:
            last = newest  # the server has less than the client saw: a new data store
        while True:
            page = await run_in_threadpool(
                banking.feed, client.actor, last, BACKLOG_PAGE
            )
            for message in page:
                await websocket.send_text(encode(message.to_json()))
                last = message.position
            if len(page) < BACKLOG_PAGE:
                break
        await websocket.send_text(encode({"type": "ready", "last_position": last}))
        queue = client.queue
        # Checked here too in case the overrun came before this task registered.
        while not client.overrun.is_set():
            position, text = await queue.get()
            if position is not None:
                if position <= last:
                    continue
                last = position
            await websocket.send_text(text)
        await _close_for_reconnect(websocket)
    except asyncio.CancelledError:
        if not client.overrun.is_set():
            raise  # the connection ended
        await _close_for_reconnect(websocket)
    except (WebSocketDisconnect, RuntimeError):
        return  # the client went away


async def _close_for_reconnect(websocket: WebSocket) -> None:
    """Tells a client that fell too far behind to reconnect from its last position."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            websocket.close(code=RECONNECT_CLOSE_CODE, reason="too slow"), timeout=5
        )


def _error(
    words: str, request_id: str | int | None = None, field: str | None = None
) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "error", "request_id": request_id, "error": words}
    if field is not None:
        reply["field"] = field
    return reply


async def _handle_safely(banking: Banking, actor: Actor, text: str) -> dict[str, Any]:
    """Like _handle; an unexpected error is logged and answered, never fatal."""
    try:
        return await _handle(banking, actor, text)
    except Exception:
        logger.exception("Websocket request failed")
        return _error("The bank could not handle this request; try again")


async def _handle(banking: Banking, actor: Actor, text: str) -> dict[str, Any]:
    """Validates and records one client request; answers with an ack or an error."""
    try:
        data = load_json(text)
    except JSONDecodeError:
        return _error("Malformed JSON")
    if not isinstance(data, dict):
        return _error("A request must be a JSON object")
    try:
        request_id = to_request_id(data.get("request_id"))
    except ValueError as error:
        return _error(str(error), field="request_id")
    if data.get("type") not in ("deposit", "withdraw", "transfer"):
        words = "type must be deposit, withdraw or transfer"
        return _error(words, request_id, "type")
    try:
        message = CLIENT_MESSAGE.validate_python(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in first["loc"][1:]) or None
        if field is not None and len(field) > MAX_FIELD_NAME:
            field = None
        words = first["msg"].removeprefix("Value error, ")
        return _error(words, request_id, field)
    try:
        transaction_id = await run_in_threadpool(_record, banking, actor, message)
    except BusyError as error:
        return {**_error(str(error), request_id), "retry_after": error.retry_after}
    except (
        TransactionError,
        CommandConflictError,
        ForbiddenError,
        ValueError,
    ) as error:
        return _error(str(error), request_id)
    return {
        "type": "ack",
        "request_id": request_id,
        "transaction_id": str(transaction_id),
    }


def _record(
    banking: Banking,
    actor: Actor,
    message: DepositMessage | WithdrawMessage | TransferMessage,
) -> UUID:
    """Records the request as the actor (the use cases decide if they may)."""
    if isinstance(message, DepositMessage):
        return banking.deposit(actor, message.credit_account_id, message.amount)
    if isinstance(message, WithdrawMessage):
        return banking.withdraw(actor, message.debit_account_id, message.amount)
    return banking.transfer(
        actor, message.debit_account_id, message.credit_account_id, message.amount
    )

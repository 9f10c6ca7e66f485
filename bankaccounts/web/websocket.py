"""The websocket: the live feed out, deposit/withdraw/transfer requests in.

Whatever a client sends, the handler answers and carries on: a binary frame,
text that is not JSON (or nested too deeply to parse), JSON that is not a request
object or a request that is not valid each get an error reply, recorded nothing,
and repeat at most a bounded request_id. A message over MAX_MESSAGE_BYTES ends
the connection with close code 1009 and a reason; uvicorn's ws_max_size (the
server's setting) refuses larger ones the same way before they reach the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from json import JSONDecodeError
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from bankaccounts.exceptions import CommandConflictError, TransactionError
from bankaccounts.web.api import record_deposit, record_transfer, record_withdrawal
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

    from bankaccounts.deploy.bootstrap import Bank
    from bankaccounts.web.feed import FeedClient, FeedHub

logger = logging.getLogger(__name__)

MESSAGE_TOO_BIG = 1009
#: The largest message read (a real request is about 200 bytes); uvicorn's
#: ws_max_size should be no larger, so that it is not buffered first.
MAX_MESSAGE_BYTES = 64 * 1024
#: Longest field name repeated in an error reply (an unknown field may be any size).
MAX_FIELD_NAME = 64
BACKLOG_PAGE = 500
_POSITION = re.compile(r"[0-9]{1,18}")
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
    bank: Bank = websocket.app.state.bank
    hub: FeedHub = websocket.app.state.hub
    if not is_same_origin(websocket):
        await websocket.close(code=WEBSOCKET_POLICY_VIOLATION, reason="cross-origin")
        return
    after_text = websocket.query_params.get("after", "0")
    if not _POSITION.fullmatch(after_text):
        reason = "after must be a feed position: 0 or more, in digits"
        await websocket.close(code=WEBSOCKET_POLICY_VIOLATION, reason=reason)
        return
    after = int(after_text)
    await websocket.accept()
    client = hub.connect()
    sender = asyncio.create_task(_send(websocket, bank, client, after))
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            frame: str | bytes | None = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            if _too_big(frame):
                await _close_too_big(websocket, sender)
                break
            if isinstance(frame, bytes):
                reply = _error("Binary frames are not read: send JSON text")
            else:
                reply = await _handle_safely(bank, frame)
            client.offer(reply)
    except WebSocketDisconnect:
        pass
    finally:
        hub.disconnect(client)
        sender.cancel()


def _too_big(frame: str | bytes) -> bool:
    """True if the message is over MAX_MESSAGE_BYTES (UTF-8 encoded)."""
    if len(frame) > MAX_MESSAGE_BYTES:
        return True  # without encoding: a character is at least a byte
    if isinstance(frame, str) and len(frame) * 4 > MAX_MESSAGE_BYTES:
        return len(frame.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES
    return False


async def _close_too_big(websocket: WebSocket, sender: asyncio.Task[None]) -> None:
    """Ends the connection with 1009, once the sender is no longer writing."""
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
    reason = f"message too big: at most {MAX_MESSAGE_BYTES} bytes"
    with contextlib.suppress(Exception):  # the client may have gone already
        await websocket.close(code=MESSAGE_TOO_BIG, reason=reason)


async def _send(
    websocket: WebSocket, bank: Bank, client: FeedClient, after: int
) -> None:
    """Sends the backlog, then the live messages, skipping what was already sent.

    The client's queue fills from the moment it connected, so the live messages
    overlap the backlog; positions up to the last one sent are skipped. The task
    registers itself as the client's sender: an overrun cancels it wherever it
    waits (for the database, for a message, or in a send that the client does not
    read), and it closes the connection with RECONNECT_CLOSE_CODE.
    """
    client.sender = asyncio.current_task()
    view = bank.interface.view
    last = after
    try:
        newest = await run_in_threadpool(view.max_feed_position)
        if after > newest:
            last = newest  # the server has less than the client saw: a new data store
        while True:
            page = await run_in_threadpool(view.select_feed, last, BACKLOG_PAGE)
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


async def _handle_safely(bank: Bank, text: str) -> dict[str, Any]:
    """Like _handle; an unexpected error is logged and answered, never fatal."""
    try:
        return await _handle(bank, text)
    except Exception:
        logger.exception("Websocket request failed")
        return _error("The bank could not handle this request; try again")


async def _handle(bank: Bank, text: str) -> dict[str, Any]:
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
        transaction_id = await run_in_threadpool(_record, bank, message)
    except (TransactionError, CommandConflictError, ValueError) as error:
        return _error(str(error), request_id)
    return {
        "type": "ack",
        "request_id": request_id,
        "transaction_id": str(transaction_id),
    }


def _record(
    bank: Bank, message: DepositMessage | WithdrawMessage | TransferMessage
) -> UUID:
    if isinstance(message, DepositMessage):
        return record_deposit(bank, message.credit_account_id, message.amount)
    if isinstance(message, WithdrawMessage):
        return record_withdrawal(bank, message.debit_account_id, message.amount)
    return record_transfer(
        bank, message.debit_account_id, message.credit_account_id, message.amount
    )

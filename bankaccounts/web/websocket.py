"""The websocket: the live feed out, deposit/withdraw/transfer requests in."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
)

if TYPE_CHECKING:
    from uuid import UUID

    from bankaccounts.bootstrap import Bank
    from bankaccounts.web.feed import FeedClient, FeedHub

logger = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
BACKLOG_PAGE = 500
router = APIRouter()


def is_same_origin(websocket: WebSocket) -> bool:
    """True unless a browser page from another origin opened the socket."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser page: browsers always send Origin
    return urlsplit(origin).netloc == websocket.headers.get("host")


@router.websocket("/ws")
async def feed_socket(websocket: WebSocket) -> None:
    """Sends the feed after ?after=<position>, then live; takes money requests."""
    bank: Bank = websocket.app.state.bank
    hub: FeedHub = websocket.app.state.hub
    if not is_same_origin(websocket):
        await websocket.close(code=POLICY_VIOLATION, reason="cross-origin")
        return
    try:
        after = int(websocket.query_params.get("after", "0"))
        if after < 0:
            raise ValueError
    except ValueError:
        await websocket.close(code=POLICY_VIOLATION, reason="after must be >= 0")
        return
    await websocket.accept()
    client = hub.connect()
    sender = asyncio.create_task(_send(websocket, bank, client, after))
    try:
        while True:
            text = await websocket.receive_text()
            reply = await _handle(bank, text)
            client.offer(reply)
    except WebSocketDisconnect:
        pass
    finally:
        hub.disconnect(client)
        sender.cancel()


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


async def _handle(bank: Bank, text: str) -> dict[str, Any]:
    """Validates and records one client request; answers with an ack or an error."""
    try:
        data = json.loads(text)
    except ValueError:
        return {"type": "error", "request_id": None, "error": "Malformed JSON"}
    request_id = data.get("request_id") if isinstance(data, dict) else None
    try:
        message = CLIENT_MESSAGE.validate_python(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"][1:]) or None
        return {
            "type": "error",
            "request_id": request_id,
            "error": first["msg"].removeprefix("Value error, "),
            "field": field,
        }
    try:
        transaction_id = await run_in_threadpool(_record, bank, message)
    except (TransactionError, CommandConflictError, ValueError) as error:
        return {"type": "error", "request_id": request_id, "error": str(error)}
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

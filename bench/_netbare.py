"""The bare broadcast: the least a FastAPI/uvicorn websocket server does to fan out.

`uvicorn bench._netbare:app --ws websockets-sansio`: /ws accepts, sends
{"type": "ready"} and adds the socket to a set; POST /broadcast?count=&rate=&size=
sends `count` feed-like messages (a transaction_succeeded message padded to
`size` bytes, with a position and updated_at = when it was sent), each encoded
once and sent to every socket in turn, as fast as possible or at `rate` a second.
GET /state gives the last position and the number of sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
sockets: set[WebSocket] = set()
state = {"position": 0}
tasks: set[asyncio.Task[None]] = set()


def message(position: int, size: int) -> str:
    """A feed-like message of about `size` bytes."""
    now = datetime.now(UTC).isoformat()
    data: dict[str, Any] = {
        "type": "transaction_succeeded",
        "position": position,
        "transaction": {
            "id": str(uuid4()),
            "kind": "transfer",
            "debit_account_id": str(uuid4()),
            "credit_account_id": str(uuid4()),
            "amount": "1.00",
            "status": "succeeded",
            "error": None,
            "created_at": now,
            "updated_at": now,
        },
    }
    text = json.dumps(data)
    if size > len(text) + 10:
        data["pad"] = "x" * (size - len(text) - 10)
        text = json.dumps(data)
    return text


async def broadcast(count: int, rate: float, size: int) -> None:
    """Sends count messages to every socket, paced at rate a second if rate > 0."""
    started = time.perf_counter()
    for index in range(count):
        if rate > 0:
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing
        state["position"] += 1
        text = message(state["position"], size)
        for socket in list(sockets):
            with contextlib.suppress(Exception):
                await socket.send_text(text)


@app.get("/state")
async def get_state() -> dict[str, int]:
    """The last position and the number of sockets."""
    return {"position": state["position"], "clients": len(sockets)}


@app.post("/broadcast")
async def start_broadcast(count: int, rate: float = 0, size: int = 0) -> dict[str, int]:
    """Starts a broadcast; answers the position its last message will have."""
    last = state["position"] + count
    task = asyncio.create_task(broadcast(count, rate, size))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return {"last": last}


@app.websocket("/ws")
async def feed(websocket: WebSocket) -> None:
    """Registers the socket until it goes away."""
    await websocket.accept()
    await websocket.send_text(
        json.dumps({"type": "ready", "last_position": state["position"]})
    )
    sockets.add(websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        sockets.discard(websocket)

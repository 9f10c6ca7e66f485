"""A fuzz of the websocket: hostile frames against the real server, over real TCP.

`python bankaccounts/main.py` runs in a subprocess on a data directory of its own;
a `websockets` client sends frames that no client should send: binary, not JSON,
nested 60,000 deep, not UTF-8, over the size limit, and requests whose every field
in turn is wrong in one of many ways (generated from a fixed seed, so a failure
can be replayed). Each must be answered with an error reply or a close frame,
never a dropped connection; afterwards nothing has been recorded and the server's
log holds no traceback. Bounded in time (FUZZ_SECONDS) for the default run;
BANKACCOUNTS_FUZZ_SECONDS and BANKACCOUNTS_FUZZ_SEED change the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.cluster import answers, free_port
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
FUZZ_SECONDS = float(os.environ.get("BANKACCOUNTS_FUZZ_SECONDS", "30"))
SEED = int(os.environ.get("BANKACCOUNTS_FUZZ_SEED", "20261201"))
MAX_MESSAGE_BYTES = 64 * 1024  # bankaccounts.web.websocket.MAX_MESSAGE_BYTES
REPLY_TIMEOUT = 15.0


class Server:
    """The embedded server in a subprocess, its output in a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.log = tmp_path / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "bankaccounts/main.py",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_for(
            lambda: answers(f"{self.url}/api/state") or self.process.poll() is not None,
            30,
            "the server did not start",
        )
        assert self.process.poll() is None, self.log.read_text()

    def request(self, method: str, path: str, body: object = None) -> Any:
        """Calls the REST API; returns the JSON answer."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.load(response)

    def stop(self) -> str:
        """Stops the server with SIGTERM; returns its output."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.log.read_text(errors="replace")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A started server on a fresh data directory."""
    started = Server(tmp_path)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.stop()


# ---------------------------------------------------------------- hostile frames

Frame = tuple[str, str | bytes, bool]  # (what it is, the frame, sent as text)


def bad_amounts(rng: random.Random) -> list[Any]:
    """Amounts that are not a plain decimal, each one way (as JSON values)."""
    digits = str(rng.randint(0, 10**6))
    return [
        f"{digits}e{rng.randint(0, 10**12)}",
        f"-{digits}",
        f"+{digits}",
        f"{digits}.{rng.randint(100, 10**9)}",
        f" {digits}",
        f"{digits}\n",
        f"{digits}.",
        f".{digits}",
        f"{digits}_{digits}",
        "".join(chr(0x0660 + int(d)) for d in digits),  # Arabic-Indic
        "".join(chr(0xFF10 + int(d)) for d in digits),  # full-width
        "9" * rng.randint(14, 60_000),
        "".join(rng.choice("NaInfity-+.eE, ") for _ in range(rng.randint(1, 12))),
        "",
        None,
        True,
        [digits],
        {"amount": digits},
        -rng.randint(0, 10**30),
        10 ** rng.randint(13, 4000),
    ]


#: JSON number literals that are not money (written into the frame as they are).
BAD_LITERALS = [
    "1e3",
    "1E+3",
    "1.0000000000000001",
    "1e999999999999",
    "-1e999999999999",
    "NaN",
    "Infinity",
    "-Infinity",
    "-0.0",
    "0.001",
    "9" * 50_000,
    "1" + "0" * 13,
]
RAW = "\x00raw\x00"


def with_literal(message: dict[str, Any], key: str, literal: str) -> str:
    """The message as JSON text with the key's value written as this literal."""
    return json.dumps({**message, key: RAW}).replace(json.dumps(RAW), literal)


def junk_text(rng: random.Random, size: int) -> str:
    """Random text from every plane, quotes and brackets included."""
    alphabet = '{}[]":,\\ 0123456789eE.-+tfnul\x00\u2028\ufeff\U0001f4b0é'
    return "".join(
        rng.choice(alphabet) if rng.random() < 0.8 else chr(rng.randint(0x20, 0xD7FF))
        for _ in range(size)
    )


def fixed_frames(account: str) -> list[Frame]:
    """The frames of the issue, and the edges of the limits."""
    deposit = {"type": "deposit", "credit_account_id": account, "amount": "1"}
    return [
        ("binary", b"\x00\x01\x02", False),
        ("binary JSON", json.dumps(deposit).encode(), False),
        ("empty", "", True),
        ("not JSON", "{not json", True),
        ("nested arrays", "[" * 60_000, True),
        ("nested objects", '{"a":' * 10_000, True),
        ("nested amount", json.dumps(deposit)[:-1] + ', "x": ' + "[" * 50_000, True),
        ("number", "5", True),
        ("string", '"deposit"', True),
        ("null", "null", True),
        ("list", json.dumps([deposit]), True),
        ("unknown type", json.dumps({**deposit, "type": "steal"}), True),
        ("long type", json.dumps({**deposit, "type": "x" * 60_000}), True),
        ("no type", json.dumps({"amount": "1"}), True),
        ("long request_id", json.dumps({**deposit, "request_id": "r" * 65}), True),
        ("huge request_id", with_literal(deposit, "request_id", "9" * 50_000), True),
        ("float request_id", with_literal(deposit, "request_id", "1.5"), True),
        ("long field", json.dumps({**deposit, "k" * 60_000: 1}), True),
        ("not UTF-8", b'{"type": "\xff\xfe"}', True),
        ("text over the limit", "[" * (MAX_MESSAGE_BYTES + 1), True),
        ("UTF-8 over the limit", "\u00e9" * (MAX_MESSAGE_BYTES // 2 + 1), True),
        ("binary over the limit", b"\x00" * (MAX_MESSAGE_BYTES + 1), False),
        ("a megabyte", "9" * 1_000_001, True),
    ]


def random_frame(rng: random.Random, account: str) -> Frame:
    """One hostile frame: a request with one thing wrong, or no request at all."""
    deposit = {"type": "deposit", "credit_account_id": account, "amount": "1"}
    withdraw = {"type": "withdraw", "debit_account_id": account, "amount": "1"}
    transfer = {
        "type": "transfer",
        "debit_account_id": account,
        "credit_account_id": str(uuid.uuid4()),  # unknown: 404 if all else is right
        "amount": "1",
    }
    message: dict[str, Any] = dict(rng.choice([deposit, withdraw, transfer]))
    if rng.random() < 0.5:
        message["request_id"] = rng.choice([rng.randint(-(2**53), 2**53), "r1", ""])
    kind = rng.randrange(10)
    if kind == 0:
        message["amount"] = rng.choice(bad_amounts(rng))
        return ("bad amount", json.dumps(message), True)
    if kind == 1:
        literal = rng.choice(BAD_LITERALS)
        return ("bad literal", with_literal(message, "amount", literal), True)
    if kind == 2:
        key = rng.choice([k for k in message if k.endswith("_account_id")])
        message[key] = rng.choice(
            [str(uuid.uuid4()), junk_text(rng, 36), 12345, None, [account]]
        )
        return ("bad account", json.dumps(message), True)
    if kind == 3:
        message["type"] = rng.choice(
            [junk_text(rng, rng.randint(0, 300)), None, 1, ["deposit"], "Deposit"]
        )
        return ("bad type", json.dumps(message), True)
    if kind == 4:
        text = json.dumps(message)
        return ("truncated", text[: rng.randrange(len(text))], True)
    if kind == 5:
        size = rng.randint(0, 2000)
        return ("random bytes", rng.randbytes(size), rng.random() < 0.5)
    if kind == 6:
        return ("junk", junk_text(rng, rng.randint(0, 3000)), True)
    if kind == 7:
        depth = rng.randint(900, 30_000)
        opening = rng.choice(["[", '{"a":', '{"amount":'])
        return ("deep", json.dumps(message)[:-1] + ', "x": ' + opening * depth, True)
    if kind == 8:
        message["request_id"] = rng.choice(
            ["r" * rng.randint(65, 50_000), 2**53 + rng.randint(1, 10**6), 1.5, [1], {}]
        )
        return ("bad request_id", json.dumps(message), True)
    size = rng.randint(MAX_MESSAGE_BYTES + 1, 3 * MAX_MESSAGE_BYTES)
    return ("too big", rng.choice(["x", "[", "\u00e9"]) * size, True)


# ---------------------------------------------------------------- the client


class Fuzzer:
    """Sends frames one at a time; each must get an error reply or a close frame."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.sent = 0
        self.errors = 0
        self.closes: dict[int, int] = {}

    async def connection(self) -> ClientConnection:
        """The open connection, after the backlog; a new one after a close."""
        if self.ws is None:
            self.ws = await connect(self.url, max_size=None, compression=None)
            while json.loads(await self.ws.recv())["type"] != "ready":
                pass
        return self.ws

    async def send(self, what: str, frame: str | bytes, *, text: bool) -> None:
        """Sends one frame and waits for its answer."""
        ws = await self.connection()
        self.sent += 1
        try:
            await ws.send(frame, text=text)
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT))
                if reply["type"] == "ack":
                    pytest.fail(f"{what}: accepted {frame[:200]!r}")
                if reply["type"] == "error":
                    assert reply["error"], reply
                    assert len(json.dumps(reply)) < 1000, (what, reply)
                    self.errors += 1
                    return
        except ConnectionClosed as error:
            closed = error
        # A close frame, never a dropped connection: 1009 (too big, with the limit
        # as its reason) from the app or uvicorn, 1007 (not UTF-8) from uvicorn.
        self.ws = None
        received = closed.rcvd
        assert received is not None, f"{what}: dropped without a close frame"
        assert received.code in (1007, 1009), (what, received)
        if received.code == 1009:
            assert received.reason, (what, received)
        self.closes[received.code] = self.closes.get(received.code, 0) + 1

    async def close(self) -> None:
        """Ends the connection politely."""
        if self.ws is not None:
            await self.ws.close()


def count_events(database: Path) -> int:
    """Stored events in one application's SQLite file."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM stored_events").fetchone()
    return int(count)


def test_hostile_frames_get_an_answer_and_record_nothing(server: Server) -> None:
    alice = server.request("POST", "/api/accounts", {"name": "Alice"})["id"]
    state_before = server.request("GET", "/api/state")
    events_before = {
        name: count_events(server.data_dir / f"{name}.sqlite")
        for name in ("commands", "accounts", "sagas")
    }
    rng = random.Random(SEED)
    fuzzer = Fuzzer(server.ws_url)

    async def fuzz() -> None:
        deadline = time.monotonic() + FUZZ_SECONDS
        try:
            for what, frame, text in fixed_frames(alice):
                await fuzzer.send(what, frame, text=text)
            while time.monotonic() < deadline:
                what, frame, text = random_frame(rng, alice)
                await fuzzer.send(what, frame, text=text)
        finally:
            await fuzzer.close()

    asyncio.run(fuzz())

    assert fuzzer.sent > 100, fuzzer.sent  # the run did fuzz
    assert fuzzer.closes.get(1009), fuzzer.closes  # the size limit was met
    state_after = server.request("GET", "/api/state")
    assert state_after == state_before
    assert server.request("GET", "/api/transactions") == []
    for name, count in events_before.items():
        assert count_events(server.data_dir / f"{name}.sqlite") == count, name
    assert events_before["commands"] == 0
    log = server.stop()
    # uvicorn logs a traceback of its own for each text frame that is not UTF-8
    # (and closes with 1007, as it should); any other is a failure.
    utf8_tracebacks = log.count("Invalid UTF-8 sequence received from client")
    assert log.count("Traceback") == utf8_tracebacks, log[-3000:]
    assert "Exception in ASGI application" not in log, log[-3000:]
    assert server.process.returncode == 0, log[-3000:]
    print(  # shown with -s: what the run covered
        f"fuzz: {fuzzer.sent} frames, {fuzzer.errors} error replies, "
        f"closes {fuzzer.closes}, seed {SEED}"
    )

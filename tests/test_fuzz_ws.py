"""A fuzz of the websocket: hostile frames against the real server, over real TCP.

`python bankaccounts/main.py` runs in a subprocess on a data directory of its own;
a `websockets` client, signed in as a customer, sends frames that no client should
send: binary, not JSON, nested 60,000 deep, not UTF-8, over the size limit,
well-formed requests on another customer's account, and requests whose every field
in turn is wrong in one of many ways (generated from a fixed seed, so a failure
can be replayed). Each must be answered with an error reply or a close frame,
never a dropped connection; afterwards nothing has been recorded and the server's
log holds no traceback. Bounded in time (FUZZ_SECONDS) for the default run;
BANKACCOUNTS_FUZZ_SECONDS and BANKACCOUNTS_FUZZ_SEED change the run. A handshake
without valid credentials, in any of many shapes, is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.serverprocess import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.signin import Session

FUZZ_SECONDS = float(os.environ.get("BANKACCOUNTS_FUZZ_SECONDS", "30"))
SEED = int(os.environ.get("BANKACCOUNTS_FUZZ_SEED", "20261201"))
MAX_MESSAGE_BYTES = 64 * 1024  # bankaccounts.web.websocket.MAX_MESSAGE_BYTES
REPLY_TIMEOUT = 15.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A started server on a fresh data directory (its staff user signed up first)."""
    started = ServerProcess(tmp_path / "data", tmp_path, args=["--host", "127.0.0.1"])
    started.start()
    try:
        yield started
    finally:
        started.stop()


def signed_in(server: ServerProcess, username: str) -> tuple[Session, str]:
    """A customer of the bank with an account of their own; the session and its id."""
    # The first user to sign up is staff (here, the server's own); then customers.
    assert server.staff.user["role"] == "staff"
    customer = server.sign_in(username)
    assert customer.user["role"] == "customer", customer.user
    status, account = customer.request("POST", "/api/accounts", {"name": username})
    assert status == 201, account
    return customer, account["id"]


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


def fixed_frames(account: str, another: str) -> list[Frame]:
    """The frames of the issue, the edges of the limits, and another's account."""
    deposit = {"type": "deposit", "credit_account_id": account, "amount": "1"}
    theirs = [
        {"type": "deposit", "credit_account_id": another, "amount": "1"},
        {"type": "withdraw", "debit_account_id": another, "amount": "1"},
        {
            "type": "transfer",
            "debit_account_id": another,
            "credit_account_id": account,
            "amount": "1",
        },
    ]
    return [
        *((f"another's account: {m['type']}", json.dumps(m), True) for m in theirs),
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


def random_frame(rng: random.Random, account: str, another: str) -> Frame:
    """One hostile frame: a request with one thing wrong, or no request at all.

    Another customer's account may be named where money would leave it or (a
    deposit) where only its owner may put money; a transfer may credit it, so the
    credit side of a transfer never names it.
    """
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
        choices: list[Any] = [str(uuid.uuid4()), junk_text(rng, 36), 12345, None]
        choices.append([account])
        if message["type"] != "transfer" or key == "debit_account_id":
            choices.append(another)
        message[key] = rng.choice(choices)
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

    def __init__(self, session: Session) -> None:
        self.url = session.ws_url
        self.headers = session.headers
        self.ws: ClientConnection | None = None
        self.sent = 0
        self.errors = 0
        self.closes: dict[int, int] = {}

    async def connection(self) -> ClientConnection:
        """The open connection, after the backlog; a new one after a close."""
        if self.ws is None:
            self.ws = await connect(
                self.url,
                additional_headers=self.headers,
                max_size=None,
                compression=None,
            )
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


def test_hostile_frames_get_an_answer_and_record_nothing(
    server: ServerProcess,
) -> None:
    alice, account = signed_in(server, "alice")
    _, another = signed_in(server, "bob")
    _, state_before = server.request("GET", "/api/state")
    events_before = {
        name: count_events(server.data_dir / f"{name}.sqlite")
        for name in ("commands", "accounts", "sagas")
    }
    rng = random.Random(SEED)
    fuzzer = Fuzzer(alice)

    async def fuzz() -> None:
        deadline = time.monotonic() + FUZZ_SECONDS
        try:
            for what, frame, text in fixed_frames(account, another):
                await fuzzer.send(what, frame, text=text)
            while time.monotonic() < deadline:
                what, frame, text = random_frame(rng, account, another)
                await fuzzer.send(what, frame, text=text)
        finally:
            await fuzzer.close()

    asyncio.run(fuzz())

    assert fuzzer.sent > 100, fuzzer.sent  # the run did fuzz
    assert fuzzer.closes.get(1009), fuzzer.closes  # the size limit was met
    _, state_after = server.request("GET", "/api/state")
    assert state_after == state_before
    assert server.request("GET", "/api/transactions") == (200, [])
    for name, count in events_before.items():
        assert count_events(server.data_dir / f"{name}.sqlite") == count, name
    assert events_before["commands"] == 0
    assert server.stop() == 0, server.output()[-3000:]
    log = server.output()
    # uvicorn logs a traceback of its own for each text frame that is not UTF-8
    # (and closes with 1007, as it should); any other is a failure.
    utf8_tracebacks = log.count("Invalid UTF-8 sequence received from client")
    assert log.count("Traceback") == utf8_tracebacks, log[-3000:]
    assert "Exception in ASGI application" not in log, log[-3000:]
    print(  # shown with -s: what the run covered
        f"fuzz: {fuzzer.sent} frames, {fuzzer.errors} error replies, "
        f"closes {fuzzer.closes}, seed {SEED}"
    )


def bad_credentials(token: str) -> list[tuple[str, dict[str, str]]]:
    """Handshake headers that do not sign anybody in, each one way."""
    rng = random.Random(SEED)
    return [
        ("none", {}),
        ("empty", {"Authorization": ""}),
        ("scheme only", {"Authorization": "Bearer"}),
        ("blank token", {"Authorization": "Bearer    "}),
        ("another scheme", {"Authorization": f"Basic {token}"}),
        ("lower case scheme, no space", {"Authorization": f"bearer{token}"}),
        ("unknown token", {"Authorization": f"Bearer {uuid.uuid4().hex}"}),
        ("token, one character off", {"Authorization": f"Bearer {token[:-1]}x"}),
        ("token twice", {"Authorization": f"Bearer {token} {token}"}),
        ("long token", {"Authorization": "Bearer " + "A" * 6000}),
        ("Latin-1", {"Authorization": "Bearer caf\u00e9"}),
        ("junk", {"Authorization": junk_text(rng, 200).encode().decode("latin-1")}),
        ("unknown cookie", {"Cookie": f"bankaccounts_session={uuid.uuid4().hex}"}),
        ("bad cookie", {"Cookie": 'bankaccounts_session="; a=b; ;;='}),
        ("token as a cookie of another name", {"Cookie": f"session={token}"}),
    ]


def test_a_handshake_without_valid_credentials_is_refused(
    server: ServerProcess,
) -> None:
    alice, _ = signed_in(server, "alice")
    revoked = server.sign_in("alice")
    status, _ = revoked.request("DELETE", "/api/tokens/current")
    assert status == 204
    cases = [
        *bad_credentials(alice.token),
        ("revoked token", revoked.headers),
    ]

    async def handshake(headers: dict[str, str]) -> int:
        """The status of a handshake refused; 101 if it was accepted."""
        # Control characters are the HTTP parser's to refuse (400), not the app's.
        clean = {
            key: "".join(c for c in value if c >= " " and c != "\x7f")
            for key, value in headers.items()
        }
        try:
            async with connect(alice.ws_url, additional_headers=clean):
                return 101
        except InvalidStatus as error:
            return error.response.status_code

    async def all_of_them() -> dict[str, int]:
        return {what: await handshake(headers) for what, headers in cases}

    statuses = asyncio.run(all_of_them())
    refused = {what: status for what, status in statuses.items() if status != 101}
    assert refused == statuses, statuses
    assert set(statuses.values()) <= {401, 403}, statuses
    # The signed-in user's own token still opens it.
    assert asyncio.run(handshake(alice.headers)) == 101
    assert server.stop() == 0, server.output()[-3000:]
    assert "Traceback" not in server.output(), server.output()[-3000:]

"""The websocket: feed to every client, resume by position, requests, slow clients.

Who may connect, and what each user's feed carries, is tested here and (customers
side by side) in test_customers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import TYPE_CHECKING, Any, cast

import pytest
from starlette.websockets import WebSocketDisconnect

from bankaccounts.deploy.bootstrap import system_env
from bankaccounts.readmodel import FeedMessage
from bankaccounts.usecases import Banking
from bankaccounts.users import Actor
from bankaccounts.web import feed as feed_module
from bankaccounts.web import websocket as websocket_module
from bankaccounts.web.feed import RECONNECT_CLOSE_CODE, FeedClient, FeedHub, Outgoing
from tests.waiting import wait_for
from tests.webclient import (
    anonymous,
    bank_client,
    deposit,
    open_account,
    read_backlog,
    read_until,
    sign_in,
    sign_up,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient


@pytest.fixture
def client(sqlite_env: dict[str, str], tmp_path: Path) -> Iterator[TestClient]:
    yield from bank_client(system_env(tmp_path / "bank", environ={}))


def positions(messages: list[dict[str, Any]]) -> list[int]:
    return [m["position"] for m in messages if "position" in m]


STAFF = Actor(uuid.uuid4(), "staff", "staff")


def test_two_clients_receive_the_same_feed(client: TestClient) -> None:
    with (
        client.websocket_connect("/ws") as first,
        client.websocket_connect("/ws") as second,
    ):
        assert read_backlog(first) == read_backlog(second) == []
        alice = open_account(client, "Alice")
        deposit(client, alice, "10")

        def until_succeeded(m: dict[str, Any]) -> bool:
            return m["type"] == "transaction_succeeded"

        got_first = read_until(first, until_succeeded)
        got_second = read_until(second, until_succeeded)
    assert got_first == got_second
    assert [m["type"] for m in got_first] == [
        "account_opened",
        "transaction_pending",
        "transaction_appended",
        "transaction_succeeded",
    ]
    assert positions(got_first) == [1, 2, 3, 4]
    appended = got_first[2]
    assert appended["account"]["balance"] == "10.00"
    assert appended["amount"] == "10.00"


def test_resume_after_a_position_has_no_gap_and_no_duplicate(
    client: TestClient,
) -> None:
    alice = open_account(client, "Alice")
    for amount in ("1", "2", "3"):
        deposit(client, alice, amount)
    with client.websocket_connect("/ws?after=0") as ws:
        everything = read_backlog(ws)
    assert positions(everything) == list(range(1, len(everything) + 1))
    with client.websocket_connect("/ws?after=5") as ws:
        resumed = read_backlog(ws)
        deposit(client, alice, "4")
        live = read_until(ws, lambda m: m["type"] == "transaction_succeeded")
    assert resumed == everything[5:]
    assert positions(resumed + live) == list(range(6, len(everything) + 4))
    assert live[-2]["account"]["balance"] == "10.00"


def test_bad_after_and_cross_origin_are_refused(client: TestClient) -> None:
    for path in ("/ws?after=-1", "/ws?after=x"):
        with pytest.raises(WebSocketDisconnect), client.websocket_connect(path) as ws:
            ws.receive_json()
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(
            "/ws", headers={"origin": "http://evil.example"}
        ) as ws,
    ):
        ws.receive_json()
    assert refused.value.code == 1008
    same = {"origin": "http://testserver"}
    with client.websocket_connect("/ws", headers=same) as ws:
        assert ws.receive_json()["type"] == "ready"


def test_requests_over_the_websocket(client: TestClient) -> None:
    alice = open_account(client, "Alice")
    bob = open_account(client, "Bob")
    with client.websocket_connect("/ws") as ws:
        read_backlog(ws)
        ws.send_json(
            {
                "type": "deposit",
                "credit_account_id": alice,
                "amount": "30",
                "request_id": "r1",
            }
        )
        ack = read_until(ws, lambda m: m["type"] == "ack")[-1]
        assert ack["request_id"] == "r1"
        ws.send_json(
            {
                "type": "transfer",
                "debit_account_id": alice,
                "credit_account_id": bob,
                "amount": "10",
                "request_id": 2,
            }
        )
        ack = read_until(ws, lambda m: m["type"] == "ack")[-1]
        assert ack["request_id"] == 2
        ws.send_json(
            {
                "type": "withdraw",
                "debit_account_id": bob,
                "amount": "50",
                "request_id": 3,
            }
        )
        seen: list[dict[str, Any]] = []
        # The ack and the feed may come in either order.
        while not {"ack", "transaction_failed"} <= {m["type"] for m in seen}:
            seen.append(ws.receive_json())
        failed = next(m for m in seen if m["type"] == "transaction_failed")
        assert failed["transaction"]["error"] == "Insufficient funds in Bob's account"

        for bad, field in [
            (
                {"type": "deposit", "credit_account_id": alice, "amount": 1.234},
                "amount",
            ),
            ({"type": "deposit", "credit_account_id": "x", "amount": "1"}, None),
            ({"type": "withdraw", "debit_account_id": alice, "amount": "-1"}, "amount"),
            (
                {
                    "type": "transfer",
                    "debit_account_id": alice,
                    "credit_account_id": alice,
                    "amount": "1",
                },
                "credit_account_id",
            ),
            ({"type": "steal", "amount": "1"}, None),
            ([1, 2], None),
        ]:
            ws.send_json({**bad, "request_id": "bad"} if isinstance(bad, dict) else bad)
            error = read_until(ws, lambda m: m["type"] == "error")[-1]
            assert error["error"]
            if field:
                assert error["field"] == field
        ws.send_text("{not json")
        assert read_until(ws, lambda m: m["type"] == "error")[-1]["error"] == (
            "Malformed JSON"
        )
        unknown = str(uuid.uuid4())
        ws.send_json({"type": "deposit", "credit_account_id": unknown, "amount": "1"})
        assert (
            "not found" in read_until(ws, lambda m: m["type"] == "error")[-1]["error"]
        )
        # The connection is still open and working.
        ws.send_json({"type": "deposit", "credit_account_id": bob, "amount": "1"})
        seen = []
        # The ack answers once the command is recorded; the feed says when it ends.
        while not (acks := [m for m in seen if m["type"] == "ack"]) or not any(
            m["type"] == "transaction_succeeded"
            and m["transaction"]["id"] == acks[0]["transaction_id"]
            for m in seen
        ):
            seen.append(ws.receive_json())
    balances = {a["name"]: a["balance"] for a in client.get("/api/accounts").json()}
    assert balances == {"Alice": "20.00", "Bob": "11.00"}


class StalledWebSocket:
    """A websocket whose client stopped reading: sends block after the first few."""

    def __init__(self, accepted: int) -> None:
        self.accepted = accepted
        self.sent: list[dict[str, Any]] = []
        self.closed_with: int | None = None

    async def send_text(self, text: str) -> None:
        if len(self.sent) >= self.accepted:
            await asyncio.Event().wait()  # blocks, as a full TCP buffer does
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code


def test_a_stalled_client_is_told_to_reconnect_and_delays_no_one(
    client: TestClient,
) -> None:
    app = client.app
    hub = app.state.hub  # type: ignore[attr-defined]
    bank = app.state.bank  # type: ignore[attr-defined]
    hub.queue_size = 5
    stalled = StalledWebSocket(accepted=3)
    feed_client = hub.connect(STAFF)
    sender = client.portal.start_task_soon(  # type: ignore[union-attr]
        websocket_module._send, stalled, Banking(bank), feed_client, 0
    )
    alice = open_account(client, "Alice")
    with client.websocket_connect("/ws") as healthy:
        read_backlog(healthy)
        deposits = 10
        for _ in range(deposits):
            deposit(client, alice, "1")
        live = read_until(
            healthy,
            lambda m: m.get("position") == 1 + 3 * deposits,
        )
    # The healthy client got every message, in order, while the other was stuck.
    assert positions(live) == list(range(2, 2 + 3 * deposits))
    wait_for(lambda: sender.done(), message="stalled sender did not give up")
    assert stalled.closed_with == RECONNECT_CLOSE_CODE
    hub.disconnect(feed_client)
    last_seen = max(positions(stalled.sent))
    assert last_seen < 1 + 3 * deposits
    # It resumes from its last position, with no gap and no duplicate.
    with client.websocket_connect(f"/ws?after={last_seen}") as again:
        rest = read_backlog(again)
    assert positions(rest) == list(range(last_seen + 1, 2 + 3 * deposits))


def test_a_message_is_encoded_once_for_every_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[dict[str, Any]] = []
    real_encode = feed_module.encode

    def counting_encode(message: dict[str, Any]) -> str:
        encoded.append(message)
        return real_encode(message)

    monkeypatch.setattr(feed_module, "encode", counting_encode)
    transaction = {"id": str(uuid.uuid4()), "status": "succeeded", "error": None}
    messages = [
        FeedMessage("account_opened", {"account": {"name": "Zoë"}}, position=7),
        FeedMessage("transaction_succeeded", {"transaction": transaction}, position=8),
    ]

    async def publish() -> tuple[list[FeedClient], dict[str, Any] | None]:
        hub = FeedHub(cast("Any", None), queue_size=10)
        hub.attach(asyncio.get_running_loop())
        clients = [hub.connect(STAFF) for _ in range(100)]
        finished = await hub.wait_for_transaction(
            uuid.UUID(transaction["id"]),
            timeout=5,
            current=lambda: hub.receive(messages),  # type: ignore[func-returns-value]
        )
        return clients, finished

    clients, finished = asyncio.run(publish())
    assert finished == transaction  # the waiter is resolved from the feed
    assert len(encoded) == len(messages)
    texts = [
        '{"type":"account_opened","position":7,"account":{"name":"Zoë"}}',
        json.dumps(messages[1].to_json(), separators=(",", ":")),
    ]
    for feed_client in clients:
        queued = [feed_client.queue.get_nowait() for _ in messages]
        assert queued == [Outgoing(7, texts[0]), Outgoing(8, texts[1])]
        assert feed_client.queue.empty()
    assert clients[0].queue is not clients[1].queue


def test_an_overrun_cancels_the_sender_once_and_drops_the_rest() -> None:
    async def overrun() -> tuple[FeedClient, asyncio.Task[None]]:
        feed_client = FeedClient(2, STAFF)
        feed_client.sender = asyncio.create_task(asyncio.Event().wait())
        for position in range(1, 6):
            feed_client.offer_encoded(Outgoing(position, "{}"))
        feed_client.offer({"type": "ack", "request_id": 1})
        with contextlib.suppress(asyncio.CancelledError):
            await feed_client.sender
        return feed_client, feed_client.sender

    feed_client, sender = asyncio.run(overrun())
    assert feed_client.overrun.is_set()
    assert sender.cancelled()
    assert feed_client.queue.qsize() == 2  # positions 1 and 2; nothing after


def test_an_overrun_while_waiting_for_messages_closes_1013(
    client: TestClient,
) -> None:
    """The sender is idle, waiting on the queue, then a burst overruns it."""
    app = client.app
    hub = app.state.hub  # type: ignore[attr-defined]
    bank = app.state.bank  # type: ignore[attr-defined]
    hub.queue_size = 2
    stalled = StalledWebSocket(accepted=1000)
    feed_client = hub.connect(STAFF)
    sender = client.portal.start_task_soon(  # type: ignore[union-attr]
        websocket_module._send, stalled, Banking(bank), feed_client, 0
    )
    wait_for(lambda: stalled.sent, message="no ready message")
    assert stalled.sent == [{"type": "ready", "last_position": 0}]

    def burst() -> None:
        for position in range(1, 5):
            feed_client.offer_encoded(Outgoing(position, f'{{"position":{position}}}'))

    client.portal.call(burst)  # type: ignore[union-attr]
    wait_for(lambda: sender.done(), message="overrun sender did not give up")
    hub.disconnect(feed_client)
    assert stalled.closed_with == RECONNECT_CLOSE_CODE


def feed_position(client: TestClient) -> int:
    position: int = client.get("/api/state").json()["position"]
    return position


def next_reply(ws: Any) -> dict[str, Any]:
    """The next ack or error (feed messages may come between)."""
    return read_until(ws, lambda m: m["type"] in ("ack", "error"))[-1]


RAW = "\x00raw\x00"


def raw(message: dict[str, Any], literal: str) -> str:
    """The message as JSON text, with the RAW value written as this literal."""
    return json.dumps(message).replace(json.dumps(RAW), literal)


def test_hostile_frames_get_an_error_reply_and_record_nothing(
    client: TestClient,
) -> None:
    alice = open_account(client, "Alice")
    deposit_to = {"type": "deposit", "credit_account_id": alice}
    before = feed_position(client)
    plain_form = "Amount must be a plain decimal number such as 12.34"
    hostile: list[tuple[str | bytes, str]] = [
        (b"\x00\x01binary", "Binary frames are not read: send JSON text"),
        (b'{"type": "deposit"}', "Binary frames are not read: send JSON text"),
        ("{not json", "Malformed JSON"),
        ("", "Malformed JSON"),
        ("[" * 60_000, "Malformed JSON"),
        ('{"a":' * 10_000 + "1" + "}" * 10_000, "Malformed JSON"),
        ("5", "A request must be a JSON object"),
        ('"deposit"', "A request must be a JSON object"),
        ("null", "A request must be a JSON object"),
        ("[1, 2]", "A request must be a JSON object"),
        (
            '{"type": "steal", "amount": "1"}',
            "type must be deposit, withdraw or transfer",
        ),
        (
            '{"type": "' + "x" * 60_000 + '"}',
            "type must be deposit, withdraw or transfer",
        ),
        ('{"amount": "1"}', "type must be deposit, withdraw or transfer"),
        (json.dumps({**deposit_to, "amount": "1e999999999999"}), plain_form),
        (json.dumps({**deposit_to, "amount": "9" * 60_000}), "Amount must be at most"),
        (json.dumps({**deposit_to, "amount": "1e3"}), plain_form),
        (json.dumps({**deposit_to, "amount": " 5"}), "Amount must not contain spaces"),
        (
            raw({**deposit_to, "amount": RAW}, "1.0000000000000001"),
            "Amount must have at most 2 decimal places",
        ),
        (
            raw({**deposit_to, "amount": RAW}, "1e3"),
            plain_form,
        ),
        (
            raw({**deposit_to, "amount": RAW}, "NaN"),
            plain_form,
        ),
        (json.dumps({**deposit_to, "amount": "1", "x" * 60_000: 1}), "Extra inputs"),
    ]
    with client.websocket_connect("/ws") as ws:
        read_backlog(ws)
        for frame, words in hostile:
            if isinstance(frame, bytes):
                ws.send_bytes(frame)
            else:
                ws.send_text(frame)
            reply = next_reply(ws)
            assert reply["type"] == "error", frame[:40]
            assert reply["error"].startswith(words), (frame[:40], reply)
            assert len(json.dumps(reply)) < 500, frame[:40]  # nothing echoed back
        assert feed_position(client) == before
        # The connection still works.
        ws.send_json({**deposit_to, "amount": "1", "request_id": "ok"})
        assert next_reply(ws) == {
            "type": "ack",
            "request_id": "ok",
            "transaction_id": ANY_TEXT,
        }


class AnyText(str):
    """Equal to any string (for the transaction id of an ack)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)

    __hash__ = str.__hash__


ANY_TEXT = AnyText()


def test_request_ids_are_bounded_and_a_bad_one_is_not_echoed(
    client: TestClient,
) -> None:
    alice = open_account(client, "Alice")
    deposit_to = {"type": "deposit", "credit_account_id": alice, "amount": "1"}
    before = feed_position(client)
    words = "request_id must be text of at most 64 characters or a whole number"
    with client.websocket_connect("/ws") as ws:
        read_backlog(ws)
        for bad in ["x" * 65, "y" * 60_000, 2**53 + 1, -(2**53) - 1, 10**100, True]:
            ws.send_json({**deposit_to, "request_id": bad})
            reply = next_reply(ws)
            assert reply["type"] == "error"
            assert reply["request_id"] is None
            assert reply["error"].startswith(words)
            assert reply["field"] == "request_id"
        for bad_literal in ["1.5", "1e3", "NaN", "9" * 1000, "[1]", '{"a": 1}']:
            ws.send_text(raw({**deposit_to, "request_id": RAW}, bad_literal))
            reply = next_reply(ws)
            assert reply["request_id"] is None, bad_literal
            assert reply["error"].startswith(words)
        assert feed_position(client) == before
        # Within the bounds: echoed, also with an invalid request.
        for good in ["r" * 64, 2**53, -(2**53), 0, ""]:
            ws.send_json({**deposit_to, "amount": "-1", "request_id": good})
            reply = next_reply(ws)
            assert reply == {
                "type": "error",
                "request_id": good,
                "error": "Amount must be greater than zero",
                "field": "amount",
            }
        assert feed_position(client) == before


def test_an_oversize_frame_is_closed_1009_with_a_reason(client: TestClient) -> None:
    alice = open_account(client, "Alice")
    before = feed_position(client)
    for frame in ("[" * (websocket_module.MAX_MESSAGE_BYTES + 1), "é" * 40_000):
        with client.websocket_connect("/ws") as ws:
            read_backlog(ws)
            ws.send_text(frame)
            with pytest.raises(WebSocketDisconnect) as closed:
                read_until(ws, lambda _: False)
        assert closed.value.code == 1009
        assert "65536 bytes" in closed.value.reason
    with client.websocket_connect("/ws") as ws:
        read_backlog(ws)
        ws.send_bytes(b"x" * (websocket_module.MAX_MESSAGE_BYTES + 1))
        with pytest.raises(WebSocketDisconnect) as closed:
            read_until(ws, lambda _: False)
    assert closed.value.code == 1009
    assert feed_position(client) == before
    # A frame at the limit is read.
    with client.websocket_connect("/ws") as ws:
        read_backlog(ws)
        request = {"type": "deposit", "credit_account_id": alice, "amount": "1"}
        text = json.dumps(request)
        ws.send_text(text + " " * (websocket_module.MAX_MESSAGE_BYTES - len(text)))
        assert next_reply(ws)["type"] == "ack"


def test_a_bad_after_position_is_refused(client: TestClient) -> None:
    for after in ("-1", "x", " 5", "\u0661", "1_0", "9" * 5000, "1e3"):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(f"/ws?after={after}") as ws,
        ):
            ws.receive_json()
        assert refused.value.code == 1008, after[:10]


def test_each_client_is_given_only_what_its_user_may_see() -> None:
    """Staff get every message; a customer those whose audience holds them."""
    alice = Actor(uuid.uuid4(), "alice", "customer")
    bob = Actor(uuid.uuid4(), "bob", "customer")
    messages = [
        FeedMessage("account_opened", {"n": 1}, position=1, audience=(alice.id,)),
        FeedMessage("account_opened", {"n": 2}, position=2, audience=(bob.id,)),
        FeedMessage("x", {"n": 3}, position=3, audience=(alice.id, bob.id)),
        FeedMessage("x", {"n": 4}, position=4, audience=()),
    ]

    async def publish() -> dict[str, list[int | None]]:
        hub = FeedHub(cast("Any", None), queue_size=10)
        hub.attach(asyncio.get_running_loop())
        clients = {actor.username: hub.connect(actor) for actor in (STAFF, alice, bob)}
        hub.receive(messages)
        await asyncio.sleep(0)  # the hub hands over with call_soon_threadsafe
        return {
            name: [c.queue.get_nowait().position for _ in range(c.queue.qsize())]
            for name, c in clients.items()
        }

    assert asyncio.run(publish()) == {
        "staff": [1, 2, 3, 4],
        "alice": [1, 3],
        "bob": [2, 3],
    }


def test_a_handshake_without_a_valid_session_is_refused_401(
    client: TestClient,
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token-of-this-bank"}):
        with (
            anonymous(client),
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/ws", headers=headers) as ws,
        ):
            ws.receive_json()
        assert getattr(refused.value, "status_code", None) == 401
    # The session cookie that a browser sends will do.
    token = sign_in(client, "staff")
    with anonymous(client):
        client.cookies.set("bankaccounts_session", token)
        try:
            with client.websocket_connect("/ws") as ws:
                assert ws.receive_json()["type"] == "ready"
        finally:
            client.cookies.clear()


def test_a_revoked_session_is_closed_4401_on_its_next_request(
    client: TestClient,
) -> None:
    carol = sign_up(client, "carol")
    account = open_account(client, "Carol", headers=carol.headers)
    before = feed_position(client)
    with client.websocket_connect("/ws", headers=carol.headers) as ws:
        read_backlog(ws)
        signed_out = client.delete("/api/tokens/current", headers=carol.headers)
        assert signed_out.status_code == 204
        ws.send_json({"type": "deposit", "credit_account_id": account, "amount": "1"})
        with pytest.raises(WebSocketDisconnect) as closed:
            read_until(ws, lambda _: False)
    assert closed.value.code == websocket_module.SIGNED_OUT_CLOSE_CODE == 4401
    assert closed.value.reason == "signed out"
    assert feed_position(client) == before  # the request was not recorded


def test_a_revoked_session_is_closed_4401_while_idle(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(websocket_module, "SESSION_CHECK_SECONDS", 0.05)
    dave = sign_up(client, "dave")
    with client.websocket_connect("/ws", headers=dave.headers) as ws:
        read_backlog(ws)
        assert client.delete("/api/tokens/current", headers=dave.headers).is_success
        with pytest.raises(WebSocketDisconnect) as closed:
            read_until(ws, lambda _: False)
    assert closed.value.code == 4401
    assert closed.value.reason == "signed out"


def test_a_session_whose_role_changed_is_told_to_reconnect(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A customer made staff sees another feed: reconnect (1013) from where it was."""
    monkeypatch.setattr(websocket_module, "SESSION_CHECK_SECONDS", 0.05)
    erin = sign_up(client, "erin")
    users = client.app.state.bank.users  # type: ignore[attr-defined]
    with client.websocket_connect("/ws", headers=erin.headers) as ws:
        read_backlog(ws)
        users.set_role("erin", "staff")
        with pytest.raises(WebSocketDisconnect) as closed:
            read_until(ws, lambda _: False)
    assert closed.value.code == RECONNECT_CLOSE_CODE
    assert closed.value.reason == "role changed"
    open_account(client, "Staff's")
    with client.websocket_connect("/ws", headers=erin.headers) as ws:
        assert [m["type"] for m in read_backlog(ws)] == ["account_opened"]

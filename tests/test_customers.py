"""Customers side by side, over REST and /ws, on every persistence module.

A customer sees and moves only their own money: another's account is 404 as if it
did not exist, and nothing is recorded; a transfer may pay into anyone's account;
the feed of a customer carries their own accounts and the transactions that touch
them, never another's balance. Staff see and may do everything. Lists page with
Link headers; statements page too and export as CSV; an account with money in it
is not closed.
"""

from __future__ import annotations

import csv
import io
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from starlette.websockets import WebSocketDisconnect

from bankaccounts import usecases
from tests.waiting import wait_for
from tests.webclient import (
    User,
    anonymous,
    bank_client,
    deposit,
    open_account,
    read_backlog,
    read_until,
    sign_up,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

#: The routes a request without a token may call (sign-up and sign-in).
OPEN_ROUTES = {("POST", "/api/users"), ("POST", "/api/tokens")}


@pytest.fixture
def client(persistence_env: dict[str, str]) -> Iterator[TestClient]:
    yield from bank_client(persistence_env)


@pytest.fixture
def alice(client: TestClient) -> User:
    return sign_up(client, "alice")


@pytest.fixture
def bob(client: TestClient) -> User:
    return sign_up(client, "bob")


def ref(user: User) -> dict[str, str]:
    return {"id": user.id, "username": user.username}


def commands_recorded(client: TestClient) -> int:
    """How many commands the Commands application has stored."""
    bank = client.app.state.bank  # type: ignore[attr-defined]
    position: int = bank.commands.recorder.max_notification_id() or 0
    return position


def account(client: TestClient, account_id: str) -> dict[str, Any]:
    """The account as staff see it."""
    response = client.get(f"/api/accounts/{account_id}")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def follow(client: TestClient, url: str, headers: dict[str, str]) -> list[Any]:
    """Every row of a list, page by page along its Link rel="next" headers."""
    rows: list[Any] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        response = client.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        rows.extend(response.json())
        pages += 1
        assert pages < 100
        link = response.links.get("next")
        next_url = None if link is None else link["url"]
    return rows


def walk(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a value, nested ones too."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def settle(client: TestClient, transaction_id: str) -> dict[str, Any]:
    """The transaction once the read model shows it finished (as staff)."""

    def finished() -> bool:
        response = client.get(f"/api/transactions/{transaction_id}")
        return response.status_code == 200 and response.json()["status"] != "pending"

    wait_for(finished, message="the transaction did not finish")
    answer: dict[str, Any] = client.get(f"/api/transactions/{transaction_id}").json()
    return answer


# ---------------------------------------------------------------- sign-in first


def test_every_api_route_and_the_websocket_need_a_token(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routes = [
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/")
        for method in operations
    ]
    assert len(routes) >= 17
    some_id = str(uuid.uuid4())
    with anonymous(client):
        for method, path in routes:
            if (method, path) in OPEN_ROUTES:
                continue
            url = path.replace("{account_id}", some_id).replace(
                "{transaction_id}", some_id
            )
            for headers in ({}, {"Authorization": "Bearer nobody-has-this-token-x"}):
                response = client.request(method, url, json={}, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/ws") as ws,
        ):
            ws.receive_json()
        assert getattr(refused.value, "status_code", None) == 401


# ---------------------------------------------------------------- ownership


def test_a_customer_sees_only_their_own_accounts_and_staff_see_all(
    client: TestClient, alice: User, bob: User
) -> None:
    mine = open_account(client, "Alice's", headers=alice.headers)
    theirs = open_account(client, "Bob's", headers=bob.headers)
    banks = open_account(client, "The bank's")
    opened = client.get(f"/api/accounts/{mine}", headers=alice.headers).json()
    assert opened["owner"] == ref(alice)
    assert [a["id"] for a in follow(client, "/api/accounts", alice.headers)] == [mine]
    assert [a["id"] for a in follow(client, "/api/accounts", bob.headers)] == [theirs]
    staff_view = follow(client, "/api/accounts", {})
    assert [a["id"] for a in staff_view] == [mine, theirs, banks]
    assert staff_view[2]["owner"] == ref(client.staff)  # type: ignore[attr-defined]
    for other in (theirs, banks):
        response = client.get(f"/api/accounts/{other}", headers=alice.headers)
        unknown = client.get(f"/api/accounts/{uuid.uuid4()}", headers=alice.headers)
        assert response.status_code == unknown.status_code == 404
        assert response.json()["detail"] == f"Account not found: account {other}"
    state = client.get("/api/state", headers=alice.headers).json()
    assert state["user"] == {**ref(alice), "role": "customer"}
    assert [a["id"] for a in state["accounts"]] == [mine]
    assert state["accounts_next"] is None
    me = client.get("/api/me", headers=alice.headers).json()
    assert me["role"] == "customer"


def test_a_customer_cannot_read_move_limit_or_close_anothers_account(
    client: TestClient, alice: User, bob: User
) -> None:
    mine = open_account(client, "Alice", headers=alice.headers)
    theirs = open_account(client, "Bob", headers=bob.headers)
    deposit(client, theirs, "40", headers=bob.headers)
    paid = deposit(client, mine, "5", headers=alice.headers)
    bobs_deposit = client.get("/api/transactions", headers=bob.headers).json()[0]
    before = account(client, theirs)
    recorded = commands_recorded(client)
    as_alice = alice.headers
    attempts = [
        client.get(f"/api/accounts/{theirs}", headers=as_alice),
        client.post(
            f"/api/accounts/{theirs}/deposits", json={"amount": "1"}, headers=as_alice
        ),
        client.post(
            f"/api/accounts/{theirs}/withdrawals",
            json={"amount": "1"},
            headers=as_alice,
        ),
        client.post(
            "/api/transfers?wait=true",
            json={"debit_account_id": theirs, "credit_account_id": mine, "amount": "1"},
            headers=as_alice,
        ),
        client.put(
            f"/api/accounts/{theirs}/overdraft-limit",
            json={"overdraft_limit": "1000"},
            headers=as_alice,
        ),
        client.post(f"/api/accounts/{theirs}/close", json={}, headers=as_alice),
        client.get(f"/api/accounts/{theirs}/statement", headers=as_alice),
        client.get(f"/api/accounts/{theirs}/statement.csv", headers=as_alice),
        client.get(f"/api/transactions?account_id={theirs}", headers=as_alice),
        client.get(f"/api/transactions/{bobs_deposit['id']}", headers=as_alice),
    ]
    for response in attempts:
        assert response.status_code == 404, (response.url, response.text)
        assert theirs in response.json()["detail"] or (
            bobs_deposit["id"] in response.json()["detail"]
        )
    # Over the websocket: the same answer, and nothing recorded either.
    with client.websocket_connect("/ws", headers=as_alice) as ws:
        read_backlog(ws)
        for request in [
            {"type": "deposit", "credit_account_id": theirs, "amount": "1"},
            {"type": "withdraw", "debit_account_id": theirs, "amount": "1"},
            {
                "type": "transfer",
                "debit_account_id": theirs,
                "credit_account_id": mine,
                "amount": "1",
            },
        ]:
            ws.send_json({**request, "request_id": request["type"]})
            reply = read_until(ws, lambda m: m["type"] in ("ack", "error"))[-1]
            assert reply == {
                "type": "error",
                "request_id": request["type"],
                "error": f"Account not found: account {theirs}",
            }
    assert commands_recorded(client) == recorded
    after = account(client, theirs)
    assert after == before
    assert after["balance"] == "40.00"
    assert after["overdraft_limit"] == "0.00"
    assert after["is_closed"] is False
    # Alice's own is hers to see and use.
    mine_now = client.get(f"/api/accounts/{mine}", headers=as_alice).json()
    assert mine_now["balance"] == "5.00"
    mine_paid = client.get(
        f"/api/transactions/{paid['transaction_id']}", headers=as_alice
    )
    assert mine_paid.status_code == 200


def test_a_customer_pays_into_anothers_account_and_each_sees_their_side(
    client: TestClient, alice: User, bob: User
) -> None:
    mine = open_account(client, "Alice", headers=alice.headers)
    theirs = open_account(client, "Bob", headers=bob.headers)
    deposit(client, mine, "50", headers=alice.headers)
    payee = client.get(f"/api/accounts/{theirs}/payee", headers=alice.headers)
    assert payee.json() == {
        "id": theirs,
        "name": "Bob",
        "owner": ref(bob),
        "is_closed": False,
    }
    unknown = uuid.uuid4()
    response = client.get(f"/api/accounts/{unknown}/payee", headers=alice.headers)
    assert response.status_code == 404
    with (
        client.websocket_connect("/ws", headers=bob.headers) as bobs_feed,
        client.websocket_connect("/ws") as staff_feed,
    ):
        bobs_backlog = read_backlog(bobs_feed)
        read_backlog(staff_feed)
        transfer = client.post(
            "/api/transfers?wait=true",
            json={
                "debit_account_id": mine,
                "credit_account_id": theirs,
                "amount": "20",
            },
            headers=alice.headers,
        )
        assert transfer.status_code == 200, transfer.text
        assert transfer.json()["status"] == "succeeded"
        transaction_id = transfer.json()["transaction_id"]

        def finishes(message: dict[str, Any]) -> bool:
            return message["type"] == "transaction_succeeded" and (
                message["transaction"]["id"] == transaction_id
            )

        bobs_live = read_until(bobs_feed, finishes)
        staff_live = read_until(staff_feed, finishes)
    # Bob sees the credit, with who paid, and his balance; never Alice's.
    bobs = bobs_backlog + bobs_live
    credit = bobs_live[-1]["transaction"]
    assert credit["debit_owner"] == ref(alice)
    assert credit["credit_owner"] == ref(bob)
    assert credit["initiated_by"] == ref(alice)
    for message in bobs:
        for item in walk(message):
            if item.get("id") == mine:
                assert "balance" not in item, message
        if "account" in message:
            assert message["account"]["id"] == theirs, message
    positions = [m["position"] for m in bobs]
    assert positions == sorted(set(positions))
    assert any(
        m["type"] == "transaction_appended" and m["account"]["balance"] == "20.00"
        for m in bobs_live
    )
    # Staff see both accounts move.
    moved = {m["account"]["id"] for m in staff_live if "account" in m}
    assert moved == {mine, theirs}
    # The transaction is visible to both sides, and in each one's list.
    for user in (alice, bob):
        response = client.get(
            f"/api/transactions/{transaction_id}", headers=user.headers
        )
        assert response.status_code == 200
        listed = client.get("/api/transactions", headers=user.headers).json()
        assert transaction_id in [t["id"] for t in listed]
    assert client.get(f"/api/accounts/{mine}", headers=bob.headers).status_code == 404
    # A payee that does not exist: 404, nothing recorded.
    recorded = commands_recorded(client)
    response = client.post(
        "/api/transfers",
        json={
            "debit_account_id": mine,
            "credit_account_id": str(unknown),
            "amount": "1",
        },
        headers=alice.headers,
    )
    assert response.status_code == 404
    assert commands_recorded(client) == recorded


def test_a_customers_feed_resumes_within_what_they_may_see(
    client: TestClient, alice: User, bob: User
) -> None:
    mine = open_account(client, "Alice", headers=alice.headers)
    theirs = open_account(client, "Bob", headers=bob.headers)
    for amount in ("1", "2", "3"):
        deposit(client, mine, amount, headers=alice.headers)
        deposit(client, theirs, amount, headers=bob.headers)
    last = settle(
        client, client.get("/api/transactions").json()[0]["id"]
    )  # everything has finished
    assert last["status"] == "succeeded"
    with client.websocket_connect("/ws?after=0", headers=alice.headers) as ws:
        everything = read_backlog(ws)
    positions = [m["position"] for m in everything]
    assert positions == sorted(set(positions))
    assert len(everything) == 1 + 3 * 3  # opened; pending, appended, succeeded x3
    for message in everything:
        assert theirs not in str(message)
    middle = positions[5]
    with client.websocket_connect(f"/ws?after={middle}", headers=alice.headers) as ws:
        resumed = read_backlog(ws)
        deposit(client, theirs, "4", headers=bob.headers)  # not Alice's to see
        deposit(client, mine, "4", headers=alice.headers)
        live = read_until(ws, lambda m: m["type"] == "transaction_succeeded")
    assert resumed == everything[6:]
    assert all(theirs not in str(message) for message in live)
    assert [m["position"] for m in resumed + live] == sorted(
        {m["position"] for m in resumed + live}
    )
    assert live[-2]["account"]["balance"] == "10.00"


def test_staff_may_do_everything(client: TestClient, alice: User) -> None:
    hers = open_account(client, "Alice", headers=alice.headers)
    assert deposit(client, hers, "30")["status"] == "succeeded"
    response = client.put(
        f"/api/accounts/{hers}/overdraft-limit", json={"overdraft_limit": "10"}
    )
    assert response.status_code == 200
    response = client.post(
        f"/api/accounts/{hers}/withdrawals?wait=true", json={"amount": "40"}
    )
    assert response.json()["status"] == "succeeded"
    transaction = client.get(f"/api/transactions/{response.json()['transaction_id']}")
    assert transaction.json()["initiated_by"] == ref(client.staff)  # type: ignore[attr-defined]
    assert transaction.json()["debit_owner"] == ref(alice)
    # Alice sees what staff did on her account, and who did it.
    listed = client.get(f"/api/transactions?account_id={hers}", headers=alice.headers)
    assert [t["initiated_by"]["username"] for t in listed.json()] == ["staff", "staff"]
    assert deposit(client, hers, "10")["status"] == "succeeded"
    closed = client.post(f"/api/accounts/{hers}/close", json={})
    assert closed.status_code == 200
    assert closed.json()["is_closed"] is True


def test_idempotency_keys_are_each_users_own(
    client: TestClient, alice: User, bob: User
) -> None:
    mine = open_account(client, "Alice", headers=alice.headers)
    theirs = open_account(client, "Bob", headers=bob.headers)
    key = {"Idempotency-Key": "pay-rent"}
    first = client.post(
        f"/api/accounts/{mine}/deposits?wait=true",
        json={"amount": "5"},
        headers={**alice.headers, **key},
    )
    other = client.post(
        f"/api/accounts/{theirs}/deposits?wait=true",
        json={"amount": "7"},
        headers={**bob.headers, **key},
    )
    assert first.status_code == other.status_code == 200
    assert first.json()["transaction_id"] != other.json()["transaction_id"]
    again = client.post(
        f"/api/accounts/{mine}/deposits",
        json={"amount": "5"},
        headers={**alice.headers, **key},
    )
    assert again.status_code == 200
    assert again.json() == first.json()
    assert account(client, mine)["balance"] == "5.00"
    assert account(client, theirs)["balance"] == "7.00"


# ---------------------------------------------------------------- closing


def test_an_account_with_money_in_it_is_not_closed(
    client: TestClient, alice: User, bob: User
) -> None:
    savings = open_account(client, "Savings", headers=alice.headers)
    current = open_account(client, "Current", headers=alice.headers)
    deposit(client, savings, "12.50", headers=alice.headers)
    recorded = commands_recorded(client)
    refused = client.post(
        f"/api/accounts/{savings}/close", json={}, headers=alice.headers
    )
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "Savings's account holds 12.50: move the balance to another of the owner's "
        "accounts first, then close it"
    )
    assert account(client, savings)["is_closed"] is False
    assert commands_recorded(client) == recorded
    by_bob = client.post(f"/api/accounts/{savings}/close", json={}, headers=bob.headers)
    assert by_bob.status_code == 404
    moved = client.post(
        "/api/transfers?wait=true",
        json={
            "debit_account_id": savings,
            "credit_account_id": current,
            "amount": "12.50",
        },
        headers=alice.headers,
    )
    assert moved.json()["status"] == "succeeded"
    closed = client.post(
        f"/api/accounts/{savings}/close", json={}, headers=alice.headers
    )
    assert closed.status_code == 200
    assert closed.json()["is_closed"] is True
    assert closed.json()["balance"] == "0.00"
    again = client.post(
        f"/api/accounts/{savings}/close", json={}, headers=alice.headers
    )
    assert again.status_code == 409
    assert account(client, current)["balance"] == "12.50"


# ---------------------------------------------------------------- paging


def test_lists_page_with_link_headers_covering_every_row_once(
    client: TestClient, alice: User, bob: User
) -> None:
    names = ["delta", "Alpha", "charlie", "Bravo", "echo", "foxtrot", "golf"]
    ids = [open_account(client, name, headers=alice.headers) for name in names]
    open_account(client, "Bob's", headers=bob.headers)
    for index, account_id in enumerate(ids[:4]):
        deposit(client, account_id, str(index + 1), headers=alice.headers)
    opened = follow(client, "/api/accounts?limit=3", alice.headers)
    assert [a["id"] for a in opened] == ids
    first = client.get("/api/accounts?limit=3", headers=alice.headers)
    link = first.links["next"]["url"]
    assert link.startswith("http://testserver/api/accounts?")
    assert "limit=3" in link
    assert "cursor=" in link
    assert first.headers["link"] == f'<{link}>; rel="next"'
    by_name = follow(client, "/api/accounts?sort=name&limit=2", alice.headers)
    assert [a["name"] for a in by_name] == sorted(names, key=str.casefold)
    by_balance = follow(client, "/api/accounts?sort=balance&limit=2", alice.headers)
    balances = [a["balance"] for a in by_balance]
    assert balances[:4] == ["4.00", "3.00", "2.00", "1.00"]
    assert len(by_balance) == len(ids)
    found = follow(client, "/api/accounts?q=ALP", alice.headers)
    assert [a["name"] for a in found] == ["Alpha"]
    by_number = follow(client, f"/api/accounts?q={ids[2][:8]}", alice.headers)
    assert ids[2] in [a["id"] for a in by_number]
    assert follow(client, "/api/accounts?q=Bob", alice.headers) == []
    assert len(follow(client, "/api/accounts?limit=2", {})) == len(ids) + 1
    # Transactions: newest first, each once, only the viewer's.
    transactions = follow(client, "/api/transactions?limit=3", alice.headers)
    assert len(transactions) == 4
    assert [t["amount"] for t in transactions] == ["4.00", "3.00", "2.00", "1.00"]
    of_one = follow(
        client, f"/api/transactions?account_id={ids[0]}&limit=1", alice.headers
    )
    assert [t["amount"] for t in of_one] == ["1.00"]
    assert follow(client, "/api/transactions?limit=2", bob.headers) == []
    last = client.get("/api/accounts?limit=500", headers=alice.headers)
    assert "link" not in last.headers
    for bad in (
        "/api/accounts?cursor=not-a-cursor",
        "/api/accounts?limit=0",
        "/api/accounts?limit=501",
        "/api/accounts?sort=owner",
        "/api/transactions?cursor=%%%",
        "/api/transactions?limit=9999",
        "/api/accounts?q=" + "x" * 101,
        "/api/accounts?cursor=" + "x" * 2000,
    ):
        response = client.get(bad, headers=alice.headers)
        assert response.status_code == 422, (bad[:60], response.text)
        field = bad.partition("?")[2].partition("=")[0]
        assert response.json()["detail"][0]["field"] == field, bad[:60]


def test_state_is_bounded(
    client: TestClient, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usecases, "STATE_ACCOUNTS", 2)
    ids = [open_account(client, f"A{i}", headers=alice.headers) for i in range(3)]
    state = client.get("/api/state", headers=alice.headers).json()
    assert set(state) == {
        "position",
        "user",
        "accounts",
        "accounts_next",
        "transactions",
    }
    assert [a["id"] for a in state["accounts"]] == ids[:2]
    assert state["accounts_next"] is not None
    rest = client.get(
        f"/api/accounts?cursor={state['accounts_next']}", headers=alice.headers
    )
    assert [a["id"] for a in rest.json()] == ids[2:]


# ---------------------------------------------------------------- statements


def test_a_statement_pages_newest_first_with_running_balances_and_exports_csv(
    client: TestClient, alice: User, bob: User
) -> None:
    mine = open_account(client, "Alice", headers=alice.headers)
    theirs = open_account(client, "Bob", headers=bob.headers)
    for amount in ("10", "20", "30"):
        deposit(client, mine, amount, headers=alice.headers)
    client.post(
        f"/api/accounts/{mine}/withdrawals?wait=true",
        json={"amount": "5"},
        headers=alice.headers,
    )
    paid = client.post(
        "/api/transfers?wait=true",
        json={"debit_account_id": mine, "credit_account_id": theirs, "amount": "15"},
        headers=alice.headers,
    ).json()
    settle(client, paid["transaction_id"])
    path = f"/api/accounts/{mine}/statement"

    def statement_entries() -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        url: str | None = f"{path}?limit=2"
        while url is not None:
            response = client.get(url, headers=alice.headers)
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["account_id"] == mine
            assert len(page["entries"]) <= 2
            entries.extend(page["entries"])
            link = response.links.get("next")
            url = None if link is None else link["url"]
            assert (link is None) == (page["next_cursor"] is None)
        return entries

    wait_for(lambda: len(statement_entries()) == 5, message="statement incomplete")
    entries = statement_entries()
    assert [e["amount"] for e in entries] == [
        "-15.00",
        "-5.00",
        "30.00",
        "20.00",
        "10.00",
    ]
    assert [e["balance"] for e in entries] == [
        "40.00",
        "55.00",
        "60.00",
        "30.00",
        "10.00",
    ]
    assert [e["seq"] for e in entries] == [5, 4, 3, 2, 1]
    transfer = entries[0]
    assert transfer["kind"] == "transfer"
    assert transfer["transaction_id"] == paid["transaction_id"]
    assert transfer["counterparty"] == {"id": theirs, "name": "Bob", "owner": ref(bob)}
    assert transfer["initiated_by"] == ref(alice)
    assert "+" in transfer["at"] or transfer["at"].endswith("Z")  # with its offset
    # Bob's side: the credit, with who paid, and his own running balance.
    bobs = client.get(f"/api/accounts/{theirs}/statement", headers=bob.headers).json()
    assert [(e["amount"], e["balance"]) for e in bobs["entries"]] == [
        ("15.00", "15.00")
    ]
    assert bobs["entries"][0]["counterparty"]["owner"] == ref(alice)
    # A date range: the days (UTC) of the first and the last hold them all; a date
    # "to" includes its whole day.
    first_day, last_day = entries[-1]["at"][:10], entries[0]["at"][:10]
    days = {"from": first_day, "to": last_day}
    ranged = client.get(path, params=days, headers=alice.headers)
    assert len(ranged.json()["entries"]) == 5
    # A date-time "to" is exclusive, a "from" inclusive.
    before = client.get(path, params={"to": entries[-1]["at"]}, headers=alice.headers)
    assert before.json()["entries"] == []
    since_second = client.get(
        path, params={"from": entries[3]["at"]}, headers=alice.headers
    )
    assert [e["seq"] for e in since_second.json()["entries"]] == [5, 4, 3, 2]
    for bad in (
        "from=yesterday",
        "to=2026-13-01",
        "from=2026-02-01&to=2026-01-01",
        "limit=0",
        "limit=501",
        "cursor=nope",
        "from=" + "1" * 100,
    ):
        response = client.get(f"{path}?{bad}", headers=alice.headers)
        assert response.status_code == 422, (bad, response.text)
    far = client.get(f"{path}?from=0001-01-01&to=9999-12-31", headers=alice.headers)
    assert len(far.json()["entries"]) == 5
    # CSV: every matching row, newest first.
    exported = client.get(f"{path}.csv", headers=alice.headers)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == [
        "date",
        "transaction_id",
        "kind",
        "counterparty",
        "amount",
        "balance",
        "initiated_by",
    ]
    assert [row[4] for row in rows[1:]] == [
        "-15.00",
        "-5.00",
        "30.00",
        "20.00",
        "10.00",
    ]
    assert rows[1] == [
        transfer["at"],
        paid["transaction_id"],
        "transfer",
        theirs,
        "-15.00",
        "40.00",
        "alice",
    ]
    assert rows[2][3] == ""
    empty = client.get(f"{path}.csv?to=2000-01-01", headers=alice.headers)
    assert empty.text.splitlines() == [",".join(rows[0])]
    assert client.get(f"{path}.csv?from=x", headers=alice.headers).status_code == 422

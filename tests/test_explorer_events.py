"""The explorer over REST, on every store: an account's stored events and snapshots,
and the applications' notification logs; who may see them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from bankaccounts.domainmodel import BankAccount
from bankaccounts.exceptions import InsufficientFundsError
from bankaccounts.explorer import event_json, topics_of
from tests.webclient import User, bank_client, deposit, open_account, sign_up

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

    from bankaccounts.deploy.bootstrap import Bank


@pytest.fixture
def client(persistence_env: dict[str, str]) -> Iterator[TestClient]:
    yield from bank_client(persistence_env)


@pytest.fixture
def alice(client: TestClient) -> User:
    return sign_up(client, "alice")


@pytest.fixture
def bob(client: TestClient) -> User:
    return sign_up(client, "bob")


def bank_of(client: TestClient) -> Bank:
    bank: Bank = client.app.state.bank  # type: ignore[attr-defined]
    return bank


def follow(client: TestClient, url: str, headers: dict[str, str] | None = None) -> Any:
    """Every row of a list, page by page along its Link rel="next" headers."""
    rows: list[Any] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        response = client.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        rows.extend(response.json())
        pages += 1
        assert pages < 500
        link = response.links.get("next")
        next_url = None if link is None else link["url"]
    return rows


def grow(bank: Bank, account_id: str, count: int) -> None:
    """Adds count overdraft-limit changes straight through Accounts (fast)."""
    for i in range(count):
        bank.accounts.set_overdraft_limit(uuid.UUID(account_id), Decimal(i))


def test_an_accounts_events_in_version_order_with_types_and_data(
    client: TestClient, alice: User
) -> None:
    account_id = open_account(client, "Alice", alice.headers)
    deposit(client, account_id, "10.00", alice.headers)
    withdrawn = client.post(
        f"/api/accounts/{account_id}/withdrawals?wait=true",
        json={"amount": "25.00"},
        headers=alice.headers,
    ).json()
    assert withdrawn["status"] == "failed"
    limit = client.put(
        f"/api/accounts/{account_id}/overdraft-limit",
        json={"overdraft_limit": "50.00"},
        headers=alice.headers,
    )
    assert limit.status_code == 200, limit.text
    deposit(client, account_id, "0.50", alice.headers)

    response = client.get(f"/api/accounts/{account_id}/events", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert "next" not in response.links
    events = response.json()
    assert [e["type"] for e in events] == [
        "Created",
        "TransactionAppended",
        "ErrorRecorded",
        "OverdraftLimitSet",
        "TransactionAppended",
    ]
    assert [e["version"] for e in events] == [1, 2, 3, 4, 5]
    assert all(set(e) == {"version", "type", "timestamp", "data"} for e in events)
    times = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert times == sorted(times)
    user = {"id": alice.id, "username": "alice"}
    created, credit, error, limit_set, small = (e["data"] for e in events)
    assert created["name"] == "Alice"
    assert created["owner"] == user
    assert created["originator_topic"] == "bankaccounts.domainmodel:BankAccount"
    assert credit["amount"] == "10.00"
    assert credit["initiated_by"] == user
    assert str(uuid.UUID(credit["transaction_id"])) == credit["transaction_id"]
    assert credit["is_refund"] is False
    assert error["error"] == {
        "type": "InsufficientFundsError",
        "message": str(InsufficientFundsError(uuid.UUID(account_id))),
    }
    assert error["transaction_id"] == withdrawn["transaction_id"]
    assert limit_set == {"overdraft_limit": "50.00"}
    assert small["amount"] == "0.50"


def test_events_page_by_page_with_link_headers(client: TestClient, alice: User) -> None:
    account_id = open_account(client, "Alice", alice.headers)
    grow(bank_of(client), account_id, 11)
    url = f"/api/accounts/{account_id}/events"
    everything = client.get(url, headers=alice.headers).json()
    assert [e["version"] for e in everything] == list(range(1, 13))
    first = client.get(f"{url}?limit=5", headers=alice.headers)
    assert [e["version"] for e in first.json()] == [1, 2, 3, 4, 5]
    assert "cursor=5" in first.links["next"]["url"]
    assert follow(client, f"{url}?limit=5", alice.headers) == everything
    assert follow(client, f"{url}?limit=1", alice.headers) == everything
    last = client.get(f"{url}?limit=12", headers=alice.headers)
    assert "next" not in last.links
    for bad in ("limit=0", "limit=501", "cursor=abc", "cursor=-1", "cursor=1e3"):
        answer = client.get(f"{url}?{bad}", headers=alice.headers)
        assert answer.status_code == 422, (bad, answer.text)
    past = client.get(f"{url}?cursor=12", headers=alice.headers)
    assert past.status_code == 200
    assert past.json() == []


def test_snapshots_are_shown_apart(client: TestClient, alice: User) -> None:
    account_id = open_account(client, "Alice", alice.headers)
    grow(bank_of(client), account_id, 249)  # versions 1 to 250
    response = client.get(
        f"/api/accounts/{account_id}/snapshots", headers=alice.headers
    )
    assert response.status_code == 200, response.text
    snapshots = response.json()
    assert [s["version"] for s in snapshots] == [100, 200]
    for snapshot in snapshots:
        assert snapshot["type"] == "Snapshot"
        assert snapshot["snapshot"] is True
        datetime.fromisoformat(snapshot["timestamp"])
        state = snapshot["data"]["state"]
        assert snapshot["data"]["topic"] == "bankaccounts.domainmodel:BankAccount"
        assert state["name"] == "Alice"
        assert state["overdraft_limit"] == f"{snapshot['version'] - 2}.00"
        assert state["owner"] == {"id": alice.id, "username": "alice"}
    events = follow(client, f"/api/accounts/{account_id}/events", alice.headers)
    assert len(events) == 250
    assert all(e["type"] != "Snapshot" and "snapshot" not in e for e in events)
    paged = follow(
        client, f"/api/accounts/{account_id}/snapshots?limit=1", alice.headers
    )
    assert paged == snapshots
    fresh = open_account(client, "New", alice.headers)
    assert client.get(f"/api/accounts/{fresh}/snapshots").json() == []


def test_a_customer_sees_only_their_own_accounts_events(
    client: TestClient, alice: User, bob: User
) -> None:
    account_id = open_account(client, "Alice", alice.headers)
    for path in ("events", "snapshots"):
        url = f"/api/accounts/{account_id}/{path}"
        assert client.get(url, headers=alice.headers).status_code == 200
        assert client.get(url).status_code == 200  # staff
        refused = client.get(url, headers=bob.headers)
        assert refused.status_code == 404, refused.text
        assert "alice" not in refused.text.lower()
        unknown = client.get(f"/api/accounts/{uuid.uuid4()}/{path}")
        assert unknown.status_code == 404
        forged = client.get(url, headers={"Authorization": "Bearer nope"})
        assert forged.status_code == 401


def test_notification_logs_are_for_staff(
    client: TestClient, alice: User, bob: User
) -> None:
    first = open_account(client, "Alice", alice.headers)
    second = open_account(client, "Bob", bob.headers)
    deposit(client, first, "5.00", alice.headers)
    url = "/api/applications/Accounts/notifications"

    log = follow(client, url)
    ids = [n["id"] for n in log]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for notification in log:
        assert set(notification) == {
            "id",
            "originator_id",
            "originator_version",
            "topic",
            "type",
            "timestamp",
            "data",
        }
    created = [n for n in log if n["type"] == "Created"]
    assert [n["originator_id"] for n in created] == [first, second]
    assert created[0]["topic"] == "bankaccounts.domainmodel:BankAccount.Created"
    assert created[0]["data"]["name"] == "Alice"
    appended = [n for n in log if n["type"] == "TransactionAppended"]
    assert appended[0]["data"]["amount"] == "5.00"

    assert follow(client, f"{url}?limit=1") == log
    assert follow(client, f"{url}?type=Created") == created
    assert follow(client, f"{url}?type=BankAccount.Created") == created
    assert follow(client, f"{url}?type=NoSuchEvent") == []
    mine = follow(client, f"{url}?originator_id={first}")
    assert mine == [n for n in log if n["originator_id"] == first]
    assert follow(client, f"{url}?originator_id={first}&limit=1") == mine
    both = follow(client, f"{url}?originator_id={second}&type=Created")
    assert both == [created[1]]
    after = client.get(f"{url}?after={log[0]['id']}").json()
    assert after == log[1 : 1 + len(after)]

    for name in ("Commands", "Sagas", "Interface"):
        answer = client.get(f"/api/applications/{name}/notifications")
        assert answer.status_code == 200, (name, answer.text)
    commands = follow(client, "/api/applications/Commands/notifications")
    assert commands[0]["type"] == "Created"
    assert commands[0]["data"]["amount"] == "5.00"

    for name in ("Users", "users", "Nothing"):
        assert client.get(f"/api/applications/{name}/notifications").status_code == 404
    for name in ("Accounts", "Users"):
        refused = client.get(
            f"/api/applications/{name}/notifications", headers=alice.headers
        )
        assert refused.status_code == 403, refused.text
    for bad in ("after=-1", "limit=0", "limit=501", "originator_id=x", "after=x"):
        assert client.get(f"{url}?{bad}").status_code == 422, bad


def test_event_json_converts_every_kind_of_value() -> None:
    account = BankAccount(name="Json")
    account.append_transaction(Decimal("1.50"), uuid.UUID(int=1))
    account.record_error(InsufficientFundsError(account.id), uuid.UUID(int=2))
    created, appended, error = account.collect_events()
    assert event_json(appended) == {
        "amount": "1.50",
        "transaction_id": str(uuid.UUID(int=1)),
        "initiated_by": None,
        "counterparty_id": None,
        "is_refund": False,
    }
    assert event_json(error)["error"]["type"] == "InsufficientFundsError"
    assert event_json(created)["name"] == "Json"

    class Nested:
        def __init__(self) -> None:
            self.values = [Decimal("1"), {"when": datetime(2026, 1, 2), "n": (1, 2)}]
            self.originator_id = uuid.UUID(int=3)

    assert event_json(Nested()) == {
        "values": ["1", {"when": "2026-01-02T00:00:00", "n": [1, 2]}]
    }


def test_topics_of_an_event_name() -> None:
    assert topics_of("BankAccount.Created") == (
        "bankaccounts.domainmodel:BankAccount.Created",
        "bankaccounts.domainmodel:BankAccount.Opened",
    )
    assert len(topics_of("Created")) > 3
    assert topics_of("Nothing") == ()


def test_the_explorer_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/accounts/{account_id}/events",
        "/api/accounts/{account_id}/snapshots",
        "/api/applications/{name}/notifications",
    ):
        answers = paths[path]["get"]["responses"]
        assert {"200", "401", "404", "422"} <= set(answers), path
    assert "403" in paths["/api/applications/{name}/notifications"]["get"]["responses"]
    account = paths["/api/accounts/{account_id}"]["get"]
    assert {p["name"] for p in account["parameters"]} >= {"version", "at"}

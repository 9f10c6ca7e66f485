"""Time travel over REST, on every store: GET /api/accounts/{id}?version=N or ?at=.

The state at every version of a history of 300 events is compared with balances,
limits and closed flags computed here from the operations, not from the events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from bankaccounts.exceptions import InsufficientFundsError
from tests.webclient import User, bank_client, deposit, open_account, sign_up

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

    from bankaccounts.deploy.bootstrap import Bank

HISTORY = 300


@pytest.fixture
def client(persistence_env: dict[str, str]) -> Iterator[TestClient]:
    yield from bank_client(persistence_env)


@pytest.fixture
def alice(client: TestClient) -> User:
    return sign_up(client, "alice")


@pytest.fixture
def bob(client: TestClient) -> User:
    return sign_up(client, "bob")


@dataclass(frozen=True)
class Expected:
    """An account's state after a version, as computed from the operations."""

    balance: Decimal
    overdraft_limit: Decimal
    is_closed: bool


def build_history(bank: Bank, account_id: uuid.UUID, count: int) -> list[Expected]:
    """Writes count - 1 events after Created through Accounts; each version's state.

    Deposits and withdrawals of varying sizes, limit changes, refused withdrawals
    (ErrorRecorded) and at last a close, each saved as the application saves.
    """
    accounts = bank.accounts
    balance, limit, closed = Decimal(0), Decimal(0), False
    expected = [Expected(balance, limit, closed)]  # version 1: Created
    for i in range(1, count):
        account = accounts.get_account(account_id)
        if i == count - 1:
            account.close()
            closed = True
        elif i % 7 == 0:
            limit = Decimal(i % 50)
            account.set_overdraft_limit(limit)
        elif i % 11 == 0:
            account.record_error(InsufficientFundsError(account_id))
        else:
            amount = Decimal(i % 13 + 1) / 4
            if i % 3 == 0 and balance - amount >= -limit:
                amount = -amount
            account.append_transaction(amount)
            balance += amount
        accounts.save(account)
        expected.append(Expected(balance, limit, closed))
    return expected


def at_version(
    client: TestClient, account_id: str, version: int, headers: Any = None
) -> dict[str, Any]:
    response = client.get(
        f"/api/accounts/{account_id}?version={version}", headers=headers
    )
    assert response.status_code == 200, (version, response.text)
    answer: dict[str, Any] = response.json()
    return answer


def test_the_state_at_every_version_of_a_long_history(
    client: TestClient, alice: User
) -> None:
    account_id = open_account(client, "Alice", alice.headers)
    bank: Bank = client.app.state.bank  # type: ignore[attr-defined]
    expected = build_history(bank, uuid.UUID(account_id), HISTORY)
    assert len(expected) == HISTORY
    snapshots = client.get(f"/api/accounts/{account_id}/snapshots").json()
    assert [s["version"] for s in snapshots] == [100, 200, 300]
    now = client.get(f"/api/accounts/{account_id}").json()
    for version, state in enumerate(expected, start=1):
        past = at_version(client, account_id, version, alice.headers)
        assert past["version"] == version
        assert Decimal(past["balance"]) == state.balance, version
        assert Decimal(past["overdraft_limit"]) == state.overdraft_limit, version
        assert past["is_closed"] is state.is_closed, version
        assert past["id"] == account_id
        assert past["name"] == "Alice"
        assert past["owner"] == {"id": alice.id, "username": "alice"}
        assert past["opened_at"] == now["opened_at"]
    last = at_version(client, account_id, HISTORY)
    assert {k: v for k, v in last.items() if k != "version"} == now
    missing = client.get(f"/api/accounts/{account_id}?version={HISTORY + 1}")
    assert missing.status_code == 404, missing.text


def test_at_a_time_between_two_events(client: TestClient, alice: User) -> None:
    account_id = open_account(client, "Alice", alice.headers)
    for amount in ("1.00", "2.00", "4.00"):
        deposit(client, account_id, amount, alice.headers)
    events = client.get(f"/api/accounts/{account_id}/events").json()
    times = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert len(times) == 4

    def at(when: datetime, headers: Any = None) -> Any:
        return client.get(
            f"/api/accounts/{account_id}",
            params={"at": when.isoformat()},
            headers=headers,
        )

    for version in range(1, 4):
        earlier, later = times[version - 1], times[version]
        assert earlier < later
        between = at(earlier + (later - earlier) / 2, alice.headers)
        assert between.status_code == 200, between.text
        assert between.json() == at_version(client, account_id, version)
        exactly = at(earlier).json()
        assert exactly["version"] == version
    assert at(times[3]).json()["balance"] == "7.00"
    assert at(times[3] + timedelta(days=3650)).json()["version"] == 4
    before = at(times[0] - timedelta(microseconds=1))
    assert before.status_code == 404, before.text
    # A time without an offset is UTC; a date is its first moment.
    naive = times[3].astimezone(UTC).replace(tzinfo=None).isoformat()
    answer = client.get(f"/api/accounts/{account_id}", params={"at": naive})
    assert answer.json()["version"] == 4
    assert client.get(f"/api/accounts/{account_id}?at=1999-01-01").status_code == 404
    assert client.get(f"/api/accounts/{account_id}?at=1000-01-01").status_code == 404
    assert client.get(f"/api/accounts/{account_id}?at=9999-01-01").status_code == 200


def test_before_it_existed_past_its_end_and_bad_input(
    client: TestClient, alice: User
) -> None:
    account_id = open_account(client, "Alice", alice.headers)
    url = f"/api/accounts/{account_id}"
    assert at_version(client, account_id, 1)["balance"] == "0.00"
    for query in ("version=2", f"version={2**53}"):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 404, (query, response.text)
    for query in (
        "version=0",
        "version=-1",
        "version=abc",
        "version=1.5",
        f"version={2**53 + 1}",
        "at=yesterday",
        "at=2026-13-01",
        "version=1&at=2026-01-01",
    ):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 422, (query, response.text)
        assert response.json()["detail"][0]["field"] in ("version", "at")
    unknown = client.get(f"/api/accounts/{uuid.uuid4()}?version=1")
    assert unknown.status_code == 404
    # Without either, the read model's account as before (no "version").
    assert "version" not in client.get(url).json()


def test_a_customer_travels_only_in_their_own_accounts(
    client: TestClient, alice: User, bob: User
) -> None:
    account_id = open_account(client, "Alice", alice.headers)
    url = f"/api/accounts/{account_id}"
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for params in ({"version": "1"}, {"at": later}):
        assert client.get(url, params=params, headers=alice.headers).status_code == 200
        refused = client.get(url, params=params, headers=bob.headers)
        assert refused.status_code == 404, refused.text
        assert "Alice" not in refused.text

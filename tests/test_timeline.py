"""GET /api/transactions/{id}/timeline: a transaction's journey, on every store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest

from bankaccounts.storedevents import notification_ids
from bankaccounts.system.sagas import RefundFundsSaga
from tests.waiting import wait_for
from tests.webclient import bank_client, deposit, open_account, sign_up

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from fastapi.testclient import TestClient

STEP_KEYS = {
    "application",
    "type",
    "timestamp",
    "position",
    "originator_id",
    "originator_version",
    "aggregate",
    "data",
}


@pytest.fixture
def client(persistence_env: dict[str, str]) -> Iterator[TestClient]:
    yield from bank_client(persistence_env)


def timeline(
    client: TestClient, transaction_id: str, headers: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    response = client.get(
        f"/api/transactions/{transaction_id}/timeline", headers=headers
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["transaction_id"] == transaction_id
    steps: list[dict[str, Any]] = answer["steps"]
    assert all(set(step) == STEP_KEYS for step in steps), steps
    assert [s["timestamp"] for s in steps] == sorted(s["timestamp"] for s in steps)
    return steps


def settled(
    client: TestClient, transaction_id: str, feed_types: set[str]
) -> list[dict[str, Any]]:
    """The timeline once the interface has written the feed messages expected."""
    found: list[dict[str, Any]] = []

    def done() -> bool:
        found[:] = timeline(client, transaction_id)
        return feed_types <= {
            s["type"] for s in found if s["application"] == "Interface"
        }

    wait_for(done, message=f"no feed messages {feed_types} in the timeline")
    return found


def names(steps: list[dict[str, Any]], application: str) -> list[str]:
    return [s["type"] for s in steps if s["application"] == application]


def first_index(steps: list[dict[str, Any]], application: str) -> int:
    return next(i for i, s in enumerate(steps) if s["application"] == application)


def post(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{path}?wait=true", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_deposit_goes_through_commands_sagas_accounts_and_the_feed(
    client: TestClient,
) -> None:
    account_id = open_account(client, "Alice")
    transaction_id = deposit(client, account_id, "10.00")["transaction_id"]
    steps = settled(
        client, transaction_id, {"transaction_appended", "transaction_succeeded"}
    )
    assert names(steps, "Commands") == ["Created"]
    assert names(steps, "Sagas") == ["Created", "Succeeded"]
    assert names(steps, "Accounts") == ["TransactionAppended"]
    assert (
        first_index(steps, "Commands")
        < first_index(steps, "Sagas")
        < first_index(steps, "Accounts")
    )
    command = steps[0]
    assert command["aggregate"] == "DepositFundsCommand"
    assert command["originator_id"] == transaction_id
    assert command["originator_version"] == 1
    assert command["data"]["amount"] == "10.00"
    appended = next(s for s in steps if s["type"] == "TransactionAppended")
    assert appended["aggregate"] == "BankAccount"
    assert appended["originator_id"] == account_id
    assert appended["data"]["transaction_id"] == transaction_id
    assert appended["data"]["amount"] == "10.00"
    feed = [s for s in steps if s["application"] == "Interface"]
    assert all(s["originator_id"] == transaction_id for s in feed)
    assert all(s["originator_version"] is None for s in feed)


def test_positions_are_the_events_notification_ids(client: TestClient) -> None:
    account_id = open_account(client, "Alice")
    transaction_id = deposit(client, account_id, "10.00")["transaction_id"]
    steps = settled(client, transaction_id, {"transaction_succeeded"})
    bank: Any = client.app.state.bank  # type: ignore[attr-defined]
    apps = bank.applications()
    for step in steps:
        if step["application"] == "Interface":
            feed = apps["Interface"].view.select_feed(step["position"] - 1, limit=1)
            assert feed[0].position == step["position"]
            assert feed[0].type == step["type"]
            continue
        app = apps[step["application"]]
        originator_id: UUID = app.mapper.to_domain_event(
            app.recorder.select_notifications(step["position"], 1)[0]
        ).originator_id
        assert str(originator_id) == step["originator_id"]
        ids = notification_ids(app.recorder, [originator_id])[originator_id]
        assert ids[step["originator_version"]] == step["position"]


def test_a_transfer_debits_then_credits(client: TestClient) -> None:
    alice = open_account(client, "Alice")
    bob = open_account(client, "Bob")
    deposit(client, alice, "50.00")
    transaction_id = post(
        client,
        "/api/transfers",
        {"debit_account_id": alice, "credit_account_id": bob, "amount": "20.00"},
    )["transaction_id"]
    steps = settled(client, transaction_id, {"transaction_succeeded"})
    assert names(steps, "Commands") == ["Created"]
    assert names(steps, "Sagas") == ["Created", "DebitRecorded", "Succeeded"]
    appended = [s for s in steps if s["type"] == "TransactionAppended"]
    assert [s["originator_id"] for s in appended] == [alice, bob]
    assert [s["data"]["amount"] for s in appended] == ["-20.00", "20.00"]
    # The pipes: the saga asks, Accounts debits, the saga records it, Accounts credits.
    order = [
        (s["application"], s["type"]) for s in steps if s["application"] != "Interface"
    ]
    assert order == [
        ("Commands", "Created"),
        ("Sagas", "Created"),
        ("Accounts", "TransactionAppended"),
        ("Sagas", "DebitRecorded"),
        ("Accounts", "TransactionAppended"),
        ("Sagas", "Succeeded"),
    ]
    assert {"transaction_appended", "transaction_succeeded"} <= set(
        names(steps, "Interface")
    )


def test_a_withdrawal_without_funds_fails_in_accounts_and_the_saga(
    client: TestClient,
) -> None:
    account_id = open_account(client, "Alice")
    answer = post(client, f"/api/accounts/{account_id}/withdrawals", {"amount": "5.00"})
    assert answer["status"] == "failed"
    steps = settled(client, answer["transaction_id"], {"transaction_failed"})
    assert names(steps, "Sagas") == ["Created", "Errored"]
    assert names(steps, "Accounts") == ["ErrorRecorded"]
    recorded = next(s for s in steps if s["type"] == "ErrorRecorded")
    assert recorded["data"]["error"]["type"] == "InsufficientFundsError"
    errored = next(s for s in steps if s["type"] == "Errored")
    assert errored["aggregate"] == "WithdrawFundsSaga"
    assert "error_recorded" in names(steps, "Interface")


def test_a_transfer_to_a_closed_account_is_refunded(client: TestClient) -> None:
    alice = open_account(client, "Alice")
    closed = open_account(client, "Closed")
    assert client.post(f"/api/accounts/{closed}/close", json={}).status_code == 200
    deposit(client, alice, "50.00")
    transaction_id = post(
        client,
        "/api/transfers",
        {"debit_account_id": alice, "credit_account_id": closed, "amount": "20.00"},
    )["transaction_id"]
    steps = settled(client, transaction_id, {"transaction_failed"})
    refund_id = str(RefundFundsSaga.create_id(UUID(transaction_id)))
    transfer = [
        s["type"]
        for s in steps
        if s["application"] == "Sagas" and s["originator_id"] == transaction_id
    ]
    assert transfer == ["Created", "DebitRecorded", "RefundRequested", "Errored"]
    refund = [s for s in steps if s["originator_id"] == refund_id]
    assert names(refund, "Sagas") == ["Created", "Succeeded"]
    assert names(refund, "Interface") == ["transaction_appended"]  # the payer's line
    assert refund[0]["aggregate"] == "RefundFundsSaga"
    accounts = [
        (s["originator_id"], s["type"], s["data"]["transaction_id"])
        for s in steps
        if s["application"] == "Accounts"
    ]
    assert accounts == [
        (alice, "TransactionAppended", transaction_id),
        (closed, "ErrorRecorded", transaction_id),
        (alice, "TransactionAppended", refund_id),
    ]
    credit_error = next(s for s in steps if s["type"] == "ErrorRecorded")
    assert credit_error["data"]["error"]["type"] == "AccountClosedError"
    refunded = [s for s in steps if s["application"] == "Accounts"][-1]
    assert refunded["data"]["is_refund"] is True
    # The refund saga starts after the credit failed, and pays the debit back.
    index = {
        (s["application"], s["type"], s["originator_id"]): i
        for i, s in enumerate(steps)
    }
    assert (
        index[("Accounts", "ErrorRecorded", closed)]
        < index[("Sagas", "Created", refund_id)]
        < index[("Sagas", "Succeeded", refund_id)]
    )


def test_a_customer_sees_only_their_own_transactions(client: TestClient) -> None:
    alice = sign_up(client, "alice")
    bob = sign_up(client, "bob")
    alices = open_account(client, "Alice's", headers=alice.headers)
    bobs = open_account(client, "Bob's", headers=bob.headers)
    paid = deposit(client, alices, "30.00", headers=alice.headers)["transaction_id"]
    response = client.post(
        "/api/transfers?wait=true",
        json={"debit_account_id": alices, "credit_account_id": bobs, "amount": "5.00"},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    transfer = response.json()["transaction_id"]
    assert timeline(client, paid, headers=alice.headers)
    path = f"/api/transactions/{paid}/timeline"
    assert client.get(path, headers=bob.headers).status_code == 404
    # The payee sees the transfer, but not the payer's balance in the feed.
    wait_for(
        lambda: (
            "transaction_succeeded" in names(timeline(client, transfer), "Interface")
        )
    )
    steps = timeline(client, transfer, headers=bob.headers)
    assert names(steps, "Sagas") == ["Created", "DebitRecorded", "Succeeded"]
    for step in steps:
        account = step["data"].get("account")
        if step["application"] == "Interface" and account is not None:
            assert account["id"] == bobs
    # Staff see everything; nobody sees a transaction that does not exist.
    assert timeline(client, paid)
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/api/transactions/{missing}/timeline").status_code == 404
    assert client.get("/api/transactions/nonsense/timeline").status_code == 422


@pytest.fixture
def sqlite_client(sqlite_env: dict[str, str]) -> Iterator[TestClient]:
    yield from bank_client(sqlite_env)


def test_a_rebuilt_read_model_indexes_the_transactions_again(
    sqlite_client: TestClient,
) -> None:
    from bankaccounts.rebuild import rebuild

    client = sqlite_client
    alice = open_account(client, "Alice")
    bob = open_account(client, "Bob")
    deposit(client, alice, "50.00")
    transaction_id = post(
        client,
        "/api/transfers",
        {"debit_account_id": alice, "credit_account_id": bob, "amount": "20.00"},
    )["transaction_id"]
    before = settled(client, transaction_id, {"transaction_succeeded"})
    bank: Any = client.app.state.bank  # type: ignore[attr-defined]
    bank.catch_up.stop()  # the rebuild alone follows the upstreams meanwhile
    rebuild(bank.interface, [bank.accounts, bank.sagas])
    bank.catch_up.start()
    after = settled(client, transaction_id, {"transaction_succeeded"})

    def events(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [s for s in steps if s["application"] != "Interface"]

    assert events(after) == events(before)
    # Accounts first, then Sagas: the same messages, in another order.
    assert sorted(names(after, "Interface")) == sorted(names(before, "Interface"))

"""A client's Idempotency-Key never reaches a derived id (issue 9, finding 1).

The reproduction of the issue, request for request: a refund's id was
uuid5(NAMESPACE_URL, "/refunds/<transfer id>") and a key was used as a command id
directly, so a deposit keyed with a refund's id wedged every later transaction, or
took the refund's place and lost the transfer's debit. Here the key takes every id
the system has derived for the transfer, under the old scheme and the new.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from bankaccounts.system.sagas import RefundFundsSaga
from tests.webclient import bank_client, deposit, open_account

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient


@pytest.fixture
def client(persistence_env: dict[str, str]) -> Iterator[TestClient]:
    yield from bank_client(persistence_env)


def post(client: TestClient, path: str, body: dict[str, Any], key: str) -> Any:
    response = client.post(
        f"{path}?wait=true", json=body, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 200, response.text
    return response.json()


def refund_keys(transfer_key: str, transfer_id: str) -> list[str]:
    """Every id a refund of this transfer had or has, as a client could send it."""
    return [
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"/refunds/{transfer_key}")),
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"/refunds/{transfer_id}")),
        str(RefundFundsSaga.create_id(uuid.UUID(transfer_id))),
    ]


@pytest.mark.parametrize("order", ["transfer first", "deposit first"])
def test_a_key_naming_a_refund_neither_wedges_the_bank_nor_loses_money(
    client: TestClient, order: str
) -> None:
    alice = open_account(client, "A")
    carol = open_account(client, "C")
    deposit(client, alice, "100.00")
    closed = client.post(f"/api/accounts/{carol}/close", json={})
    assert closed.status_code == 200, closed.text
    transfer = {"debit_account_id": alice, "credit_account_id": carol, "amount": "10"}
    key = str(uuid.uuid4())
    # The client is signed in: its key is scoped by its user's id.
    me = uuid.UUID(client.get("/api/me").json()["id"])
    commands = client.app.state.bank.commands  # type: ignore[attr-defined]
    transfer_id = commands.command_id_for(key, me)
    deposit_keys = refund_keys(key, str(transfer_id))
    answers = []
    if order == "deposit first":
        for deposit_key in deposit_keys:
            path = f"/api/accounts/{alice}/deposits"
            answers.append(post(client, path, {"amount": "1.00"}, deposit_key))
    failed = post(client, "/api/transfers", transfer, key)
    assert failed["transaction_id"] == str(transfer_id)
    assert failed["status"] == "failed"
    assert failed["error"] == "C's account is closed"
    if order == "transfer first":
        for deposit_key in deposit_keys:
            path = f"/api/accounts/{alice}/deposits"
            answers.append(post(client, path, {"amount": "1.00"}, deposit_key))
    assert [a["status"] for a in answers] == ["succeeded"] * 3
    # Anyone's later transaction still flows, and no money vanished.
    assert deposit(client, alice, "2.00")["status"] == "succeeded"
    assert client.get(f"/api/accounts/{alice}").json()["balance"] == "105.00"
    assert client.get(f"/api/accounts/{carol}").json()["balance"] == "0.00"

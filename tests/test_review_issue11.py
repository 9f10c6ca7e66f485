"""Issue 11's review: what an attacker tried against the look-inside endpoints.

A transfer's journey, seen by the customer at one end of it, shows the other
customer's account only as far as their feed and statement do: the debit or
credit on it, not how many events that account has (its version).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import POPO_ENV
from tests.waiting import wait_for
from tests.webclient import bank_client, deposit, open_account, sign_up

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from fastapi.testclient import TestClient


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from bank_client(dict(POPO_ENV))


def account_steps(
    client: TestClient, transaction_id: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The Accounts lane's BankAccount steps by account id (one each here)."""
    response = client.get(
        f"/api/transactions/{transaction_id}/timeline", headers=headers
    )
    assert response.status_code == 200, response.text
    return {
        step["originator_id"]: step
        for step in response.json()["steps"]
        if step["application"] == "Accounts" and step["aggregate"] == "BankAccount"
    }


def test_a_transfers_journey_hides_the_other_customers_account_version(
    client: TestClient,
) -> None:
    alice = sign_up(client, "alice")
    bob = sign_up(client, "bob")
    alices = open_account(client, "Alice's", headers=alice.headers)
    bobs = open_account(client, "Bob's", headers=bob.headers)
    for _ in range(3):  # Alice's account has a history of its own
        deposit(client, alices, "10.00", headers=alice.headers)
    response = client.post(
        "/api/transfers?wait=true",
        json={"debit_account_id": alices, "credit_account_id": bobs, "amount": "5.00"},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    transfer = response.json()["transaction_id"]
    wait_for(lambda: len(account_steps(client, transfer)) == 2)

    # Staff see every account's version.
    staffs = account_steps(client, transfer)
    assert staffs[alices]["originator_version"] == 5
    assert staffs[bobs]["originator_version"] == 2
    # Each customer sees their own account's version, and the other's event
    # (the money moved) without it: how busy that account is is not theirs.
    bobs_view = account_steps(client, transfer, bob.headers)
    assert bobs_view[bobs]["originator_version"] == 2
    assert bobs_view[alices]["originator_version"] is None
    assert bobs_view[alices]["data"]["amount"] == "-5.00"
    alices_view = account_steps(client, transfer, alice.headers)
    assert alices_view[alices]["originator_version"] == 5
    assert alices_view[bobs]["originator_version"] is None

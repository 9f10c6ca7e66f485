"""A balance is bounded in the domain, so every read-model column can hold it.

Before the bound, 100 deposits of the largest amount took a balance past what
PostgreSQL's numeric(16,2) column holds, and the interface stopped on every later
event. Now a deposit past the bound ends as a failed transaction with words.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.system import SingleThreadedRunner

from bankaccounts.domainmodel import MAX_BALANCE
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.validation import MAX_AMOUNT
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from uuid import UUID


@pytest.fixture
def runner(persistence_env: dict[str, str]) -> Iterator[SingleThreadedRunner[Any]]:
    runner: SingleThreadedRunner[Any] = SingleThreadedRunner(
        BankAccountSystem(), env=persistence_env
    )
    runner.start()
    yield runner
    runner.stop()


def test_deposits_past_the_bound_fail_in_words_and_the_view_flows_on(
    runner: SingleThreadedRunner[Any],
) -> None:
    commands, accounts = runner.get(Commands), runner.get(Accounts)
    view = runner.get(InterfaceApplication).view
    full = accounts.create_account("Full")
    other = accounts.create_account("Other")
    commands.deposit_funds(other, "5.00")

    deposits = [commands.deposit_funds(full, MAX_AMOUNT) for _ in range(100)]
    transfer = commands.transfer_funds(other, full, "1.00")

    def status(transaction_id: UUID) -> str | None:
        transaction = view.get_transaction(transaction_id)
        return None if transaction is None else transaction.status

    wait_for(lambda: status(transfer) in {"succeeded", "failed"}, timeout=30)
    statuses = [status(transaction_id) for transaction_id in deposits]
    fitting = int(MAX_BALANCE / MAX_AMOUNT)
    assert statuses == ["succeeded"] * fitting + ["failed"] * (100 - fitting)
    refused = view.get_transaction(deposits[-1])
    assert refused is not None
    assert refused.error == (
        f"Full's account would hold more than {MAX_BALANCE:,}, "
        "the most an account may hold"
    )
    assert status(transfer) == "failed"  # the credit is refused, the debit refunded
    assert accounts.get_balance(full) == MAX_BALANCE
    wait_for(lambda: accounts.get_balance(other) == Decimal("5.00"))

    # The read model holds the balance and goes on with later events.
    later = accounts.create_account("Later")
    wait_for(lambda: view.get_account(later) is not None)
    full_view = view.get_account(full)
    assert full_view is not None
    assert full_view.balance == MAX_BALANCE
    wait_for(lambda: getattr(view.get_account(other), "balance", None) == 5)

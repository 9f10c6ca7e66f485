"""The simple application: every action, transfers included, is one atomic write."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest

from bankaccounts.domainmodel import MAX_BALANCE
from bankaccounts.exceptions import (
    AccountClosedError,
    AccountNotFoundError,
    BalanceLimitError,
    InsufficientFundsError,
    InvalidAccountIdError,
    InvalidAccountNameError,
    InvalidAmountError,
    InvalidTransferError,
)
from bankaccounts.simpleapplication import SimpleBankAccountApplication
from bankaccounts.validation import MAX_AMOUNT

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

BAD_AMOUNTS: list[object] = [
    1.5,
    float("nan"),
    "NaN",
    "Infinity",
    "-Infinity",
    Decimal("Infinity"),
    -1,
    "-0.01",
    0,
    "0.00",
    "1000000000000.01",
    "0.001",
    "ten",
    "",
    True,
    None,
]


@pytest.fixture
def app(persistence_env: dict[str, str]) -> Iterator[SimpleBankAccountApplication]:
    app = SimpleBankAccountApplication(env=persistence_env)
    yield app
    app.close()


def test_walk_through(app: SimpleBankAccountApplication) -> None:
    # Create an account.
    account_id1 = app.create_account()
    assert isinstance(account_id1, UUID)
    assert app.get_balance(account_id1) == Decimal("0.00")

    # Deposit funds.
    app.deposit_funds(account_id1, Decimal("200.00"))
    assert app.get_balance(account_id1) == Decimal("200.00")

    # Withdraw funds.
    app.withdraw_funds(account_id1, Decimal("50.00"))
    assert app.get_balance(account_id1) == Decimal("150.00")

    # Fail to withdraw funds: insufficient funds.
    with pytest.raises(InsufficientFundsError) as error:
        app.withdraw_funds(account_id1, Decimal("151.00"))
    assert error.value == InsufficientFundsError(account_id1)
    assert app.get_balance(account_id1) == Decimal("150.00")

    # Transfer funds.
    account_id2 = app.create_account()
    app.transfer_funds(account_id1, account_id2, Decimal("100.00"))
    assert app.get_balance(account_id1) == Decimal("50.00")
    assert app.get_balance(account_id2) == Decimal("100.00")

    # Fail to transfer funds: insufficient funds, and neither account changes.
    with pytest.raises(InsufficientFundsError):
        app.transfer_funds(account_id1, account_id2, Decimal("1000.00"))
    assert app.get_balance(account_id1) == Decimal("50.00")
    assert app.get_balance(account_id2) == Decimal("100.00")

    # Close an account.
    app.close_account(account_id1)
    assert app.get_account(account_id1).is_closed

    # Fail to transfer funds: the debit account is closed.
    with pytest.raises(AccountClosedError) as closed:
        app.transfer_funds(account_id1, account_id2, Decimal("50.00"))
    assert closed.value == AccountClosedError(account_id1)

    # Fail to transfer funds: the credit account is closed.
    with pytest.raises(AccountClosedError):
        app.transfer_funds(account_id2, account_id1, Decimal("50.00"))

    # Fail to withdraw from or deposit into a closed account.
    with pytest.raises(AccountClosedError):
        app.withdraw_funds(account_id1, Decimal("1.00"))
    with pytest.raises(AccountClosedError):
        app.deposit_funds(account_id1, Decimal("1000.00"))
    assert app.get_balance(account_id1) == Decimal("50.00")
    assert app.get_balance(account_id2) == Decimal("100.00")

    # Fail to set the overdraft limit of a closed account.
    with pytest.raises(AccountClosedError):
        app.set_overdraft_limit(account_id1, Decimal("500.00"))

    # Set the overdraft limit.
    app.set_overdraft_limit(account_id2, Decimal("500.00"))
    assert app.get_overdraft_limit(account_id2) == Decimal("500.00")

    # Withdraw into the overdraft, but not beyond it.
    app.withdraw_funds(account_id2, Decimal("500.00"))
    assert app.get_balance(account_id2) == Decimal("-400.00")
    with pytest.raises(InsufficientFundsError):
        app.withdraw_funds(account_id2, Decimal("101.00"))
    app.withdraw_funds(account_id2, Decimal("100.00"))
    assert app.get_balance(account_id2) == Decimal("-500.00")

    # Fail to set a negative overdraft limit.
    with pytest.raises(InvalidAmountError):
        app.set_overdraft_limit(account_id2, Decimal("-1.00"))
    assert app.get_overdraft_limit(account_id2) == Decimal("500.00")


def test_no_balance_passes_the_most_an_account_may_hold(
    app: SimpleBankAccountApplication,
) -> None:
    """A clear domain error and nothing recorded: no deposit or transfer passes it."""
    full, other = app.create_account("Full"), app.create_account("Other")
    for _ in range(int(MAX_BALANCE / MAX_AMOUNT)):
        app.deposit_funds(full, MAX_AMOUNT)
    app.deposit_funds(other, "1.00")
    assert app.get_balance(full) == MAX_BALANCE
    before = app.recorder.max_notification_id()

    with pytest.raises(BalanceLimitError) as error:
        app.deposit_funds(full, "0.01")
    assert error.value == BalanceLimitError(full)
    assert f"would hold more than {MAX_BALANCE:,}" in str(error.value)
    with pytest.raises(BalanceLimitError):
        app.transfer_funds(other, full, "1.00")

    assert app.recorder.max_notification_id() == before
    assert app.get_balance(full) == MAX_BALANCE
    assert app.get_balance(other) == Decimal("1.00")
    app.transfer_funds(full, other, "1.00")  # money may still leave it
    assert app.get_balance(full) == MAX_BALANCE - 1


def test_names_and_string_ids(app: SimpleBankAccountApplication) -> None:
    account_id = app.create_account(name="  Alice   Smith ")
    assert app.get_account(account_id).name == "Alice Smith"
    assert app.get_account(str(account_id)).id == account_id
    assert app.get_account(app.create_account()).name is None
    app.deposit_funds(str(account_id), "12.5")
    assert str(app.get_balance(account_id)) == "12.50"


def test_closing_twice_is_harmless(app: SimpleBankAccountApplication) -> None:
    account_id = app.create_account()
    app.close_account(account_id)
    before = app.recorder.max_notification_id()
    app.close_account(account_id)
    assert app.get_account(account_id).is_closed
    assert app.recorder.max_notification_id() == before


def test_a_transfer_is_one_write(app: SimpleBankAccountApplication) -> None:
    account_id1 = app.create_account()
    account_id2 = app.create_account()
    app.deposit_funds(account_id1, "10")
    before = app.recorder.max_notification_id() or 0
    app.transfer_funds(account_id1, account_id2, "10")
    notifications = app.notification_log.select(start=before + 1, limit=10)
    assert [n.originator_id for n in notifications] == [account_id1, account_id2]
    assert app.get_balance(account_id1) == 0
    assert app.get_balance(account_id2) == Decimal("10.00")


@pytest.mark.parametrize(
    "action",
    [
        "get_account",
        "get_balance",
        "get_overdraft_limit",
        "close_account",
        "deposit",
        "withdraw",
        "set_overdraft_limit",
        "transfer_from",
        "transfer_to",
    ],
)
def test_unknown_ids(app: SimpleBankAccountApplication, action: str) -> None:
    known = app.create_account()
    app.deposit_funds(known, "10")
    unknown = uuid4()
    actions: dict[str, Callable[[], object]] = {
        "get_account": lambda: app.get_account(unknown),
        "get_balance": lambda: app.get_balance(unknown),
        "get_overdraft_limit": lambda: app.get_overdraft_limit(unknown),
        "close_account": lambda: app.close_account(unknown),
        "deposit": lambda: app.deposit_funds(unknown, "1"),
        "withdraw": lambda: app.withdraw_funds(unknown, "1"),
        "set_overdraft_limit": lambda: app.set_overdraft_limit(unknown, "1"),
        "transfer_from": lambda: app.transfer_funds(unknown, known, "1"),
        "transfer_to": lambda: app.transfer_funds(known, unknown, "1"),
    }
    before = app.recorder.max_notification_id()
    with pytest.raises(AccountNotFoundError) as error:
        actions[action]()
    assert error.value == AccountNotFoundError(unknown)
    assert isinstance(error.value, LookupError)
    assert app.recorder.max_notification_id() == before
    assert app.get_balance(known) == Decimal("10.00")


class TestBadInputRecordsNothing:
    """Every kind of bad input raises the named error before anything is recorded."""

    @pytest.fixture
    def accounts(
        self, app: SimpleBankAccountApplication
    ) -> Iterator[tuple[UUID, UUID]]:
        account_id1 = app.create_account()
        account_id2 = app.create_account()
        app.deposit_funds(account_id1, "100")
        before = app.recorder.max_notification_id()
        yield account_id1, account_id2
        assert app.recorder.max_notification_id() == before
        assert app.get_balance(account_id1) == Decimal("100.00")
        assert app.get_balance(account_id2) == Decimal("0.00")
        assert app.get_overdraft_limit(account_id1) == Decimal("0.00")

    @pytest.mark.parametrize("amount", BAD_AMOUNTS)
    def test_bad_amounts(
        self,
        app: SimpleBankAccountApplication,
        accounts: tuple[UUID, UUID],
        amount: object,
    ) -> None:
        account_id1, account_id2 = accounts
        with pytest.raises(InvalidAmountError):
            app.deposit_funds(account_id1, amount)
        with pytest.raises(InvalidAmountError):
            app.withdraw_funds(account_id1, amount)
        with pytest.raises(InvalidAmountError):
            app.transfer_funds(account_id1, account_id2, amount)

    @pytest.mark.parametrize(
        "limit", [-1, "-0.01", 1.5, "NaN", "Infinity", "0.001", "x", None, True]
    )
    def test_bad_overdraft_limits(
        self,
        app: SimpleBankAccountApplication,
        accounts: tuple[UUID, UUID],
        limit: object,
    ) -> None:
        with pytest.raises(InvalidAmountError):
            app.set_overdraft_limit(accounts[0], limit)

    def test_bad_amount_to_an_unknown_account(
        self, app: SimpleBankAccountApplication, accounts: tuple[UUID, UUID]
    ) -> None:
        # The amount is checked first, so the client learns what it can fix.
        with pytest.raises(InvalidAmountError):
            app.deposit_funds(uuid4(), "-1")

    def test_transfer_to_the_same_account(
        self, app: SimpleBankAccountApplication, accounts: tuple[UUID, UUID]
    ) -> None:
        account_id1, _ = accounts
        with pytest.raises(InvalidTransferError) as error:
            app.transfer_funds(account_id1, account_id1, "1")
        assert isinstance(error.value, InvalidAmountError)
        with pytest.raises(InvalidTransferError):
            app.transfer_funds(account_id1, str(account_id1), "1")

    @pytest.mark.parametrize("bad_id", [None, "", "not-a-uuid", 123, 1.5])
    def test_bad_account_ids(
        self,
        app: SimpleBankAccountApplication,
        accounts: tuple[UUID, UUID],
        bad_id: object,
    ) -> None:
        account_id1, _ = accounts
        with pytest.raises(InvalidAccountIdError):
            app.get_account(bad_id)
        with pytest.raises(InvalidAccountIdError):
            app.deposit_funds(bad_id, "1")
        with pytest.raises(InvalidAccountIdError):
            app.withdraw_funds(bad_id, "1")
        with pytest.raises(InvalidAccountIdError):
            app.transfer_funds(bad_id, account_id1, "1")
        with pytest.raises(InvalidAccountIdError):
            app.transfer_funds(account_id1, bad_id, "1")
        with pytest.raises(InvalidAccountIdError):
            app.set_overdraft_limit(bad_id, "1")
        with pytest.raises(InvalidAccountIdError):
            app.close_account(bad_id)

    @pytest.mark.parametrize("name", [123, b"Alice", "x" * 101, "tab\x00null"])
    def test_bad_names(
        self,
        app: SimpleBankAccountApplication,
        accounts: tuple[UUID, UUID],
        name: object,
    ) -> None:
        with pytest.raises(InvalidAccountNameError):
            app.create_account(name)

    def test_rule_violations(
        self, app: SimpleBankAccountApplication, accounts: tuple[UUID, UUID]
    ) -> None:
        account_id1, account_id2 = accounts
        with pytest.raises(InsufficientFundsError):
            app.withdraw_funds(account_id1, "100.01")
        with pytest.raises(InsufficientFundsError):
            app.transfer_funds(account_id1, account_id2, "100.01")
        with pytest.raises(InsufficientFundsError):
            app.transfer_funds(account_id2, account_id1, "0.01")


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_two_applications_writing_the_same_accounts_lose_nothing(
    store: str, request: pytest.FixtureRequest
) -> None:
    """Each caches the accounts; a save on a stale one is refused, then retried."""
    env: dict[str, str] = request.getfixturevalue(f"{store}_env")
    first = SimpleBankAccountApplication(env)
    second = SimpleBankAccountApplication(env)
    try:
        alice = first.create_account("Alice")
        bob = first.create_account("Bob")
        first.deposit_funds(alice, "100.00")
        for _ in range(5):
            second.transfer_funds(alice, bob, "1.00")  # second caches both accounts
            first.transfer_funds(alice, bob, "2.00")  # first's cache is now stale
            second.deposit_funds(bob, "0.50")
            first.withdraw_funds(bob, "0.25")
        second.set_overdraft_limit(alice, "10.00")
        first.close_account(bob)
        with pytest.raises(AccountClosedError):
            second.deposit_funds(bob, "1.00")

        for app in (first, second):
            assert app.get_balance(alice) == Decimal("85.00")
            assert app.get_balance(bob) == Decimal("16.25")
        fresh = SimpleBankAccountApplication(env)
        try:
            assert fresh.get_balance(alice) == Decimal("85.00")
            assert fresh.get_overdraft_limit(alice) == Decimal("10.00")
            assert fresh.get_account(bob).is_closed
        finally:
            fresh.close()
    finally:
        first.close()
        second.close()


def test_only_a_refused_write_of_the_same_application_is_retried() -> None:
    from bankaccounts.accountapplication import CONFLICT_ATTEMPTS, retry_on_conflict
    from bankaccounts.infrastructure import VersionConflictError

    app = SimpleBankAccountApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    attempts: list[str] = []

    def refused(name: str) -> None:
        attempts.append(name)
        raise VersionConflictError(name, RuntimeError("version taken"))

    with pytest.raises(VersionConflictError):
        retry_on_conflict(app, lambda: refused("Sagas"))  # a follower's, after commit
    assert attempts == ["Sagas"]
    attempts.clear()
    with pytest.raises(VersionConflictError):
        retry_on_conflict(app, lambda: refused(app.name))
    assert attempts == [app.name] * CONFLICT_ATTEMPTS

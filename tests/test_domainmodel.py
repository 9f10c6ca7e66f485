"""The domain model: the bank account's rules, its errors, and their storage."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import project_aggregate

from bankaccounts.domainmodel import MAX_BALANCE, BankAccount, RejectedTransaction
from bankaccounts.exceptions import (
    AccountClosedError,
    AccountNotFoundError,
    BalanceLimitError,
    InsufficientFundsError,
    InvalidAmountError,
    ProcessingError,
    TransactionError,
)
from bankaccounts.infrastructure import TRANSACTION_ERROR_TYPES
from bankaccounts.simpleapplication import SimpleBankAccountApplication
from bankaccounts.validation import MAX_AMOUNT

if TYPE_CHECKING:
    from collections.abc import Iterator

TRANSACTION_ERRORS = [
    TransactionError,
    AccountClosedError,
    InsufficientFundsError,
    AccountNotFoundError,
    ProcessingError,
    BalanceLimitError,
]


def event_names(account: BankAccount) -> list[str]:
    return [type(e).__name__ for e in account.collect_events()]


def opened_account(**kwargs: str | None) -> BankAccount:
    account = BankAccount(**kwargs)
    account.collect_events()
    return account


def credit_up_to(account: BankAccount, balance: Decimal) -> None:
    """Credits the account, in amounts of at most MAX_AMOUNT, up to the balance."""
    while account.balance < balance:
        account.append_transaction(min(MAX_AMOUNT, balance - account.balance))


class TestBankAccount:
    def test_opens_with_nothing(self) -> None:
        account = BankAccount()
        assert account.balance == Decimal("0.00")
        assert str(account.balance) == "0.00"
        assert account.overdraft_limit == Decimal("0.00")
        assert str(account.overdraft_limit) == "0.00"
        assert account.is_closed is False
        assert account.name is None
        assert account.opened_at == account.created_on
        assert event_names(account) == ["Created"]

    def test_opens_with_a_name(self) -> None:
        assert BankAccount(name="Alice").name == "Alice"

    def test_credits_and_debits_change_the_balance(self) -> None:
        account = opened_account()
        transaction_id = uuid4()
        account.append_transaction(Decimal("10.00"), transaction_id)
        account.append_transaction(Decimal("-2.50"))
        assert account.balance == Decimal("7.50")
        events: list[Any] = list(account.collect_events())
        assert [type(e).__name__ for e in events] == [
            "TransactionAppended",
            "TransactionAppended",
        ]
        assert events[0].amount == Decimal("10.00")
        assert events[0].transaction_id == transaction_id
        assert events[1].transaction_id is None

    def test_amounts_are_normalised(self) -> None:
        account = opened_account()
        account.append_transaction("5")
        account.append_transaction(3)
        assert account.balance == Decimal("8.00")
        assert str(account.balance) == "8.00"

    @pytest.mark.parametrize(
        "amount", [1.5, float("nan"), "NaN", "Infinity", "0.001", None, True, "x"]
    )
    def test_bad_amounts_raise_and_record_nothing(self, amount: object) -> None:
        account = opened_account()
        with pytest.raises(InvalidAmountError):
            account.append_transaction(amount)
        assert account.balance == 0
        assert event_names(account) == []

    def test_a_closed_account_takes_no_transactions(self) -> None:
        account = opened_account()
        account.append_transaction(Decimal("10.00"))
        account.close()
        account.collect_events()
        with pytest.raises(AccountClosedError) as credit:
            account.append_transaction(Decimal("1.00"))
        with pytest.raises(AccountClosedError):
            account.append_transaction(Decimal("-1.00"))
        assert credit.value.account_id == account.id
        assert account.balance == Decimal("10.00")
        assert event_names(account) == []

    def test_insufficient_funds(self) -> None:
        account = opened_account()
        account.append_transaction(Decimal("10.00"))
        with pytest.raises(InsufficientFundsError) as error:
            account.append_transaction(Decimal("-10.01"))
        assert error.value == InsufficientFundsError(account.id)
        assert account.balance == Decimal("10.00")
        account.append_transaction(Decimal("-10.00"))
        assert account.balance == Decimal("0.00")
        with pytest.raises(InsufficientFundsError):
            account.append_transaction(Decimal("-0.01"))

    def test_a_credit_may_not_take_the_balance_past_the_most(self) -> None:
        account = opened_account()
        credit_up_to(account, MAX_BALANCE - Decimal("1.00"))
        account.append_transaction(Decimal("1.00"))
        assert account.balance == MAX_BALANCE
        account.collect_events()
        with pytest.raises(BalanceLimitError) as error:
            account.append_transaction(Decimal("0.01"), uuid4())
        assert error.value == BalanceLimitError(account.id)
        assert account.balance == MAX_BALANCE
        assert event_names(account) == []
        account.append_transaction(Decimal("-0.01"))  # a debit is fine
        with pytest.raises(BalanceLimitError):
            account.append_transaction(Decimal("0.02"))
        account.append_transaction(Decimal("0.01"))
        assert account.balance == MAX_BALANCE

    def test_a_refund_is_never_refused_by_the_bound(self) -> None:
        """It returns money that left the account; refusing it would lose money."""
        account = opened_account()
        credit_up_to(account, MAX_BALANCE)
        account.append_transaction(Decimal("5.00"), uuid4(), is_refund=True)
        assert account.balance == MAX_BALANCE + Decimal("5.00")

    def test_the_bound_fits_every_read_model_column(self) -> None:
        """PostgreSQL's numeric(16,2) holds less than 10**14; refunds need room."""
        assert Decimal("99999999999999.99") > MAX_BALANCE * 9
        assert MAX_BALANCE.quantize(Decimal("0.01")) == MAX_BALANCE
        assert MAX_AMOUNT <= MAX_BALANCE

    def test_the_overdraft_limit_lets_the_balance_go_below_zero(self) -> None:
        account = opened_account()
        account.set_overdraft_limit(Decimal("100"))
        assert account.overdraft_limit == Decimal("100.00")
        assert str(account.overdraft_limit) == "100.00"
        account.append_transaction(Decimal("-60.00"))
        account.append_transaction(Decimal("-40.00"))
        assert account.balance == Decimal("-100.00")
        with pytest.raises(InsufficientFundsError):
            account.append_transaction(Decimal("-0.01"))
        # Credits are always welcome, even below the limit.
        account.set_overdraft_limit(Decimal("0"))
        account.append_transaction(Decimal("0.01"))
        assert account.balance == Decimal("-99.99")
        assert event_names(account) == [
            "OverdraftLimitSet",
            "TransactionAppended",
            "TransactionAppended",
            "OverdraftLimitSet",
            "TransactionAppended",
        ]

    @pytest.mark.parametrize("limit", ["-0.01", -1, "-100", 1.5, "NaN", None])
    def test_bad_overdraft_limits_raise(self, limit: object) -> None:
        account = opened_account()
        with pytest.raises(InvalidAmountError):
            account.set_overdraft_limit(limit)
        assert account.overdraft_limit == 0
        assert event_names(account) == []

    def test_no_overdraft_limit_on_a_closed_account(self) -> None:
        account = opened_account()
        account.close()
        account.collect_events()
        with pytest.raises(AccountClosedError):
            account.set_overdraft_limit(Decimal("10"))
        assert account.overdraft_limit == 0
        assert event_names(account) == []

    def test_closing_twice_is_harmless(self) -> None:
        account = opened_account()
        account.close()
        account.close()
        assert account.is_closed is True
        assert event_names(account) == ["Closed"]

    def test_a_refund_is_accepted_by_a_closed_account(self) -> None:
        account = opened_account()
        account.append_transaction(Decimal("10.00"))
        account.append_transaction(Decimal("-4.00"))
        account.close()
        account.collect_events()
        account.append_transaction(Decimal("4.00"), uuid4(), is_refund=True)
        assert account.balance == Decimal("10.00")
        assert event_names(account) == ["TransactionAppended"]

    def test_recording_an_error_changes_nothing_but_the_history(self) -> None:
        account = opened_account()
        transaction_id = uuid4()
        error = InsufficientFundsError(account.id)
        account.record_error(error, transaction_id)
        assert account.balance == 0
        assert account.is_closed is False
        (recorded,) = account.collect_events()
        assert type(recorded).__name__ == "ErrorRecorded"
        assert recorded.error == error
        assert recorded.transaction_id == transaction_id


class TestErrors:
    @pytest.mark.parametrize("error_type", TRANSACTION_ERRORS)
    def test_equal_by_type_and_account(
        self, error_type: type[TransactionError]
    ) -> None:
        account_id = uuid4()
        error = error_type(account_id)
        assert error.account_id == account_id
        assert error == error_type(account_id)
        assert hash(error) == hash(error_type(account_id))
        assert error != error_type(uuid4())
        assert error != account_id
        for other_type in TRANSACTION_ERRORS:
            if other_type is not error_type:
                assert error != other_type(account_id)

    @pytest.mark.parametrize(
        ("error_type", "words"),
        [
            (AccountClosedError, "closed"),
            (InsufficientFundsError, "insufficient funds"),
            (AccountNotFoundError, "not found"),
            (TransactionError, "could not be applied"),
            (BalanceLimitError, f"would hold more than {MAX_BALANCE:,}"),
        ],
    )
    def test_say_in_words_what_went_wrong(
        self, error_type: type[TransactionError], words: str
    ) -> None:
        account_id = uuid4()
        error = error_type(account_id)
        assert words in str(error).lower()
        assert str(account_id) in str(error)
        assert repr(error) == f"{error_type.__name__}({account_id!r})"

    def test_every_kind_is_stored_as_itself(self) -> None:
        """Each transaction error is registered for the transcoder."""

        def kinds(error_type: type[TransactionError]) -> set[type[TransactionError]]:
            found = {error_type}
            for subclass in error_type.__subclasses__():
                found |= kinds(subclass)
            return found

        assert kinds(TransactionError) == set(TRANSACTION_ERROR_TYPES)
        assert set(TRANSACTION_ERRORS) == set(TRANSACTION_ERROR_TYPES)

    def test_kinds(self) -> None:
        account_id = uuid4()
        assert isinstance(AccountClosedError(account_id), TransactionError)
        assert isinstance(InsufficientFundsError(account_id), TransactionError)
        assert isinstance(AccountNotFoundError(account_id), LookupError)
        assert issubclass(InvalidAmountError, ValueError)


class TestStorage:
    """Decimals, UUIDs and errors come back from storage exactly as they went in."""

    @pytest.fixture
    def app(
        self, persistence_env: dict[str, str]
    ) -> Iterator[SimpleBankAccountApplication]:
        app = SimpleBankAccountApplication(env=persistence_env)
        yield app
        app.close()

    def stored_events(
        self, app: SimpleBankAccountApplication, originator_id: UUID
    ) -> list[Any]:
        return list(app.repository.event_store.get(originator_id))

    def test_round_trip(
        self, app: SimpleBankAccountApplication, persistence_env: dict[str, str]
    ) -> None:
        account = BankAccount(name="Zoë 💰")
        transaction_id = uuid4()
        account.append_transaction(Decimal("1234567890.12"), transaction_id)
        account.set_overdraft_limit(Decimal("0.10"))
        errors = [error_type(uuid4()) for error_type in TRANSACTION_ERRORS]
        for error in errors:
            account.record_error(error, transaction_id)
        account.record_error(AccountClosedError(account.id))
        app.save(account)

        events = self.stored_events(app, account.id)
        names = [type(e).__name__ for e in events]
        assert names == ["Created", "TransactionAppended", "OverdraftLimitSet"] + [
            "ErrorRecorded"
        ] * (len(errors) + 1)
        appended = events[1]
        assert type(appended.amount) is Decimal
        assert str(appended.amount) == "1234567890.12"
        assert type(appended.transaction_id) is UUID
        assert appended.transaction_id == transaction_id
        assert str(events[2].overdraft_limit) == "0.10"
        for event, error in zip(events[3:], errors, strict=False):
            recorded = event
            assert type(recorded.error) is type(error)
            assert recorded.error == error
            assert recorded.error.account_id == error.account_id
            assert str(recorded.error) == str(error)
            assert recorded.transaction_id == transaction_id
        assert events[-1].error == AccountClosedError(account.id)
        assert events[-1].transaction_id is None

        # A fresh application on the same storage sees the same account.
        if persistence_env.get("PERSISTENCE_MODULE") != "eventsourcing.popo":
            other = SimpleBankAccountApplication(env=persistence_env)
            try:
                copy = other.get_account(account.id)
            finally:
                other.close()
            assert copy.name == "Zoë 💰"
            assert type(copy.balance) is Decimal
            assert str(copy.balance) == "1234567890.12"
            assert str(copy.overdraft_limit) == "0.10"

    def test_rejected_transaction_round_trip(
        self, app: SimpleBankAccountApplication
    ) -> None:
        transaction_id, account_id = uuid4(), uuid4()
        rejection = RejectedTransaction(
            transaction_id=transaction_id,
            account_id=account_id,
            error=AccountNotFoundError(account_id),
        )
        assert rejection.id == RejectedTransaction.create_id(transaction_id, account_id)
        app.save(rejection)
        copy = cast("RejectedTransaction", app.repository.get(rejection.id))
        assert copy.transaction_id == transaction_id
        assert copy.account_id == account_id
        assert type(copy.error) is AccountNotFoundError
        assert copy.error == AccountNotFoundError(account_id)

    def test_a_long_history_is_snapshotted_and_reloads_exactly(
        self, app: SimpleBankAccountApplication, persistence_env: dict[str, str]
    ) -> None:
        account_id = app.create_account()
        for _ in range(120):
            app.deposit_funds(account_id, "0.01")
        app.withdraw_funds(account_id, "0.20")
        assert app.get_balance(account_id) == Decimal("1.00")
        assert app.snapshots is not None
        (snapshot,) = app.snapshots.get(account_id)
        assert snapshot.originator_version == 100
        # Taken from the account in memory: the same as replaying its events.
        from_snapshot = snapshot.mutate(None)
        replayed = project_aggregate(None, app.events.get(account_id, lte=100))
        assert replayed is not None
        assert from_snapshot.__dict__ == replayed.__dict__
        if persistence_env.get("PERSISTENCE_MODULE") != "eventsourcing.popo":
            other = SimpleBankAccountApplication(env=persistence_env)
            try:
                assert str(other.get_balance(account_id)) == "1.00"
            finally:
                other.close()


def test_a_deep_copy_of_an_account_is_independent() -> None:
    account = BankAccount(name="Alice")
    account.append_transaction(Decimal("10.00"))
    account.collect_events()

    clone = copy.deepcopy(account)
    clone.append_transaction(Decimal("5.00"))
    clone.close()

    assert (account.balance, account.version, account.is_closed) == (
        Decimal("10.00"),
        2,
        False,
    )
    assert account.collect_events() == []
    assert (clone.balance, clone.version, clone.is_closed) == (
        Decimal("15.00"),
        4,
        True,
    )
    assert len(clone.collect_events()) == 2

"""The domain model: the event-sourced bank account."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal  # noqa: TC003 (event annotations are resolved at runtime)
from typing import TYPE_CHECKING, Any
from uuid import UUID  # noqa: TC003 (event annotations are resolved at runtime)

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import register_topic

from bankaccounts.exceptions import (
    MAX_BALANCE,
    AccountClosedError,
    BalanceLimitError,
    InsufficientFundsError,
    TransactionError,
)
from bankaccounts.ids import REJECTIONS, derived_id
from bankaccounts.validation import ZERO, to_limit, to_money

if TYPE_CHECKING:
    from datetime import datetime
    from typing import Self


@dataclass(frozen=True)
class UserRef:
    """Who: a user's id and username, as events and views record them.

    Usernames never change, so an event that names its user by both stays true,
    and a reader needs no second lookup to show who did what.
    """

    id: UUID
    username: str

    def to_json(self) -> dict[str, str]:
        """{"id", "username"}, as the API shows a user."""
        return {"id": str(self.id), "username": self.username}


class ValueCopy:
    """Aggregates whose attributes are immutable values, or lists of them, copy fast.

    The library's aggregate cache hands out a deep copy on every read, so that a
    command which fails half-way never spoils the cached aggregate. A generic
    deepcopy of an account takes about 100 microseconds; this takes about 2.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        clone = object.__new__(type(self))
        clone.__dict__.update(
            (key, list(value) if isinstance(value, list) else value)
            for key, value in self.__dict__.items()
        )
        return clone


class BankAccount(ValueCopy, Aggregate):
    """An account with a balance, an overdraft limit and a history of transactions.

    Its events are declared with defaults for what later versions added (the owner,
    who initiated a transaction, its counterparty): an event stored before then has
    no such attribute, and reads as the default.
    """

    #: Who owns the account; None for accounts opened before owners were recorded
    #: (a snapshot taken then has no such attribute).
    owner: UserRef | None = None

    class Created(Aggregate.Created):
        """The account was opened, by and for its owner if it has one.

        Named as in the seed application (whose interface listens for
        Account.Created); it was called Opened before, and events stored under that
        name read as this class (OPENED_TOPIC, below).
        """

        name: str | None
        owner: UserRef | None = None

    class TransactionAppended(Aggregate.Event):
        """Money came in (a positive amount) or went out (a negative one)."""

        amount: Decimal
        transaction_id: UUID | None
        initiated_by: UserRef | None = None
        counterparty_id: UUID | None = None
        is_refund: bool = False

    class OverdraftLimitSet(Aggregate.Event):
        """The overdraft limit changed."""

        overdraft_limit: Decimal

    class Closed(Aggregate.Event):
        """The account was closed."""

    class ErrorRecorded(Aggregate.Event):
        """A requested transaction was refused, and why."""

        error: TransactionError
        transaction_id: UUID | None
        initiated_by: UserRef | None = None

    @event(Created)
    def __init__(self, name: str | None = None, owner: UserRef | None = None) -> None:
        """Opens an account with a zero balance and no overdraft."""
        self.name = name
        self.owner = owner
        self.balance: Decimal = ZERO
        self.overdraft_limit: Decimal = ZERO
        self.is_closed = False

    @property
    def opened_at(self) -> datetime:
        """When the account was opened."""
        return self.created_on

    def append_transaction(
        self,
        amount: Decimal,
        transaction_id: UUID | None = None,
        *,
        is_refund: bool = False,
        initiated_by: UserRef | None = None,
        counterparty_id: UUID | None = None,
    ) -> None:
        """Adds a credit (positive) or debit (negative) to the balance.

        A refund returns money that left this account, so a closed account takes it.
        The event records who initiated the transaction and, for a transfer or its
        refund, the other account.
        """
        amount = to_money(amount)
        if not is_refund:
            self.check_account_is_not_closed()
            # A refund is never refused: it returns money that left this account.
            self.check_balance_limit(amount)
        self.check_has_sufficient_funds(amount)
        self._append_transaction(
            amount, transaction_id, initiated_by, counterparty_id, is_refund
        )

    # The library's decorated methods take no keyword-only arguments (their defaults
    # are not applied), so the events' optional arguments are plain ones here.
    @event(TransactionAppended)
    def _append_transaction(
        self,
        amount: Decimal,
        transaction_id: UUID | None,
        initiated_by: UserRef | None = None,
        counterparty_id: UUID | None = None,
        is_refund: bool = False,
    ) -> None:
        self.balance += amount

    def set_overdraft_limit(self, overdraft_limit: Decimal) -> None:
        """Sets how far below zero the balance may go."""
        overdraft_limit = to_limit(overdraft_limit)
        self.check_account_is_not_closed()
        self._set_overdraft_limit(overdraft_limit)

    @event(OverdraftLimitSet)
    def _set_overdraft_limit(self, overdraft_limit: Decimal) -> None:
        self.overdraft_limit = overdraft_limit

    def close(self) -> None:
        """Closes the account; closing a closed account does nothing."""
        if not self.is_closed:
            self._close()

    @event(Closed)
    def _close(self) -> None:
        self.is_closed = True

    def record_error(
        self,
        error: TransactionError,
        transaction_id: UUID | None = None,
        *,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Records why a requested transaction was not applied (and who asked)."""
        self._record_error(error, transaction_id, initiated_by)

    @event(ErrorRecorded)
    def _record_error(
        self,
        error: TransactionError,
        transaction_id: UUID | None,
        initiated_by: UserRef | None = None,
    ) -> None:
        pass

    def check_account_is_not_closed(self) -> None:
        """Raises AccountClosedError if the account is closed."""
        if self.is_closed:
            raise AccountClosedError(self.id)

    def check_balance_limit(self, amount: Decimal) -> None:
        """Raises BalanceLimitError if a credit would take the balance past the most."""
        if amount > ZERO and self.balance + amount > MAX_BALANCE:
            raise BalanceLimitError(self.id)

    def check_has_sufficient_funds(self, amount: Decimal) -> None:
        """Raises InsufficientFundsError if the amount would overrun the overdraft."""
        if amount < ZERO and self.balance + amount < -self.overdraft_limit:
            raise InsufficientFundsError(self.id)


#: The creation event's topic before it was renamed Created: stored events name it.
OPENED_TOPIC = "bankaccounts.domainmodel:BankAccount.Opened"
register_topic(OPENED_TOPIC, BankAccount.Created)


class RejectedTransaction(ValueCopy, Aggregate):
    """A transaction refused before it reached an account (an unknown account id)."""

    @staticmethod
    def create_id(transaction_id: UUID, account_id: UUID) -> UUID:
        """One rejection per transaction and account, in a namespace of its own."""
        return derived_id(REJECTIONS, transaction_id, account_id)

    @event("Recorded")
    def __init__(
        self, transaction_id: UUID, account_id: UUID, error: TransactionError
    ) -> None:
        """Records the transaction and the error that refused it."""
        self.transaction_id = transaction_id
        self.account_id = account_id
        self.error = error

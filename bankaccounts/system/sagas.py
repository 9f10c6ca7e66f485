"""Sagas: carries out each command as a saga of steps applied by Accounts."""

from __future__ import annotations

from decimal import Decimal  # noqa: TC003 (event annotations are resolved at runtime)
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID  # noqa: TC003 (event annotations are resolved at runtime)

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic

from bankaccounts.domainmodel import (
    BankAccount,
    RejectedTransaction,
    UserRef,
    ValueCopy,
)
from bankaccounts.ids import ABORTED_TRANSACTIONS, REFUNDS, derived_id
from bankaccounts.infrastructure import BankApplication
from bankaccounts.system.batching import BatchProcessApplication
from bankaccounts.system.commands import (
    COMMAND_KINDS,
    DepositFundsCommand,
    TransferFundsCommand,
    WithdrawFundsCommand,
)

if TYPE_CHECKING:
    from eventsourcing.domain import DomainEventProtocol

    from bankaccounts.exceptions import TransactionError


class Saga(ValueCopy, Aggregate):
    """A transaction in progress: it ends succeeded, or errored with the reasons.

    Each kind declares its Created event, with a default for who initiated it: a
    saga started before initiators were recorded is read as initiated by nobody.
    """

    has_succeeded: bool = False
    has_errored: bool = False
    #: Who asked for the transaction; None if nobody was named.
    initiated_by: UserRef | None = None

    def __init__(self) -> None:
        """Starts with no errors."""
        self.errors: list[TransactionError] = []

    @property
    def is_finished(self) -> bool:
        """True once the saga has succeeded or errored."""
        return self.has_succeeded or self.has_errored

    def on_transaction_appended(self, account_id: UUID) -> list[Saga]:
        """Takes the next step after Accounts applied this saga's transaction."""
        self._succeed()
        return []

    def on_transaction_failed(
        self, account_id: UUID, error: TransactionError
    ) -> list[Saga]:
        """Takes the next step after Accounts refused this saga's transaction."""
        self._fail(error)
        return []

    @event("Succeeded")
    def _succeed(self) -> None:
        self.has_succeeded = True

    @event("Errored")
    def _fail(self, error: TransactionError) -> None:
        self.errors.append(error)
        self.has_errored = True


class DepositFundsSaga(Saga):
    """Credits one account."""

    class Created(Saga.Created):
        """A deposit started."""

        credit_account_id: UUID
        amount: Decimal
        initiated_by: UserRef | None = None

    @event(Created)
    def __init__(
        self,
        id: UUID,  # noqa: A002
        credit_account_id: UUID,
        amount: Decimal,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Asks Accounts to credit the account."""
        super().__init__()
        self.initiated_by = initiated_by
        self.credit_account_id = credit_account_id
        self.amount = amount


class WithdrawFundsSaga(Saga):
    """Debits one account."""

    class Created(Saga.Created):
        """A withdrawal started."""

        debit_account_id: UUID
        amount: Decimal
        initiated_by: UserRef | None = None

    @event(Created)
    def __init__(
        self,
        id: UUID,  # noqa: A002
        debit_account_id: UUID,
        amount: Decimal,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Asks Accounts to debit the account."""
        super().__init__()
        self.initiated_by = initiated_by
        self.debit_account_id = debit_account_id
        self.amount = amount


class RefundFundsSaga(Saga):
    """Pays a transfer's debit back when its credit failed."""

    #: The account the transfer's credit failed on; None for refunds started before
    #: it was recorded.
    counterparty_id: UUID | None = None

    class Created(Saga.Created):
        """A refund started; initiated by whoever initiated the transfer."""

        transfer_id: UUID
        account_id: UUID
        amount: Decimal
        initiated_by: UserRef | None = None
        counterparty_id: UUID | None = None

    @staticmethod
    def create_id(transfer_id: UUID) -> UUID:
        """One refund per transfer, in a namespace no client key can reach."""
        return derived_id(REFUNDS, transfer_id)

    @event(Created)
    def __init__(
        self,
        transfer_id: UUID,
        account_id: UUID,
        amount: Decimal,
        initiated_by: UserRef | None = None,
        counterparty_id: UUID | None = None,
    ) -> None:
        """Asks Accounts to credit the debited account."""
        super().__init__()
        self.initiated_by = initiated_by
        self.transfer_id = transfer_id
        self.account_id = account_id
        self.amount = amount
        self.counterparty_id = counterparty_id


class TransferFundsSaga(Saga):
    """Debits one account, then credits another, and refunds the debit if that fails."""

    has_debited: bool = False
    refund_id: UUID | None = None

    class Created(Saga.Created):
        """A transfer started."""

        debit_account_id: UUID
        credit_account_id: UUID
        amount: Decimal
        initiated_by: UserRef | None = None

    class DebitRecorded(Saga.Event):
        """The debit was applied; the event names the credit, for Accounts.

        Accounts applies the credit from it without asking Sagas: the debited
        account (the credit's counterparty) and the initiator came later, and are
        None in events stored before.
        """

        credit_account_id: UUID
        amount: Decimal
        debit_account_id: UUID | None = None
        initiated_by: UserRef | None = None

    @event(Created)
    def __init__(
        self,
        id: UUID,  # noqa: A002
        debit_account_id: UUID,
        credit_account_id: UUID,
        amount: Decimal,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Asks Accounts to debit the first account."""
        super().__init__()
        self.initiated_by = initiated_by
        self.debit_account_id = debit_account_id
        self.credit_account_id = credit_account_id
        self.amount = amount

    def on_transaction_appended(self, account_id: UUID) -> list[Saga]:
        """After the debit, asks for the credit; after the credit, succeeds."""
        if not self.has_debited and account_id == self.debit_account_id:
            self._record_debit(
                self.credit_account_id,
                self.amount,
                self.debit_account_id,
                self.initiated_by,
            )
        elif self.has_debited and account_id == self.credit_account_id:
            self._succeed()
        return []

    def on_transaction_failed(
        self, account_id: UUID, error: TransactionError
    ) -> list[Saga]:
        """A failed debit ends the saga; a failed credit starts a refund."""
        if not self.has_debited:
            self._fail(error)
            return []
        refund = RefundFundsSaga(
            transfer_id=self.id,
            account_id=self.debit_account_id,
            amount=self.amount,
            initiated_by=self.initiated_by,
            counterparty_id=self.credit_account_id,
        )
        self._request_refund(error, refund.id)
        return [refund]

    def on_refunded(self) -> None:
        """Ends errored with the credit's error once the debit is paid back."""
        self._fail(self.credit_error)

    @event(DebitRecorded)
    def _record_debit(
        self,
        credit_account_id: UUID,
        amount: Decimal,
        debit_account_id: UUID | None = None,
        initiated_by: UserRef | None = None,
    ) -> None:
        self.has_debited = True

    @event("RefundRequested")
    def _request_refund(self, credit_error: TransactionError, refund_id: UUID) -> None:
        self.credit_error = credit_error
        self.refund_id = refund_id


class AbortedTransaction(ValueCopy, Aggregate):
    """A request that Sagas could not turn into a saga: it ended failed, nothing moved.

    Recorded when processing a command fails for a reason of the bank's own (a
    fault), so that the client learns the outcome instead of waiting for ever.
    """

    class Recorded(Aggregate.Created):
        """The request ended failed; initiated_by is None in events stored before."""

        transaction_id: UUID
        kind: str
        debit_account_id: UUID | None
        credit_account_id: UUID | None
        amount: Decimal
        reason: str
        initiated_by: UserRef | None = None

    @staticmethod
    def create_id(transaction_id: UUID) -> UUID:
        """One per transaction, in a namespace of its own."""
        return derived_id(ABORTED_TRANSACTIONS, transaction_id)

    @event(Recorded)
    def __init__(
        self,
        transaction_id: UUID,
        kind: str,
        debit_account_id: UUID | None,
        credit_account_id: UUID | None,
        amount: Decimal,
        reason: str,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Records the request, who made it and why it was not carried out."""
        self.transaction_id = transaction_id
        self.kind = kind
        self.debit_account_id = debit_account_id
        self.credit_account_id = credit_account_id
        self.amount = amount
        self.reason = reason
        self.initiated_by = initiated_by


#: The kind of transaction a command's Created event asks for.
KIND_OF_COMMAND_CREATED: dict[type[Any], str] = {
    cls.Created: kind for cls, kind in COMMAND_KINDS.items()
}


class Sagas(BankApplication, BatchProcessApplication):
    """Turns commands into sagas and moves each saga on as Accounts reports back."""

    topics = tuple(
        get_topic(cls)
        for cls in (
            DepositFundsCommand.Created,
            WithdrawFundsCommand.Created,
            TransferFundsCommand.Created,
            BankAccount.TransactionAppended,
            BankAccount.ErrorRecorded,
            RejectedTransaction.Recorded,  # type: ignore[attr-defined]
        )
    )

    def outcome_of_failure(
        self, domain_event: Any, error: Exception
    ) -> list[AbortedTransaction] | None:
        """A command that cannot be carried out ends failed; nothing was moved yet.

        Other events report what Accounts did: their right outcome is unknown, so
        the follower stops at them (and says so) rather than guess.
        """
        kind = KIND_OF_COMMAND_CREATED.get(type(domain_event))
        if kind is None:
            return None
        return [
            AbortedTransaction(
                transaction_id=domain_event.originator_id,
                kind=kind,
                debit_account_id=getattr(domain_event, "debit_account_id", None),
                credit_account_id=getattr(domain_event, "credit_account_id", None),
                amount=domain_event.amount,
                reason=(
                    f"The bank could not process this {kind} "
                    f"({type(error).__name__}); no money was moved"
                ),
                initiated_by=domain_event.initiated_by,
            )
        ]

    def get_saga(self, transaction_id: UUID) -> Saga:
        """Returns the saga of a transaction (raises AggregateNotFoundError if none)."""
        return cast("Saga", self.repository.get(transaction_id))

    @singledispatchmethod
    def policy(
        self,
        domain_event: DomainEventProtocol[UUID],
        processing_event: ProcessingEvent[UUID],
    ) -> None:
        """Ignores other events."""

    @policy.register(DepositFundsCommand.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        saga = DepositFundsSaga(
            id=domain_event.originator_id,
            credit_account_id=domain_event.credit_account_id,
            amount=domain_event.amount,
            initiated_by=domain_event.initiated_by,
        )
        processing_event.collect_events(saga)

    @policy.register(WithdrawFundsCommand.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        saga = WithdrawFundsSaga(
            id=domain_event.originator_id,
            debit_account_id=domain_event.debit_account_id,
            amount=domain_event.amount,
            initiated_by=domain_event.initiated_by,
        )
        processing_event.collect_events(saga)

    @policy.register(TransferFundsCommand.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        saga = TransferFundsSaga(
            id=domain_event.originator_id,
            debit_account_id=domain_event.debit_account_id,
            credit_account_id=domain_event.credit_account_id,
            amount=domain_event.amount,
            initiated_by=domain_event.initiated_by,
        )
        processing_event.collect_events(saga)

    @policy.register(BankAccount.TransactionAppended)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        saga = self._find_saga(domain_event.transaction_id, processing_event)
        if saga is None or saga.is_finished:
            return
        started = saga.on_transaction_appended(domain_event.originator_id)
        processing_event.collect_events(saga, *started)
        if isinstance(saga, RefundFundsSaga) and saga.has_succeeded:
            transfer = cast(
                "TransferFundsSaga",
                self._find_saga(saga.transfer_id, processing_event),
            )
            transfer.on_refunded()
            processing_event.collect_events(transfer)

    @policy.register(BankAccount.ErrorRecorded)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._fail_saga(
            domain_event.transaction_id,
            domain_event.originator_id,
            domain_event.error,
            processing_event,
        )

    @policy.register(RejectedTransaction.Recorded)  # type: ignore[attr-defined]
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._fail_saga(
            domain_event.transaction_id,
            domain_event.account_id,
            domain_event.error,
            processing_event,
        )

    def _fail_saga(
        self,
        transaction_id: UUID | None,
        account_id: UUID,
        error: TransactionError,
        processing_event: ProcessingEvent[UUID],
    ) -> None:
        saga = self._find_saga(transaction_id, processing_event)
        if saga is None or saga.is_finished:
            return
        started = saga.on_transaction_failed(account_id, error)
        processing_event.collect_events(saga, *started)
        if isinstance(saga, RefundFundsSaga):
            transfer = cast(
                "TransferFundsSaga",
                self._find_saga(saga.transfer_id, processing_event),
            )
            transfer.on_refunded()
            processing_event.collect_events(transfer)

    def _find_saga(
        self, transaction_id: UUID | None, processing_event: ProcessingEvent[UUID]
    ) -> Saga | None:
        if transaction_id is None:
            return None
        saga: Saga | None = self.collected(processing_event, transaction_id)
        if saga is not None:
            return saga
        try:
            return self.get_saga(transaction_id)
        except AggregateNotFoundError:
            return None

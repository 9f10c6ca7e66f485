"""Accounts: applies the transactions that sagas request, and records why any failed."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.utils import get_topic

from bankaccounts.accountapplication import AccountApplication, retry_on_conflict
from bankaccounts.domainmodel import RejectedTransaction
from bankaccounts.exceptions import (
    AccountNotFoundError,
    ProcessingError,
    TransactionError,
)
from bankaccounts.system.batching import BatchProcessApplication
from bankaccounts.system.sagas import (
    DepositFundsSaga,
    RefundFundsSaga,
    TransferFundsSaga,
    WithdrawFundsSaga,
)

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Sequence
    from decimal import Decimal
    from uuid import UUID

    from eventsourcing.application import ProcessingEvent
    from eventsourcing.domain import DomainEventProtocol
    from eventsourcing.utils import EnvType

    from bankaccounts.domainmodel import UserRef
    from bankaccounts.system.batching import Job


#: The account each saga event asks Accounts to change.
TARGET_ACCOUNT: dict[type[Any], str] = {
    DepositFundsSaga.Created: "credit_account_id",
    WithdrawFundsSaga.Created: "debit_account_id",
    TransferFundsSaga.Created: "debit_account_id",
    TransferFundsSaga.DebitRecorded: "credit_account_id",
    RefundFundsSaga.Created: "account_id",
}


class Accounts(AccountApplication, BatchProcessApplication):
    """Keeps the bank accounts and applies saga transactions to them."""

    topics = tuple(
        get_topic(cls)
        for cls in (
            DepositFundsSaga.Created,
            WithdrawFundsSaga.Created,
            TransferFundsSaga.Created,
            TransferFundsSaga.DebitRecorded,
            RefundFundsSaga.Created,
        )
    )

    def __init__(self, env: EnvType | None = None) -> None:
        """Makes the processing lock re-entrant, so client writes can share it."""
        super().__init__(env)
        self.processing_lock = threading.RLock()  # type: ignore[assignment]

    def writing(self) -> contextlib.AbstractContextManager[object]:
        """Client writes wait for the event being processed, so versions never clash."""
        return self.processing_lock

    def process_events(self, jobs: Sequence[Job]) -> None:
        """Processes a page again if a client write elsewhere took a version."""
        process = super().process_events
        retry_on_conflict(self, lambda: process(jobs))

    def outcome_of_failure(
        self, domain_event: Any, error: Exception
    ) -> list[RejectedTransaction] | None:
        """A transaction that cannot be applied is rejected; its saga then fails.

        Nothing of it was applied (the failed page was not committed), so the saga
        ends as for any refused step: a transfer whose credit fails is refunded.
        """
        account_id = self._target_account(domain_event)
        if account_id is None:
            return None
        return [
            RejectedTransaction(
                transaction_id=domain_event.originator_id,
                account_id=account_id,
                error=ProcessingError(account_id),
            )
        ]

    @staticmethod
    def _target_account(domain_event: Any) -> UUID | None:
        attribute = TARGET_ACCOUNT.get(type(domain_event))
        return None if attribute is None else getattr(domain_event, attribute)

    @singledispatchmethod
    def policy(
        self,
        domain_event: DomainEventProtocol[UUID],
        processing_event: ProcessingEvent[UUID],
    ) -> None:
        """Ignores other events."""

    @policy.register(DepositFundsSaga.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._apply(
            domain_event.credit_account_id,
            domain_event.amount,
            domain_event.originator_id,
            processing_event,
            initiated_by=domain_event.initiated_by,
        )

    @policy.register(WithdrawFundsSaga.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._apply(
            domain_event.debit_account_id,
            -domain_event.amount,
            domain_event.originator_id,
            processing_event,
            initiated_by=domain_event.initiated_by,
        )

    @policy.register(TransferFundsSaga.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._apply(
            domain_event.debit_account_id,
            -domain_event.amount,
            domain_event.originator_id,
            processing_event,
            initiated_by=domain_event.initiated_by,
            counterparty_id=domain_event.credit_account_id,
        )

    @policy.register(TransferFundsSaga.DebitRecorded)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._apply(
            domain_event.credit_account_id,
            domain_event.amount,
            domain_event.originator_id,
            processing_event,
            initiated_by=domain_event.initiated_by,
            counterparty_id=domain_event.debit_account_id,
        )

    @policy.register(RefundFundsSaga.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._apply(
            domain_event.account_id,
            domain_event.amount,
            domain_event.originator_id,
            processing_event,
            is_refund=True,
            initiated_by=domain_event.initiated_by,
            counterparty_id=domain_event.counterparty_id,
        )

    def _apply(
        self,
        account_id: UUID,
        amount: Decimal,
        transaction_id: UUID,
        processing_event: ProcessingEvent[UUID],
        *,
        is_refund: bool = False,
        initiated_by: UserRef | None = None,
        counterparty_id: UUID | None = None,
    ) -> None:
        try:
            account = self.collected(processing_event, account_id) or self.get_account(
                account_id
            )
        except AccountNotFoundError as error:
            rejection = RejectedTransaction(
                transaction_id=transaction_id, account_id=account_id, error=error
            )
            processing_event.collect_events(rejection)
            return
        try:
            account.append_transaction(
                amount,
                transaction_id,
                is_refund=is_refund,
                initiated_by=initiated_by,
                counterparty_id=counterparty_id,
            )
        except TransactionError as error:
            account.record_error(error, transaction_id, initiated_by=initiated_by)
        processing_event.collect_events(account)

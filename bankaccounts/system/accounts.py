"""Accounts: applies the transactions that sagas request, and records why any failed."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.utils import get_topic

from bankaccounts.accountapplication import AccountApplication, retry_on_conflict
from bankaccounts.domainmodel import RejectedTransaction
from bankaccounts.exceptions import AccountNotFoundError, TransactionError
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

    from bankaccounts.system.batching import Job


class Accounts(AccountApplication, BatchProcessApplication):
    """Keeps the bank accounts and applies saga transactions to them."""

    topics = tuple(
        get_topic(cls)
        for cls in (
            DepositFundsSaga.Created,
            WithdrawFundsSaga.Created,
            TransferFundsSaga.Created,
            TransferFundsSaga.DebitRecorded,  # type: ignore[attr-defined]
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
        )

    @policy.register(WithdrawFundsSaga.Created)
    @policy.register(TransferFundsSaga.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._apply(
            domain_event.debit_account_id,
            -domain_event.amount,
            domain_event.originator_id,
            processing_event,
        )

    @policy.register(TransferFundsSaga.DebitRecorded)  # type: ignore[attr-defined]
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._apply(
            domain_event.credit_account_id,
            domain_event.amount,
            domain_event.originator_id,
            processing_event,
        )

    @policy.register(RefundFundsSaga.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._apply(
            domain_event.account_id,
            domain_event.amount,
            domain_event.originator_id,
            processing_event,
            is_refund=True,
        )

    def _apply(
        self,
        account_id: UUID,
        amount: Decimal,
        transaction_id: UUID,
        processing_event: ProcessingEvent[UUID],
        *,
        is_refund: bool = False,
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
            account.append_transaction(amount, transaction_id, is_refund=is_refund)
        except TransactionError as error:
            account.record_error(error, transaction_id)
        processing_event.collect_events(account)

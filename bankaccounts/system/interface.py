"""InterfaceApplication: follows Accounts and Sagas into a read model and a feed."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.utils import get_topic

from bankaccounts.domainmodel import OPENED_TOPIC, BankAccount
from bankaccounts.infrastructure import BankApplication
from bankaccounts.readmodel import (
    AccountRef,
    AccountView,
    FeedMessage,
    POPOReadModelRecorder,
    ReadModelRecorder,
    StatementEntry,
    TransactionEvent,
    TransactionView,
    ViewChanges,
)
from bankaccounts.readmodel.postgres import PostgresReadModelRecorder
from bankaccounts.readmodel.sqlite import SQLiteReadModelRecorder
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.batching import BatchProcessApplication
from bankaccounts.system.sagas import (
    AbortedTransaction,
    DepositFundsSaga,
    Saga,
    Sagas,
    TransferFundsSaga,
    WithdrawFundsSaga,
)
from bankaccounts.validation import ZERO

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from decimal import Decimal
    from uuid import UUID

    from eventsourcing.application import ProcessingEvent
    from eventsourcing.domain import DomainEventProtocol
    from eventsourcing.persistence import Recording, Tracking

    from bankaccounts.domainmodel import UserRef
    from bankaccounts.exceptions import (
        TransactionError,
    )
    from bankaccounts.readmodel import EntryKind, TransactionKind, TransactionStatus
    from bankaccounts.system.batching import Job

logger = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

SAGA_KINDS: dict[type[Saga], TransactionKind] = {
    DepositFundsSaga: "deposit",
    WithdrawFundsSaga: "withdrawal",
    TransferFundsSaga: "transfer",
}


def _topics() -> tuple[str, ...]:
    account_events = [
        BankAccount.Created,
        BankAccount.TransactionAppended,
        BankAccount.ErrorRecorded,
        BankAccount.OverdraftLimitSet,
        BankAccount.Closed,
    ]
    # Sagas of every kind share the Succeeded and Errored events of their base class.
    saga_events = [
        *(saga_class.Created for saga_class in SAGA_KINDS),
        Saga.Succeeded,  # type: ignore[attr-defined]
        Saga.Errored,  # type: ignore[attr-defined]
        AbortedTransaction.Recorded,
    ]
    topics = [get_topic(cls) for cls in [*account_events, *saga_events]]
    return (*topics, OPENED_TOPIC)  # accounts opened before Created was so named


class InterfaceApplication(BankApplication, BatchProcessApplication):
    """Keeps what clients see (accounts, transactions, statements) and pushes every
    change, each message to its audience (the owners of what it shows) and staff.

    A page of events is written in one transaction with the tracking record of its
    last event (see BatchProcessApplication); the view is still exactly-once, and
    catching up costs one commit per page instead of one per event.
    """

    name = "Interface"
    topics = _topics()
    # A saga's steps and the account changes they cause, in the order they happened.
    processed_together = (Accounts.name, Sagas.name)
    # Process recorders that also write the read model, in each store.
    popo_recorder = POPOReadModelRecorder
    sqlite_recorder = SQLiteReadModelRecorder
    postgres_recorder = PostgresReadModelRecorder
    mysql_recorder = "bankaccounts.readmodel.mysql:MySQLReadModelRecorder"

    def __init__(self, env: Any = None, *, check_read_model: bool = True) -> None:
        """Starts with no feed listeners.

        Raises ReadModelOutdatedError if the view's tables are of an older shape
        (unless check_read_model is false: the rebuild makes them again).
        """
        super().__init__(env)
        if check_read_model:
            self.view.check_schema()
        self._listeners: list[Callable[[Sequence[FeedMessage]], None]] = []
        self._listeners_lock = threading.Lock()
        self._rows: RecordedRows | None = None
        # The tracking of each event of the page being processed, on its thread.
        self._page = threading.local()

    def remember_positions(self) -> None:
        """Remembers its positions, and the rows it recorded last (RecordedRows)."""
        super().remember_positions()
        self._rows = RecordedRows()

    @property
    def view(self) -> ReadModelRecorder:
        """The read model: accounts, transactions and the feed."""
        return cast("ReadModelRecorder", self.recorder)

    def add_feed_listener(
        self, listener: Callable[[Sequence[FeedMessage]], None]
    ) -> Callable[[], None]:
        """Calls listener with each batch of new feed messages; returns a remover."""
        with self._listeners_lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def process_events(self, jobs: Sequence[Job]) -> None:
        """Processes a page, each event's policy knowing where the event is stored
        (for the timeline's index: see _index_transaction_event)."""
        self._page.tracking = {
            (event.originator_id, event.originator_version): tracking
            for event, tracking in jobs
        }
        try:
            super().process_events(jobs)
        finally:
            self._page.tracking = {}

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        changes: ViewChanges | None = processing_event.saved_kwargs.get("view_changes")
        rows = self._rows
        if rows is not None:
            try:
                recordings = super()._record(processing_event)
            except BaseException:
                rows.clear()  # committed or not: read the view again
                raise
            if changes:
                rows.update(changes)
        else:
            recordings = super()._record(processing_event)
        if changes and changes.feed:
            with self._listeners_lock:
                listeners = list(self._listeners)
            for listener in listeners:
                try:
                    listener(changes.feed)
                except Exception:
                    logger.exception("feed listener failed")
        return recordings

    def describe_error(
        self, error: TransactionError, processing_event: ProcessingEvent[UUID]
    ) -> str:
        """Says in words what went wrong, naming the account as people know it."""
        account = self._get_account(processing_event, error.account_id)
        label = account.label if account else f"account {str(error.account_id)[:8]}"
        return error.describe(label)

    @singledispatchmethod
    def policy(
        self,
        domain_event: DomainEventProtocol[UUID],
        processing_event: ProcessingEvent[UUID],
    ) -> None:
        """Ignores other events."""

    @policy.register(BankAccount.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        account = AccountView(
            id=domain_event.originator_id,
            name=domain_event.name,
            balance=ZERO,
            overdraft_limit=ZERO,
            is_closed=False,
            opened_at=domain_event.timestamp,
            updated_at=domain_event.timestamp,
            owner=getattr(domain_event, "owner", None),  # None in older events
        )
        self._change_account(processing_event, account, "account_opened")
        if account.owner is not None:
            self._fill_in_owner(processing_event, account.id, account.owner)

    @policy.register(BankAccount.TransactionAppended)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._index_transaction_event(domain_event, processing_event)
        account = self._get_account(processing_event, domain_event.originator_id)
        if account is None:  # pragma: no cover (Created always comes first)
            return
        amount: Decimal = domain_event.amount
        account = replace(
            account,
            balance=account.balance + amount,
            statement_seq=account.statement_seq + 1,
            updated_at=domain_event.timestamp,
        )
        # Older events have neither: a transfer's entry then shows no counterparty.
        counterparty_id: UUID | None = getattr(domain_event, "counterparty_id", None)
        entry = StatementEntry(
            account_id=account.id,
            seq=account.statement_seq,
            transaction_id=domain_event.transaction_id,
            kind=_entry_kind(domain_event, counterparty_id),
            amount=amount,
            balance=account.balance,
            counterparty=None
            if counterparty_id is None
            else self._account_ref(processing_event, counterparty_id),
            initiated_by=getattr(domain_event, "initiated_by", None),
            at=domain_event.timestamp,
        )
        _add_changes(processing_event, ViewChanges(statement=[entry]))
        self._change_account(
            processing_event,
            account,
            "transaction_appended",
            transaction_id=_str_or_none(domain_event.transaction_id),
            amount=str(amount),
            entry=entry.to_json(),
        )

    @policy.register(BankAccount.ErrorRecorded)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._index_transaction_event(domain_event, processing_event)
        account = self._get_account(processing_event, domain_event.originator_id)
        if account is None:
            return
        message = FeedMessage(
            "error_recorded",
            {
                "account": account.to_json(),
                "transaction_id": _str_or_none(domain_event.transaction_id),
                "error": self.describe_error(domain_event.error, processing_event),
            },
            audience=account.audience,
        )
        _add_changes(processing_event, ViewChanges(feed=[message]))

    @policy.register(BankAccount.OverdraftLimitSet)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._update_account(
            domain_event,
            processing_event,
            "overdraft_limit_set",
            lambda _: {"overdraft_limit": domain_event.overdraft_limit},
        )

    @policy.register(BankAccount.Closed)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._update_account(
            domain_event,
            processing_event,
            "account_closed",
            lambda _: {"is_closed": True},
        )

    @policy.register(DepositFundsSaga.Created)
    @policy.register(WithdrawFundsSaga.Created)
    @policy.register(TransferFundsSaga.Created)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        kind = next(
            kind
            for saga_class, kind in SAGA_KINDS.items()
            if isinstance(domain_event, saga_class.Created)
        )
        transaction = TransactionView(
            id=domain_event.originator_id,
            kind=kind,
            debit_account_id=getattr(domain_event, "debit_account_id", None),
            credit_account_id=getattr(domain_event, "credit_account_id", None),
            amount=domain_event.amount,
            status="pending",
            error=None,
            created_at=domain_event.timestamp,
            updated_at=domain_event.timestamp,
            initiated_by=getattr(domain_event, "initiated_by", None),
        )
        self._change_transaction(
            processing_event, self._with_owners(processing_event, transaction)
        )

    @policy.register(AbortedTransaction.Recorded)
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        transaction = TransactionView(
            id=domain_event.transaction_id,
            kind=domain_event.kind,
            debit_account_id=domain_event.debit_account_id,
            credit_account_id=domain_event.credit_account_id,
            amount=domain_event.amount,
            status="failed",
            error=domain_event.reason,
            created_at=domain_event.timestamp,
            updated_at=domain_event.timestamp,
            initiated_by=getattr(domain_event, "initiated_by", None),
        )
        self._change_transaction(
            processing_event, self._with_owners(processing_event, transaction)
        )

    @policy.register(Saga.Succeeded)  # type: ignore[attr-defined]
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        self._finish_transaction(domain_event, processing_event, "succeeded", None)

    @policy.register(Saga.Errored)  # type: ignore[attr-defined]
    def _(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        error = self.describe_error(domain_event.error, processing_event)
        self._finish_transaction(domain_event, processing_event, "failed", error)

    def _index_transaction_event(
        self, domain_event: Any, processing_event: ProcessingEvent[UUID]
    ) -> None:
        """Notes where the event of a transaction is stored, for its timeline."""
        tracking: Tracking | None = getattr(self._page, "tracking", {}).get(
            (domain_event.originator_id, domain_event.originator_version)
        )
        if domain_event.transaction_id is None or tracking is None:
            return  # stored before transactions had ids, or not from a page
        event = TransactionEvent(
            transaction_id=domain_event.transaction_id,
            application=tracking.application_name,
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            position=tracking.notification_id,
            type=type(domain_event).__name__,
            timestamp=domain_event.timestamp,
        )
        _add_changes(processing_event, ViewChanges(transaction_events=[event]))

    def _update_account(
        self,
        domain_event: Any,
        processing_event: ProcessingEvent[UUID],
        message_type: str,
        changes: Callable[[AccountView], dict[str, Any]],
        **data: Any,
    ) -> None:
        account = self._get_account(processing_event, domain_event.originator_id)
        if account is None:  # pragma: no cover (Created always comes first)
            return
        account = replace(
            account, **changes(account), updated_at=domain_event.timestamp
        )
        self._change_account(processing_event, account, message_type, **data)

    def _finish_transaction(
        self,
        domain_event: Any,
        processing_event: ProcessingEvent[UUID],
        status: TransactionStatus,
        error: str | None,
    ) -> None:
        transaction = self._get_transaction(
            processing_event, domain_event.originator_id
        )
        if transaction is None:  # a refund saga: its transfer says how it ended
            return
        transaction = replace(
            transaction, status=status, error=error, updated_at=domain_event.timestamp
        )
        self._change_transaction(
            processing_event, self._with_owners(processing_event, transaction)
        )

    def _with_owners(
        self, processing_event: ProcessingEvent[UUID], transaction: TransactionView
    ) -> TransactionView:
        """The transaction with the owners of its accounts, where the views know
        them (an account opened later fills its side in: see _fill_in_owner)."""
        owners: dict[str, UserRef | None] = {}
        for side, account_id, owner in (
            ("debit_owner", transaction.debit_account_id, transaction.debit_owner),
            ("credit_owner", transaction.credit_account_id, transaction.credit_owner),
        ):
            if account_id is not None and owner is None:
                account = self._get_account(processing_event, account_id)
                if account is not None and account.owner is not None:
                    owners[side] = account.owner
        return replace(transaction, **owners) if owners else transaction  # type: ignore[arg-type]

    def _fill_in_owner(
        self, processing_event: ProcessingEvent[UUID], account_id: UUID, owner: UserRef
    ) -> None:
        """Gives the transactions seen before their account was opened its owner.

        Accounts and Sagas are followed apart, so a saga may come first; its
        message is sent again, now to the owner too.
        """
        pending = _pending_changes(processing_event)
        seen: dict[UUID, TransactionView] = {}
        if pending is not None:
            seen.update(
                (t.id, t)
                for t in pending.transactions
                if account_id in (t.debit_account_id, t.credit_account_id)
            )
        cursor: str | None = None
        while True:
            page, cursor = self.view.list_transactions(
                account_id, after=cursor, limit=500
            )
            for transaction in page:
                seen.setdefault(transaction.id, transaction)
            if cursor is None:
                break
        for transaction in seen.values():
            filled = replace(
                transaction,
                debit_owner=owner
                if transaction.debit_account_id == account_id
                else transaction.debit_owner,
                credit_owner=owner
                if transaction.credit_account_id == account_id
                else transaction.credit_owner,
            )
            if filled != transaction:
                self._change_transaction(processing_event, filled)

    def _account_ref(
        self, processing_event: ProcessingEvent[UUID], account_id: UUID
    ) -> AccountRef:
        account = self._get_account(processing_event, account_id)
        if account is None:
            return AccountRef(account_id)
        return AccountRef(account.id, account.name, account.owner)

    @staticmethod
    def _change_account(
        processing_event: ProcessingEvent[UUID],
        account: AccountView,
        message_type: str,
        **data: Any,
    ) -> None:
        # With the balance: for the owner (and staff) only.
        message = FeedMessage(
            message_type,
            {"account": account.to_json(), **data},
            audience=account.audience,
        )
        _add_changes(processing_event, ViewChanges(accounts=[account], feed=[message]))

    @staticmethod
    def _change_transaction(
        processing_event: ProcessingEvent[UUID], transaction: TransactionView
    ) -> None:
        # No balances: for both accounts' owners (a payee sees who paid).
        message = FeedMessage(
            f"transaction_{transaction.status}",
            {"transaction": transaction.to_json()},
            audience=transaction.audience,
        )
        changes = ViewChanges(transactions=[transaction], feed=[message])
        _add_changes(processing_event, changes)

    def _get_account(
        self, processing_event: ProcessingEvent[UUID], account_id: UUID
    ) -> AccountView | None:
        changes = _pending_changes(processing_event)
        pending = changes.get_account(account_id) if changes else None
        if pending is not None:
            return pending
        rows = self._rows
        if rows is None:
            return self.view.get_account(account_id)
        account = rows.accounts.get(account_id)
        if account is None:
            account = self.view.get_account(account_id)
            if account is not None:
                rows.accounts.put(account_id, account)
        return account

    def _get_transaction(
        self, processing_event: ProcessingEvent[UUID], transaction_id: UUID
    ) -> TransactionView | None:
        changes = _pending_changes(processing_event)
        pending = changes.get_transaction(transaction_id) if changes else None
        if pending is not None:
            return pending
        rows = self._rows
        known = None if rows is None else rows.transactions.get(transaction_id)
        return known or self.view.get_transaction(transaction_id)


#: How many accounts and transactions RecordedRows keeps.
RECORDED_ROWS = 10_000


class LRU(Generic[K, V]):
    """A bounded mapping that forgets the least recently used key first."""

    def __init__(self, size: int) -> None:
        """Keeps up to size keys."""
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value, or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Keeps the value, forgetting the oldest key if full."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forgets everything."""
        self._items.clear()


class RecordedRows:
    """The account and transaction rows the interface recorded last, as it wrote
    them, so the next events read them from memory rather than from the view.

    Kept only by an interface that is the view's one writer (remember_positions):
    rows are put after their commit, and everything is forgotten when a write
    fails. The view stays the truth; this saves a read transaction per row.
    """

    def __init__(self, size: int = RECORDED_ROWS) -> None:
        """Empty; up to size rows of each kind."""
        self.accounts: LRU[UUID, AccountView] = LRU(size)
        self.transactions: LRU[UUID, TransactionView] = LRU(size)

    def update(self, changes: ViewChanges) -> None:
        """Keeps the rows of committed changes."""
        for account in changes.accounts:
            self.accounts.put(account.id, account)
        for transaction in changes.transactions:
            self.transactions.put(transaction.id, transaction)

    def clear(self) -> None:
        """Forgets every row."""
        self.accounts.clear()
        self.transactions.clear()


def _pending_changes(processing_event: ProcessingEvent[UUID]) -> ViewChanges | None:
    changes: ViewChanges | None = processing_event.saved_kwargs.get("view_changes")
    return changes


def _add_changes(processing_event: ProcessingEvent[UUID], changes: ViewChanges) -> None:
    """Records the changes with the event, after those of earlier events in a batch."""
    pending = _pending_changes(processing_event)
    if pending is None:
        processing_event.collect_events(view_changes=changes)
    else:
        pending.extend(changes)


def _str_or_none(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _entry_kind(domain_event: Any, counterparty_id: UUID | None) -> EntryKind:
    """What a statement line shows, from the event alone (so a rebuild, which reads
    Accounts before Sagas, writes the same lines as the live view)."""
    if getattr(domain_event, "is_refund", False):
        return "refund"
    if counterparty_id is not None:
        return "transfer"
    return "deposit" if domain_event.amount > 0 else "withdrawal"

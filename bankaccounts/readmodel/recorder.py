"""The read model recorder interface, and the read model in memory (POPO)."""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bankaccounts.readmodel import paging
from bankaccounts.readmodel.views import (
    AccountRef,
    AccountView,
    FeedEntry,
    FeedMessage,
    StatementEntry,
    TransactionEvent,
    TransactionView,
    ViewChanges,
    sort_name,
)
from bankaccounts.system.followers import FollowerRecorder, POPOFollowerRecorder

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from uuid import UUID

    from eventsourcing.persistence import StoredEvent

    from bankaccounts.readmodel.views import AccountSort

#: The shape of the view's tables: a store whose view has an older one must be
#: rebuilt (`bankaccounts rebuild-read-model`). 1: before owners and statements.
READ_MODEL_VERSION = 2


class ReadModelOutdatedError(RuntimeError):
    """The read model's tables were made by an older version of the bank."""

    def __init__(self, where: str, version: int) -> None:
        """Says where, and what to do."""
        super().__init__(
            f"the read model in {where} was made by an older version of the bank "
            f"(read model version {version}, this one needs {READ_MODEL_VERSION}): "
            "stop the server (or the Interface worker) and run "
            "`bankaccounts rebuild-read-model`, which makes it again from the events"
        )
        self.version = version


class ReadModelRecorder(FollowerRecorder, ABC):
    """A process recorder that also keeps the views, the statements and the feed."""

    def check_schema(self) -> None:
        """Raises ReadModelOutdatedError if the view's tables are of an older shape."""
        version = self.schema_version()
        if version is not None and version < READ_MODEL_VERSION:
            raise ReadModelOutdatedError(self.describe_store(), version)

    def schema_version(self) -> int | None:
        """The version of the view's tables (None: there are none yet)."""
        return None

    def describe_store(self) -> str:
        """Where the view is kept, in words."""
        return "memory"

    @abstractmethod
    def get_account(self, account_id: UUID) -> AccountView | None:
        """The account, or None."""

    @abstractmethod
    def list_accounts(
        self,
        *,
        owner_id: UUID | None = None,
        search: str | None = None,
        sort: AccountSort = "opened",
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[AccountView], str | None]:
        """A page of accounts (of one owner, matching a search), and the next
        page's cursor or None.

        Orders: "opened" oldest first, "name" by case-folded name, "balance"
        largest first; ties by id. The search matches a name containing it
        (case-insensitive) or an id starting with its hex digits.
        """

    @abstractmethod
    def get_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The transaction, or None."""

    @abstractmethod
    def list_transactions(
        self,
        account_id: UUID | None = None,
        *,
        viewer_id: UUID | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> tuple[list[TransactionView], str | None]:
        """A page of transactions, newest first (of one account; touching the
        viewer's accounts), and the next page's cursor or None."""

    @abstractmethod
    def select_statement(
        self,
        account_id: UUID,
        *,
        after: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[StatementEntry], str | None]:
        """A page of the account's statement, newest first (since inclusive, until
        exclusive), and the next page's cursor or None."""

    @abstractmethod
    def select_feed(
        self, after: int, limit: int = 500, viewer_id: UUID | None = None
    ) -> list[FeedMessage]:
        """Feed messages with positions greater than after, in order (all of them,
        or those whose audience holds the viewer)."""

    @abstractmethod
    def max_feed_position(self) -> int:
        """The last position in the feed (0 if empty)."""

    @abstractmethod
    def select_transaction_events(
        self, transaction_ids: Sequence[UUID]
    ) -> list[TransactionEvent]:
        """The indexed upstream events of these transactions, by position."""

    @abstractmethod
    def select_transaction_feed(
        self, transaction_ids: Sequence[UUID]
    ) -> list[FeedEntry]:
        """The feed messages about these transactions, in feed order."""


def about_transactions(
    messages: Iterable[FeedMessage],
) -> list[tuple[UUID, FeedMessage]]:
    """The messages about a transaction, each with the transaction's id: the rows
    of the feed's index by transaction."""
    return [
        (transaction_id, message)
        for message in messages
        if (transaction_id := message.transaction_id) is not None
    ]


def now() -> datetime:
    """When feed entries are written: the recorders' clock, in UTC."""
    return datetime.now(UTC)


class POPOReadModelRecorder(POPOFollowerRecorder, ReadModelRecorder):
    """The read model in memory."""

    def __init__(self) -> None:
        """Starts empty."""
        super().__init__()
        self._accounts: dict[UUID, AccountView] = {}
        self._transactions: dict[UUID, TransactionView] = {}
        self._statements: dict[UUID, list[StatementEntry]] = defaultdict(list)
        self._feed: list[FeedMessage] = []
        self._audiences: dict[UUID, list[int]] = defaultdict(list)
        self._transaction_events: dict[UUID, list[TransactionEvent]] = defaultdict(list)
        self._feed_transactions: dict[UUID, list[tuple[int, datetime]]] = defaultdict(
            list
        )

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._update_table(stored_events, **kwargs)
        changes: ViewChanges | None = kwargs.get("view_changes")
        if changes:
            for account in changes.accounts:
                self._accounts[account.id] = account
            for transaction in changes.transactions:
                self._transactions[transaction.id] = transaction
            for entry in changes.statement:
                entries = self._statements[entry.account_id]
                if entry.seq != len(entries) + 1:  # as a primary key would
                    msg = f"statement entry {entry.seq} out of order"
                    raise ValueError(msg)
                entries.append(replace(entry, counterparty=_ref(entry)))
            for message in changes.feed:
                message.position = len(self._feed) + 1
                self._feed.append(replace(message, data=dict(message.data)))
                for user_id in message.audience:
                    self._audiences[user_id].append(message.position)
            at = now()
            for transaction_id, message in about_transactions(changes.feed):
                self._feed_transactions[transaction_id].append((message.position, at))
            for event in changes.transaction_events:
                self._transaction_events[event.transaction_id].append(event)
        return notification_ids

    def get_account(self, account_id: UUID) -> AccountView | None:
        """The account, or None."""
        with self._database_lock:
            return self._accounts.get(account_id)

    def list_accounts(
        self,
        *,
        owner_id: UUID | None = None,
        search: str | None = None,
        sort: AccountSort = "opened",
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[AccountView], str | None]:
        """A page of accounts, and the next page's cursor or None."""
        paging.check_sort(sort)
        paging.check_limit(limit)
        start = paging.read_account_cursor(sort, after) if after else None
        key = _ACCOUNT_KEYS[sort]
        with self._database_lock:
            rows = [
                a
                for a in self._accounts.values()
                if (
                    owner_id is None or (a.owner is not None and a.owner.id == owner_id)
                )
                and _matches(a, search)
            ]
        rows.sort(key=key)
        if start is not None:
            rows = [a for a in rows if key(a) > _account_start_key(sort, start)]
        return paging.page(
            rows[: limit + 1], limit, lambda a: paging.account_cursor(sort, a)
        )

    def get_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The transaction, or None."""
        with self._database_lock:
            return self._transactions.get(transaction_id)

    def list_transactions(
        self,
        account_id: UUID | None = None,
        *,
        viewer_id: UUID | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> tuple[list[TransactionView], str | None]:
        """A page of transactions, newest first, and the next page's cursor."""
        paging.check_limit(limit)
        start = paging.read_transaction_cursor(after) if after else None
        with self._database_lock:
            rows = [
                t
                for t in self._transactions.values()
                if (
                    account_id is None
                    or account_id in (t.debit_account_id, t.credit_account_id)
                )
                and (viewer_id is None or viewer_id in t.audience)
                and (start is None or (t.created_at, t.id) < start)
            ]
        rows.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return paging.page(rows[: limit + 1], limit, paging.transaction_cursor)

    def select_statement(
        self,
        account_id: UUID,
        *,
        after: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[StatementEntry], str | None]:
        """A page of the account's statement, newest first, and the next cursor."""
        paging.check_limit(limit)
        before = paging.read_statement_cursor(after) if after else paging.MAX_SEQ
        with self._database_lock:
            entries = self._statements.get(account_id, [])
            # Entries are in seq order, and so (a clock going back aside) in time.
            low = 0 if since is None else bisect.bisect_left(entries, since, key=_at)
            high = len(entries)
            if until is not None:
                high = bisect.bisect_left(entries, until, key=_at)
            high = min(high, before - 1)
            rows = entries[max(low, high - limit - 1) : high][::-1]
            rows = [replace(e, counterparty=self._counterparty(e)) for e in rows]
        return paging.page(rows, limit, paging.statement_cursor)

    def _counterparty(self, entry: StatementEntry) -> AccountRef | None:
        if entry.counterparty is None:
            return None
        account = self._accounts.get(entry.counterparty.id)
        if account is None:
            return AccountRef(entry.counterparty.id)
        return AccountRef(account.id, account.name, account.owner)

    def select_feed(
        self, after: int, limit: int = 500, viewer_id: UUID | None = None
    ) -> list[FeedMessage]:
        """Feed messages with positions greater than after, in order."""
        after = max(after, 0)
        with self._database_lock:
            if viewer_id is None:
                selected = self._feed[after : after + limit]
            else:
                positions = self._audiences.get(viewer_id, [])
                first = bisect.bisect_right(positions, after)
                selected = [self._feed[p - 1] for p in positions[first : first + limit]]
            return [replace(m, data=dict(m.data)) for m in selected]

    def max_feed_position(self) -> int:
        """The last position in the feed (0 if empty)."""
        with self._database_lock:
            return len(self._feed)

    def select_transaction_events(
        self, transaction_ids: Sequence[UUID]
    ) -> list[TransactionEvent]:
        """The indexed upstream events of these transactions, by position."""
        with self._database_lock:
            events = [
                event
                for transaction_id in dict.fromkeys(transaction_ids)
                for event in self._transaction_events.get(transaction_id, ())
            ]
        return sorted(events, key=lambda e: (e.application, e.position))

    def select_transaction_feed(
        self, transaction_ids: Sequence[UUID]
    ) -> list[FeedEntry]:
        """The feed messages about these transactions, in feed order."""
        with self._database_lock:
            entries = [
                FeedEntry(
                    transaction_id,
                    at,
                    replace(
                        self._feed[position - 1],
                        data=dict(self._feed[position - 1].data),
                    ),
                )
                for transaction_id in dict.fromkeys(transaction_ids)
                for position, at in self._feed_transactions.get(transaction_id, ())
            ]
        return sorted(entries, key=lambda e: e.message.position)


def _ref(entry: StatementEntry) -> AccountRef | None:
    # Stored as the id alone: name and owner are read from the account's view.
    return None if entry.counterparty is None else AccountRef(entry.counterparty.id)


def _at(entry: StatementEntry) -> datetime:
    return entry.at


def _matches(account: AccountView, search: str | None) -> bool:
    if not search or not search.strip():
        return True
    if sort_name(search.strip()) in account.sort_name:
        return True
    bounds = paging.hex_prefix_range(search)
    return bounds is not None and bounds[0] <= account.id.hex <= bounds[1]


_ACCOUNT_KEYS: dict[str, Callable[[AccountView], Any]] = {
    "opened": lambda a: (a.opened_at, a.id),
    "name": lambda a: (a.sort_name, a.id),
    # Largest first: the negated balance ascending, then the id descending.
    "balance": lambda a: (-a.balance, _Descending(a.id)),
}


def _account_start_key(sort: AccountSort, start: tuple[Any, UUID]) -> Any:
    value, account_id = start
    if sort == "balance":
        return (-value, _Descending(account_id))
    return (value, account_id)


class _Descending:
    """An id that sorts backwards (the balance order breaks ties by id, descending)."""

    __slots__ = ("id",)

    def __init__(self, id: UUID) -> None:  # noqa: A002
        self.id = id

    def __lt__(self, other: _Descending) -> bool:
        return self.id > other.id

    def __gt__(self, other: _Descending) -> bool:
        return self.id < other.id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

"""The read model recorder interface, and the read model in memory (POPO)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bankaccounts.system.followers import FollowerRecorder, POPOFollowerRecorder

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from eventsourcing.persistence import StoredEvent

from bankaccounts.readmodel.views import (
    AccountView,
    FeedMessage,
    TransactionView,
    ViewChanges,
)


class ReadModelRecorder(FollowerRecorder, ABC):
    """A process recorder that also keeps the views and the feed."""

    @abstractmethod
    def get_account(self, account_id: UUID) -> AccountView | None:
        """The account, or None."""

    @abstractmethod
    def list_accounts(self) -> list[AccountView]:
        """All accounts, oldest first."""

    @abstractmethod
    def get_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The transaction, or None."""

    @abstractmethod
    def list_transactions(
        self, account_id: UUID | None = None, limit: int = 50
    ) -> list[TransactionView]:
        """The most recent transactions, newest first, optionally of one account."""

    @abstractmethod
    def select_feed(self, after: int, limit: int = 500) -> list[FeedMessage]:
        """Feed messages with positions greater than after, in order."""

    @abstractmethod
    def max_feed_position(self) -> int:
        """The last position in the feed (0 if empty)."""


class POPOReadModelRecorder(POPOFollowerRecorder, ReadModelRecorder):
    """The read model in memory."""

    def __init__(self) -> None:
        """Starts empty."""
        super().__init__()
        self._accounts: dict[UUID, AccountView] = {}
        self._transactions: dict[UUID, TransactionView] = {}
        self._feed: list[FeedMessage] = []

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
            for message in changes.feed:
                message.position = len(self._feed) + 1
                self._feed.append(replace(message, data=dict(message.data)))
        return notification_ids

    def get_account(self, account_id: UUID) -> AccountView | None:
        """The account, or None."""
        with self._database_lock:
            return self._accounts.get(account_id)

    def list_accounts(self) -> list[AccountView]:
        """All accounts, oldest first."""
        with self._database_lock:
            return sorted(self._accounts.values(), key=lambda a: a.opened_at)

    def get_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The transaction, or None."""
        with self._database_lock:
            return self._transactions.get(transaction_id)

    def list_transactions(
        self, account_id: UUID | None = None, limit: int = 50
    ) -> list[TransactionView]:
        """The most recent transactions, newest first, optionally of one account."""
        with self._database_lock:
            selected = [
                t
                for t in self._transactions.values()
                if account_id is None
                or account_id in (t.debit_account_id, t.credit_account_id)
            ]
        selected.sort(key=lambda t: t.created_at, reverse=True)
        return selected[:limit]

    def select_feed(self, after: int, limit: int = 500) -> list[FeedMessage]:
        """Feed messages with positions greater than after, in order."""
        with self._database_lock:
            return [
                FeedMessage(m.type, dict(m.data), m.position)
                for m in self._feed[max(after, 0) : max(after, 0) + limit]
            ]

    def max_feed_position(self) -> int:
        """The last position in the feed (0 if empty)."""
        with self._database_lock:
            return len(self._feed)

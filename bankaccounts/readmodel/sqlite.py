"""The interface's read model in SQLite, written with the tracking record."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from bankaccounts.readmodel import (
    AccountView,
    FeedMessage,
    ReadModelRecorder,
    TransactionView,
    ViewChanges,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore

    from bankaccounts.readmodel import TransactionKind, TransactionStatus

from bankaccounts.system.sqlite import SQLiteFollowerRecorder

#: The view's tables: what rebuild-read-model drops and makes again.
VIEW_TABLES = ("view_accounts", "view_transactions", "view_feed")


VIEW_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS view_accounts ("
    "id TEXT PRIMARY KEY, name TEXT, balance TEXT NOT NULL, "
    "overdraft_limit TEXT NOT NULL, is_closed INTEGER NOT NULL, "
    "opened_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS view_accounts_opened ON view_accounts (opened_at)",
    "CREATE TABLE IF NOT EXISTS view_transactions ("
    "id TEXT PRIMARY KEY, kind TEXT NOT NULL, debit_account_id TEXT, "
    "credit_account_id TEXT, amount TEXT NOT NULL, status TEXT NOT NULL, "
    "error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS view_transactions_created "
    "ON view_transactions (created_at)",
    "CREATE INDEX IF NOT EXISTS view_transactions_debit "
    "ON view_transactions (debit_account_id, created_at)",
    "CREATE INDEX IF NOT EXISTS view_transactions_credit "
    "ON view_transactions (credit_account_id, created_at)",
    "CREATE TABLE IF NOT EXISTS view_feed ("
    "position INTEGER PRIMARY KEY AUTOINCREMENT, message TEXT NOT NULL)",
)


class SQLiteReadModelRecorder(SQLiteFollowerRecorder, ReadModelRecorder):
    """Keeps accounts, transactions and the feed in the interface's SQLite file."""

    def __init__(
        self, datastore: SQLiteDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        """Prepares the statements."""
        super().__init__(datastore, events_table_name=events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        """Adds the view tables to the library's tables."""
        return [*super().construct_create_table_statements(), *VIEW_STATEMENTS]

    def reset_view(self, upstreams: Sequence[str]) -> None:
        """Drops the view's tables and makes them again, empty, in one transaction.

        The tracking positions in the upstreams and their failures are forgotten
        with them, so following the upstreams again rebuilds the view from their
        first events. Feed positions carry on from the last one given: a client
        that remembers a position never gets another message under it.
        """
        marks = ",".join("?" for _ in upstreams)
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "SELECT name FROM sqlite_master WHERE type='table' "
                "AND name IN ('view_feed', 'sqlite_sequence')"
            )
            present = {row[0] for row in c.fetchall()}
            last = 0
            if "view_feed" in present:
                c.execute("SELECT MAX(position) FROM view_feed")
                last = int(c.fetchone()[0] or 0)
            if "sqlite_sequence" in present:
                c.execute("SELECT seq FROM sqlite_sequence WHERE name='view_feed'")
                row = c.fetchone()
                last = max(last, int(row[0]) if row else 0)
            for table in VIEW_TABLES:
                c.execute(f"DROP TABLE IF EXISTS {table}")
            # All of them (IF NOT EXISTS): an older file may lack the failures.
            for statement in self.construct_create_table_statements():
                c.execute(statement)
            if last:
                c.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('view_feed', ?)",
                    (last,),
                )
            c.execute(
                f"DELETE FROM tracking WHERE application_name IN ({marks})",
                tuple(upstreams),
            )
            c.execute(
                f"DELETE FROM follower_failures WHERE upstream IN ({marks})",
                tuple(upstreams),
            )

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._insert_events(c, stored_events, **kwargs)
        changes: ViewChanges | None = kwargs.get("view_changes")
        if changes:
            for account in changes.accounts:
                c.execute(
                    "INSERT OR REPLACE INTO view_accounts VALUES (?,?,?,?,?,?,?)",
                    (
                        account.id.hex,
                        account.name,
                        str(account.balance),
                        str(account.overdraft_limit),
                        int(account.is_closed),
                        account.opened_at.isoformat(),
                        account.updated_at.isoformat(),
                    ),
                )
            for t in changes.transactions:
                c.execute(
                    "INSERT OR REPLACE INTO view_transactions "
                    "VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        t.id.hex,
                        t.kind,
                        t.debit_account_id.hex if t.debit_account_id else None,
                        t.credit_account_id.hex if t.credit_account_id else None,
                        str(t.amount),
                        t.status,
                        t.error,
                        t.created_at.isoformat(),
                        t.updated_at.isoformat(),
                    ),
                )
            for message in changes.feed:
                c.execute(
                    "INSERT INTO view_feed (message) VALUES (?)", (message.encode(),)
                )
                message.position = c.lastrowid
        return notification_ids

    def _select(self, statement: str, params: Sequence[object] = ()) -> list[Any]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return cast("list[Any]", c.fetchall())

    def get_account(self, account_id: UUID) -> AccountView | None:
        """The account, or None."""
        rows = self._select("SELECT * FROM view_accounts WHERE id=?", (account_id.hex,))
        return _account(rows[0]) if rows else None

    def list_accounts(self) -> list[AccountView]:
        """All accounts, oldest first."""
        rows = self._select("SELECT * FROM view_accounts ORDER BY opened_at")
        return [_account(row) for row in rows]

    def get_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The transaction, or None."""
        rows = self._select(
            "SELECT * FROM view_transactions WHERE id=?", (transaction_id.hex,)
        )
        return _transaction(rows[0]) if rows else None

    def list_transactions(
        self, account_id: UUID | None = None, limit: int = 50
    ) -> list[TransactionView]:
        """The most recent transactions, newest first, optionally of one account."""
        if account_id is None:
            rows = self._select(
                "SELECT * FROM view_transactions ORDER BY created_at DESC LIMIT ?",
                (limit,),
            )
        else:
            rows = self._select(
                "SELECT * FROM view_transactions WHERE debit_account_id=? "
                "UNION SELECT * FROM view_transactions WHERE credit_account_id=? "
                "ORDER BY created_at DESC LIMIT ?",
                (account_id.hex, account_id.hex, limit),
            )
        return [_transaction(row) for row in rows]

    def select_feed(self, after: int, limit: int = 500) -> list[FeedMessage]:
        """Feed messages with positions greater than after, in order."""
        rows = self._select(
            "SELECT position, message FROM view_feed WHERE position>? "
            "ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [FeedMessage.decode(row[0], row[1]) for row in rows]

    def max_feed_position(self) -> int:
        """The last position in the feed (0 if empty)."""
        rows = self._select("SELECT MAX(position) FROM view_feed")
        return int(rows[0][0] or 0)


def _account(row: sqlite3.Row) -> AccountView:
    return AccountView(
        id=UUID(row["id"]),
        name=row["name"],
        balance=Decimal(row["balance"]),
        overdraft_limit=Decimal(row["overdraft_limit"]),
        is_closed=bool(row["is_closed"]),
        opened_at=datetime.fromisoformat(row["opened_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _transaction(row: sqlite3.Row) -> TransactionView:
    return TransactionView(
        id=UUID(row["id"]),
        kind=cast("TransactionKind", row["kind"]),
        debit_account_id=UUID(row["debit_account_id"])
        if row["debit_account_id"]
        else None,
        credit_account_id=UUID(row["credit_account_id"])
        if row["credit_account_id"]
        else None,
        amount=Decimal(row["amount"]),
        status=cast("TransactionStatus", row["status"]),
        error=row["error"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )

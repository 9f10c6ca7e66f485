"""The interface's read model on MySQL or MariaDB, written with the tracking record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from sqlalchemy import text

from bankaccounts.readmodel import (
    AccountView,
    FeedMessage,
    ReadModelRecorder,
    TransactionView,
    ViewChanges,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from eventsourcing.persistence import StoredEvent
    from eventsourcing_sqlalchemy.datastore import SQLAlchemyDatastore
    from sqlalchemy.orm import Session

    from bankaccounts.readmodel import TransactionKind, TransactionStatus

from bankaccounts.system.mysql import (
    TABLE_OPTIONS,
    MySQLFollowerRecorder,
    _aware,
    _hex_or_none,
    _utc,
    _uuid_or_none,
)

ACCOUNT_COLUMNS = "id, name, balance, overdraft_limit, is_closed, opened_at, updated_at"


TRANSACTION_COLUMNS = (
    "id, kind, debit_account_id, credit_account_id, amount, status, error, "
    "created_at, updated_at"
)


class MySQLReadModelRecorder(MySQLFollowerRecorder, ReadModelRecorder):
    """Keeps accounts, transactions and the feed in tables named for the application."""

    def __init__(
        self,
        datastore: SQLAlchemyDatastore,
        *,
        events_table_name: str,
        tracking_table_name: str,
        schema_name: str | None = None,
    ) -> None:
        """Names the view tables after the application's events table."""
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
            schema_name=schema_name,
        )
        self.accounts_table = f"{self.prefix}_accounts"
        self.transactions_table = f"{self.prefix}_transactions"
        self.feed_table = f"{self.prefix}_feed"
        money = "DECIMAL(20,2) NOT NULL"
        self.create_statements += [
            f"CREATE TABLE IF NOT EXISTS {self.accounts_table} ("
            f"id CHAR(32) NOT NULL PRIMARY KEY, name TEXT, balance {money}, "
            f"overdraft_limit {money}, is_closed BOOLEAN NOT NULL, "
            "opened_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL, "
            f"INDEX {self.accounts_table}_opened (opened_at)) {TABLE_OPTIONS}",
            f"CREATE TABLE IF NOT EXISTS {self.transactions_table} ("
            "id CHAR(32) NOT NULL PRIMARY KEY, kind VARCHAR(16) NOT NULL, "
            f"debit_account_id CHAR(32), credit_account_id CHAR(32), amount {money}, "
            "status VARCHAR(16) NOT NULL, error TEXT, "
            "created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL, "
            f"INDEX {self.transactions_table}_created (created_at), "
            f"INDEX {self.transactions_table}_debit (debit_account_id, created_at), "
            f"INDEX {self.transactions_table}_credit (credit_account_id, created_at)"
            f") {TABLE_OPTIONS}",
            # AUTO_INCREMENT: positions handed out under the application's lock
            # (see _insert_stored_events), so they increase in commit order.
            f"CREATE TABLE IF NOT EXISTS {self.feed_table} ("
            "position BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            f"message MEDIUMTEXT NOT NULL) {TABLE_OPTIONS}",
        ]

    def reset_view(self, upstreams: Sequence[str]) -> None:
        """Empties the view's tables, in one transaction.

        The tracking positions in the upstreams and their failures are forgotten
        with them, so following the upstreams again rebuilds the view from their
        first events. Feed positions carry on from the last one given (DELETE keeps
        the AUTO_INCREMENT counter): a client that remembers a position never gets
        another message under it. Rows are deleted, not tables dropped, because
        MySQL commits before any DROP or CREATE.
        """
        self.create_table()
        upstream_names = {f"u{i}": name for i, name in enumerate(upstreams)}
        marks = ",".join(f":{key}" for key in upstream_names) or "NULL"
        with self.transaction(commit=True) as session:
            # Tracking rows before the application's lock, as a page locks them.
            session.execute(
                text(
                    f"DELETE FROM {self.tracking_table_name} "
                    f"WHERE application_name IN ({marks})"
                ),
                upstream_names,
            )
            session.execute(
                text(f"DELETE FROM {self.failures_table} WHERE upstream IN ({marks})"),
                upstream_names,
            )
            self.lock_application(session)
            for table in (self.accounts_table, self.transactions_table):
                session.execute(text(f"DELETE FROM {table}"))
            session.execute(text(f"DELETE FROM {self.feed_table}"))

    def _insert_stored_events(
        self, session: Session, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int]:
        # After the plugin's insert, which took the application's lock: the feed's
        # positions are then handed out in the order the pages commit.
        notification_ids = super()._insert_stored_events(
            session, stored_events, **kwargs
        )
        changes: ViewChanges | None = kwargs.get("view_changes")
        if changes:
            self._write_changes(session, changes)
        return notification_ids

    def _write_changes(self, session: Session, changes: ViewChanges) -> None:
        # One statement per table for the whole page (PyMySQL sends an executemany
        # of an INSERT as one multi-row statement).
        if changes.accounts:
            session.execute(
                text(
                    f"INSERT INTO {self.accounts_table} ({ACCOUNT_COLUMNS}) VALUES "
                    "(:id,:name,:balance,:overdraft_limit,:is_closed,:opened_at,"
                    ":updated_at) ON DUPLICATE KEY UPDATE name=VALUES(name), "
                    "balance=VALUES(balance), "
                    "overdraft_limit=VALUES(overdraft_limit), "
                    "is_closed=VALUES(is_closed), updated_at=VALUES(updated_at)"
                ),
                [
                    {
                        "id": a.id.hex,
                        "name": a.name,
                        "balance": a.balance,
                        "overdraft_limit": a.overdraft_limit,
                        "is_closed": a.is_closed,
                        "opened_at": _utc(a.opened_at),
                        "updated_at": _utc(a.updated_at),
                    }
                    for a in changes.accounts
                ],
            )
        if changes.transactions:
            session.execute(
                text(
                    f"INSERT INTO {self.transactions_table} ({TRANSACTION_COLUMNS}) "
                    "VALUES (:id,:kind,:debit,:credit,:amount,:status,:error,"
                    ":created_at,:updated_at) ON DUPLICATE KEY UPDATE "
                    "status=VALUES(status), error=VALUES(error), "
                    "updated_at=VALUES(updated_at)"
                ),
                [
                    {
                        "id": t.id.hex,
                        "kind": t.kind,
                        "debit": _hex_or_none(t.debit_account_id),
                        "credit": _hex_or_none(t.credit_account_id),
                        "amount": t.amount,
                        "status": t.status,
                        "error": t.error,
                        "created_at": _utc(t.created_at),
                        "updated_at": _utc(t.updated_at),
                    }
                    for t in changes.transactions
                ],
            )
        if changes.feed:
            self._append_feed(session, changes.feed)

    def _append_feed(self, session: Session, messages: Sequence[FeedMessage]) -> None:
        # One multi-row INSERT: its rows take increasing positions in their order.
        # They are read back from LAST_INSERT_ID() (the first of them), which does
        # not assume consecutive ids (auto_increment_increment may be above 1).
        values = ",".join(f"(:m{i})" for i in range(len(messages)))
        session.execute(
            text(f"INSERT INTO {self.feed_table} (message) VALUES {values}"),
            {f"m{i}": message.encode() for i, message in enumerate(messages)},
        )
        positions = [
            int(row[0])
            for row in session.execute(
                text(
                    f"SELECT position FROM {self.feed_table} "
                    "WHERE position>=LAST_INSERT_ID() ORDER BY position LIMIT :n"
                ),
                {"n": len(messages)},
            )
        ]
        if len(positions) != len(messages):  # pragma: no cover
            msg = "feed insert returned the wrong number of positions"
            raise RuntimeError(msg)
        for message, position in zip(messages, positions, strict=True):
            message.position = position

    def get_account(self, account_id: UUID) -> AccountView | None:
        """The account, or None."""
        rows = self._select(
            f"SELECT {ACCOUNT_COLUMNS} FROM {self.accounts_table} WHERE id=:id",
            {"id": account_id.hex},
        )
        return _account(rows[0]) if rows else None

    def list_accounts(self) -> list[AccountView]:
        """All accounts, oldest first."""
        rows = self._select(
            f"SELECT {ACCOUNT_COLUMNS} FROM {self.accounts_table} ORDER BY opened_at"
        )
        return [_account(row) for row in rows]

    def get_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The transaction, or None."""
        rows = self._select(
            f"SELECT {TRANSACTION_COLUMNS} FROM {self.transactions_table} WHERE id=:id",
            {"id": transaction_id.hex},
        )
        return _transaction(rows[0]) if rows else None

    def list_transactions(
        self, account_id: UUID | None = None, limit: int = 50
    ) -> list[TransactionView]:
        """The most recent transactions, newest first, optionally of one account."""
        if account_id is None:
            rows = self._select(
                f"SELECT {TRANSACTION_COLUMNS} FROM {self.transactions_table} "
                "ORDER BY created_at DESC LIMIT :limit",
                {"limit": limit},
            )
        else:
            rows = self._select(
                f"SELECT {TRANSACTION_COLUMNS} FROM {self.transactions_table} "
                "WHERE debit_account_id=:id OR credit_account_id=:id "
                "ORDER BY created_at DESC LIMIT :limit",
                {"id": account_id.hex, "limit": limit},
            )
        return [_transaction(row) for row in rows]

    def select_feed(self, after: int, limit: int = 500) -> list[FeedMessage]:
        """Feed messages with positions greater than after, in order."""
        rows = self._select(
            f"SELECT position, message FROM {self.feed_table} WHERE position>:after "
            "ORDER BY position LIMIT :limit",
            {"after": after, "limit": limit},
        )
        return [
            FeedMessage.decode(int(row["position"]), row["message"]) for row in rows
        ]

    def max_feed_position(self) -> int:
        """The last position in the feed (0 if empty)."""
        rows = self._select(f"SELECT MAX(position) AS position FROM {self.feed_table}")
        return int(rows[0]["position"] or 0)


def _account(row: Mapping[Any, Any]) -> AccountView:
    return AccountView(
        id=UUID(row["id"]),
        name=row["name"],
        balance=row["balance"],
        overdraft_limit=row["overdraft_limit"],
        is_closed=bool(row["is_closed"]),
        opened_at=_aware(row["opened_at"]),
        updated_at=_aware(row["updated_at"]),
    )


def _transaction(row: Mapping[Any, Any]) -> TransactionView:
    return TransactionView(
        id=UUID(row["id"]),
        kind=cast("TransactionKind", row["kind"]),
        debit_account_id=_uuid_or_none(row["debit_account_id"]),
        credit_account_id=_uuid_or_none(row["credit_account_id"]),
        amount=row["amount"],
        status=cast("TransactionStatus", row["status"]),
        error=row["error"],
        created_at=_aware(row["created_at"]),
        updated_at=_aware(row["updated_at"]),
    )

"""The interface's read model in PostgreSQL, written with the tracking record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.utils import retry
from psycopg.sql import SQL, Composed, Identifier

from bankaccounts.readmodel import (
    AccountView,
    FeedMessage,
    ReadModelRecorder,
    TransactionView,
    ViewChanges,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from uuid import UUID

    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresDatastore
    from psycopg import Cursor
    from psycopg.rows import DictRow

    from bankaccounts.readmodel import TransactionKind, TransactionStatus

from bankaccounts.system.postgres import PostgresFollowerRecorder

ACCOUNT_COLUMNS = "id, name, balance, overdraft_limit, is_closed, opened_at, updated_at"


TRANSACTION_COLUMNS = (
    "id, kind, debit_account_id, credit_account_id, amount, status, error, "
    "created_at, updated_at"
)


class PostgresReadModelRecorder(PostgresFollowerRecorder, ReadModelRecorder):
    """Keeps accounts, transactions and the feed in tables named for the application."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        """Names the view tables after the application's events table."""
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        prefix = events_table_name.removesuffix("_events")
        self.accounts_table = f"{prefix}_accounts"
        self.transactions_table = f"{prefix}_transactions"
        self.feed_table = f"{prefix}_feed"
        # NOTIFY channels are per database, so the schema is part of the name.
        self.feed_channel = f"{datastore.schema}_{self.feed_table}"[:63]
        # What rebuild-read-model drops and makes again.
        self.view_create_statements: list[Composed] = []
        for statement in (
            "CREATE TABLE IF NOT EXISTS {schema}.{accounts} ("
            "id uuid PRIMARY KEY, name text, balance numeric(16,2) NOT NULL, "
            "overdraft_limit numeric(16,2) NOT NULL, is_closed boolean NOT NULL, "
            "opened_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)",
            "CREATE INDEX IF NOT EXISTS {accounts_opened} "
            "ON {schema}.{accounts} (opened_at)",
            "CREATE TABLE IF NOT EXISTS {schema}.{transactions} ("
            "id uuid PRIMARY KEY, kind text NOT NULL, debit_account_id uuid, "
            "credit_account_id uuid, amount numeric(16,2) NOT NULL, "
            "status text NOT NULL, error text, created_at timestamptz NOT NULL, "
            "updated_at timestamptz NOT NULL)",
            "CREATE INDEX IF NOT EXISTS {transactions_created} "
            "ON {schema}.{transactions} (created_at)",
            "CREATE INDEX IF NOT EXISTS {transactions_debit} "
            "ON {schema}.{transactions} (debit_account_id, created_at)",
            "CREATE INDEX IF NOT EXISTS {transactions_credit} "
            "ON {schema}.{transactions} (credit_account_id, created_at)",
            "CREATE TABLE IF NOT EXISTS {schema}.{feed} ("
            "position bigserial PRIMARY KEY, message text NOT NULL)",
        ):
            self.view_create_statements.append(self._sql(statement))
        self.sql_create_statements.extend(self.view_create_statements)

    def _sql(self, statement: str) -> Composed:
        return SQL(statement).format(
            schema=Identifier(self.datastore.schema),
            accounts=Identifier(self.accounts_table),
            transactions=Identifier(self.transactions_table),
            feed=Identifier(self.feed_table),
            accounts_opened=Identifier(f"{self.accounts_table}_opened"),
            transactions_created=Identifier(f"{self.transactions_table}_created"),
            transactions_debit=Identifier(f"{self.transactions_table}_debit"),
            transactions_credit=Identifier(f"{self.transactions_table}_credit"),
        )

    def reset_view(self, upstreams: Sequence[str]) -> None:
        """Drops the view's tables and makes them again, empty, in one transaction.

        The tracking positions in the upstreams and their failures are forgotten
        with them, so following the upstreams again rebuilds the view from their
        first events. Feed positions carry on from the last one given: a client
        that remembers a position never gets another message under it.
        """
        feed = f"{Identifier(self.datastore.schema).as_string()}."
        feed += Identifier(self.feed_table).as_string()
        with self.datastore.transaction(commit=True) as curs:
            # Behind a long read, fail rather than wait unseen.
            curs.execute("SET LOCAL lock_timeout = '10s'")
            curs.execute(
                "SELECT CASE WHEN to_regclass(%s) IS NULL THEN 0 ELSE coalesce("
                "pg_sequence_last_value(pg_get_serial_sequence(%s, 'position')), 0"
                ") END AS last",
                (feed, feed),
            )
            row = curs.fetchone()
            last = int(row["last"]) if row else 0
            curs.execute(
                self._sql(
                    "DROP TABLE IF EXISTS {schema}.{accounts}, "
                    "{schema}.{transactions}, {schema}.{feed}"
                )
            )
            for statement in self.view_create_statements:
                curs.execute(statement)
            if last:
                curs.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'position'), %s)",
                    (feed, last),
                )
            curs.execute(
                SQL("DELETE FROM {0}.{1} WHERE application_name = ANY(%s)").format(
                    Identifier(self.datastore.schema),
                    Identifier(self.tracking_table_name),
                ),
                (list(upstreams),),
            )
            curs.execute(
                self._failures_sql(
                    "DELETE FROM {schema}.{failures} WHERE upstream = ANY(%s)"
                ),
                (list(upstreams),),
            )

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        changes: ViewChanges | None = kwargs.get("view_changes")
        if not changes:
            return
        # One statement per table for the whole page of events (psycopg pipelines
        # executemany), not one round trip per row.
        if changes.accounts:
            curs.executemany(
                self._sql(
                    f"INSERT INTO {{schema}}.{{accounts}} ({ACCOUNT_COLUMNS}) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE SET "
                    "name=EXCLUDED.name, balance=EXCLUDED.balance, "
                    "overdraft_limit=EXCLUDED.overdraft_limit, "
                    "is_closed=EXCLUDED.is_closed, updated_at=EXCLUDED.updated_at"
                ),
                [
                    (
                        a.id,
                        a.name,
                        a.balance,
                        a.overdraft_limit,
                        a.is_closed,
                        a.opened_at,
                        a.updated_at,
                    )
                    for a in changes.accounts
                ],
            )
        if changes.transactions:
            curs.executemany(
                self._sql(
                    f"INSERT INTO {{schema}}.{{transactions}} ({TRANSACTION_COLUMNS}) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE "
                    "SET status=EXCLUDED.status, error=EXCLUDED.error, "
                    "updated_at=EXCLUDED.updated_at"
                ),
                [
                    (
                        t.id,
                        t.kind,
                        t.debit_account_id,
                        t.credit_account_id,
                        t.amount,
                        t.status,
                        t.error,
                        t.created_at,
                        t.updated_at,
                    )
                    for t in changes.transactions
                ],
            )
        if changes.feed:
            # One insert for all the messages; positions come back in their order.
            # On a cursor of its own: in pipeline mode, a cursor that an
            # executemany() above used may already hold that statement's last
            # result, and fetchall() would read it ("the last operation didn't
            # produce records (command status: INSERT 0 1)") instead of waiting
            # for this one's rows.
            with curs.connection.cursor() as feed_curs:
                feed_curs.execute(
                    self._sql(
                        "INSERT INTO {schema}.{feed} (message) "
                        "SELECT m FROM unnest(%s::text[]) WITH ORDINALITY AS t(m, i) "
                        "ORDER BY i RETURNING position"
                    ),
                    ([message.encode() for message in changes.feed],),
                )
                rows = feed_curs.fetchall()
            positions = sorted(int(row["position"]) for row in rows)
            if len(positions) != len(changes.feed):  # pragma: no cover
                msg = "feed insert returned the wrong number of positions"
                raise RuntimeError(msg)
            for message, position in zip(changes.feed, positions, strict=True):
                message.position = position
        if changes.feed:
            # Delivered when this transaction commits: web processes wake and read.
            curs.execute(SQL("NOTIFY {0}").format(Identifier(self.feed_channel)))

    # Like the library's own reads: a connection the server dropped is replaced.
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _select(self, statement: str, params: Sequence[object] = ()) -> list[DictRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._sql(statement), params)
            return curs.fetchall()

    def get_account(self, account_id: UUID) -> AccountView | None:
        """The account, or None."""
        rows = self._select(
            f"SELECT {ACCOUNT_COLUMNS} FROM {{schema}}.{{accounts}} WHERE id=%s",
            (account_id,),
        )
        return _account(rows[0]) if rows else None

    def list_accounts(self) -> list[AccountView]:
        """All accounts, oldest first."""
        rows = self._select(
            f"SELECT {ACCOUNT_COLUMNS} FROM {{schema}}.{{accounts}} ORDER BY opened_at"
        )
        return [_account(row) for row in rows]

    def get_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The transaction, or None."""
        rows = self._select(
            f"SELECT {TRANSACTION_COLUMNS} FROM {{schema}}.{{transactions}} "
            "WHERE id=%s",
            (transaction_id,),
        )
        return _transaction(rows[0]) if rows else None

    def list_transactions(
        self, account_id: UUID | None = None, limit: int = 50
    ) -> list[TransactionView]:
        """The most recent transactions, newest first, optionally of one account."""
        if account_id is None:
            rows = self._select(
                f"SELECT {TRANSACTION_COLUMNS} FROM {{schema}}.{{transactions}} "
                "ORDER BY created_at DESC LIMIT %s",
                (limit,),
            )
        else:
            rows = self._select(
                f"SELECT {TRANSACTION_COLUMNS} FROM {{schema}}.{{transactions}} "
                "WHERE debit_account_id=%s OR credit_account_id=%s "
                "ORDER BY created_at DESC LIMIT %s",
                (account_id, account_id, limit),
            )
        return [_transaction(row) for row in rows]

    def select_feed(self, after: int, limit: int = 500) -> list[FeedMessage]:
        """Feed messages with positions greater than after, in order."""
        rows = self._select(
            "SELECT position, message FROM {schema}.{feed} WHERE position>%s "
            "ORDER BY position LIMIT %s",
            (after, limit),
        )
        return [FeedMessage.decode(row["position"], row["message"]) for row in rows]

    def max_feed_position(self) -> int:
        """The last position in the feed (0 if empty)."""
        rows = self._select("SELECT MAX(position) AS position FROM {schema}.{feed}")
        return int(rows[0]["position"] or 0)


def _account(row: Mapping[str, Any]) -> AccountView:
    return AccountView(**row)


def _transaction(row: Mapping[str, Any]) -> TransactionView:
    return TransactionView(
        **{
            **row,
            "kind": cast("TransactionKind", row["kind"]),
            "status": cast("TransactionStatus", row["status"]),
        }
    )

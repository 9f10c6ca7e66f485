"""The interface's read model in PostgreSQL, written with the tracking record.

Names sort byte-wise (COLLATE "C"), as in the other stores; every keyset read has
its index, so a page costs the same wherever it is in the rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.utils import retry
from psycopg.sql import SQL, Composed, Identifier

from bankaccounts.domainmodel import UserRef
from bankaccounts.readmodel import paging
from bankaccounts.readmodel.recorder import (
    READ_MODEL_VERSION,
    ReadModelRecorder,
    about_transactions,
    now,
)
from bankaccounts.readmodel.views import (
    AccountRef,
    AccountView,
    FeedEntry,
    FeedMessage,
    StatementEntry,
    TransactionEvent,
    TransactionView,
    ViewChanges,
)
from bankaccounts.system.postgres import PostgresFollowerRecorder

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresDatastore
    from psycopg import Cursor
    from psycopg.rows import DictRow

    from bankaccounts.readmodel.views import (
        AccountSort,
        EntryKind,
        TransactionKind,
        TransactionStatus,
    )

ACCOUNT_COLUMNS = (
    "id, name, balance, overdraft_limit, is_closed, opened_at, updated_at, "
    "owner_id, owner_username, statement_seq, sort_name"
)
TRANSACTION_COLUMNS = (
    "id, kind, debit_account_id, credit_account_id, amount, status, error, "
    "created_at, updated_at, initiated_by_id, initiated_by_username, "
    "debit_owner_id, debit_owner_username, credit_owner_id, credit_owner_username"
)
STATEMENT_COLUMNS = (
    "account_id, seq, transaction_id, kind, amount, balance, counterparty_id, "
    "initiated_by_id, initiated_by_username, at"
)
TRANSACTION_EVENT_COLUMNS = (
    "transaction_id, application, originator_id, originator_version, position, "
    "type, timestamp"
)

VIEW_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS {schema}.{accounts} ("
    "id uuid PRIMARY KEY, name text, balance numeric(16,2) NOT NULL, "
    "overdraft_limit numeric(16,2) NOT NULL, is_closed boolean NOT NULL, "
    "opened_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, "
    "owner_id uuid, owner_username text, statement_seq bigint NOT NULL, "
    'sort_name text COLLATE "C" NOT NULL)',
    "CREATE INDEX IF NOT EXISTS {accounts_opened} "
    "ON {schema}.{accounts} (opened_at, id)",
    "CREATE INDEX IF NOT EXISTS {accounts_name} ON {schema}.{accounts} (sort_name, id)",
    "CREATE INDEX IF NOT EXISTS {accounts_balance} "
    "ON {schema}.{accounts} (balance, id)",
    "CREATE INDEX IF NOT EXISTS {accounts_owner_opened} "
    "ON {schema}.{accounts} (owner_id, opened_at, id)",
    "CREATE INDEX IF NOT EXISTS {accounts_owner_name} "
    "ON {schema}.{accounts} (owner_id, sort_name, id)",
    "CREATE INDEX IF NOT EXISTS {accounts_owner_balance} "
    "ON {schema}.{accounts} (owner_id, balance, id)",
    "CREATE TABLE IF NOT EXISTS {schema}.{transactions} ("
    "id uuid PRIMARY KEY, kind text NOT NULL, debit_account_id uuid, "
    "credit_account_id uuid, amount numeric(16,2) NOT NULL, "
    "status text NOT NULL, error text, created_at timestamptz NOT NULL, "
    "updated_at timestamptz NOT NULL, initiated_by_id uuid, "
    "initiated_by_username text, debit_owner_id uuid, debit_owner_username text, "
    "credit_owner_id uuid, credit_owner_username text)",
    "CREATE INDEX IF NOT EXISTS {transactions_created} "
    "ON {schema}.{transactions} (created_at, id)",
    "CREATE INDEX IF NOT EXISTS {transactions_debit} "
    "ON {schema}.{transactions} (debit_account_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS {transactions_credit} "
    "ON {schema}.{transactions} (credit_account_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS {transactions_debit_owner} "
    "ON {schema}.{transactions} (debit_owner_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS {transactions_credit_owner} "
    "ON {schema}.{transactions} (credit_owner_id, created_at, id)",
    "CREATE TABLE IF NOT EXISTS {schema}.{statement} ("
    "account_id uuid NOT NULL, seq bigint NOT NULL, transaction_id uuid, "
    "kind text NOT NULL, amount numeric(16,2) NOT NULL, "
    "balance numeric(16,2) NOT NULL, counterparty_id uuid, initiated_by_id uuid, "
    "initiated_by_username text, at timestamptz NOT NULL, "
    "PRIMARY KEY (account_id, seq))",
    "CREATE INDEX IF NOT EXISTS {statement_at} "
    "ON {schema}.{statement} (account_id, at)",
    "CREATE TABLE IF NOT EXISTS {schema}.{feed} ("
    "position bigserial PRIMARY KEY, message text NOT NULL, "
    "audience text NOT NULL DEFAULT '')",
    "CREATE TABLE IF NOT EXISTS {schema}.{audience} ("
    "user_id uuid NOT NULL, position bigint NOT NULL, "
    "PRIMARY KEY (user_id, position))",
    # A transaction's feed messages and upstream events, by its id (the timeline).
    "CREATE TABLE IF NOT EXISTS {schema}.{feed_transactions} ("
    "transaction_id uuid NOT NULL, position bigint NOT NULL, "
    "at timestamptz NOT NULL, PRIMARY KEY (transaction_id, position))",
    "CREATE TABLE IF NOT EXISTS {schema}.{transaction_events} ("
    "transaction_id uuid NOT NULL, application text NOT NULL, "
    "originator_id uuid NOT NULL, originator_version bigint NOT NULL, "
    "position bigint NOT NULL, type text NOT NULL, timestamp timestamptz NOT NULL, "
    "PRIMARY KEY (transaction_id, application, position))",
    "CREATE TABLE IF NOT EXISTS {schema}.{version} (version integer NOT NULL)",
    f"INSERT INTO {{schema}}.{{version}} (version) SELECT {READ_MODEL_VERSION} "
    "WHERE NOT EXISTS (SELECT 1 FROM {schema}.{version})",
)


class PostgresReadModelRecorder(PostgresFollowerRecorder, ReadModelRecorder):
    """Keeps accounts, transactions, statements and the feed in tables named for
    the application."""

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
        self.statement_table = f"{prefix}_statement"
        self.feed_table = f"{prefix}_feed"
        self.audience_table = f"{prefix}_feed_audience"
        self.feed_transactions_table = f"{prefix}_feed_transactions"
        self.transaction_events_table = f"{prefix}_transaction_events"
        self.version_table = f"{prefix}_view_version"
        self.view_tables = (
            self.accounts_table,
            self.transactions_table,
            self.statement_table,
            self.feed_table,
            self.audience_table,
            self.feed_transactions_table,
            self.transaction_events_table,
            self.version_table,
        )
        # NOTIFY channels are per database, so the schema is part of the name.
        self.feed_channel = f"{datastore.schema}_{self.feed_table}"[:63]
        # What rebuild-read-model drops and makes again.
        self.view_create_statements: list[Composed] = [
            self._sql(statement) for statement in VIEW_STATEMENTS
        ]
        self.sql_create_statements.extend(self.view_create_statements)

    def _sql(self, statement: str) -> Composed:
        accounts, transactions = self.accounts_table, self.transactions_table
        return SQL(statement).format(
            schema=Identifier(self.datastore.schema),
            accounts=Identifier(accounts),
            transactions=Identifier(transactions),
            statement=Identifier(self.statement_table),
            feed=Identifier(self.feed_table),
            audience=Identifier(self.audience_table),
            feed_transactions=Identifier(self.feed_transactions_table),
            transaction_events=Identifier(self.transaction_events_table),
            version=Identifier(self.version_table),
            **{
                name: Identifier(f"{table}_{suffix}")
                for name, table, suffix in (
                    ("accounts_opened", accounts, "opened"),
                    ("accounts_name", accounts, "name"),
                    ("accounts_balance", accounts, "balance"),
                    ("accounts_owner_opened", accounts, "owner_opened"),
                    ("accounts_owner_name", accounts, "owner_name"),
                    ("accounts_owner_balance", accounts, "owner_balance"),
                    ("transactions_created", transactions, "created"),
                    ("transactions_debit", transactions, "debit"),
                    ("transactions_credit", transactions, "credit"),
                    ("transactions_debit_owner", transactions, "debit_owner"),
                    ("transactions_credit_owner", transactions, "credit_owner"),
                    ("statement_at", self.statement_table, "at"),
                )
            },
        )

    def create_table(self) -> None:
        """Makes the tables, unless the view's are of an older shape (then raises
        ReadModelOutdatedError: rebuild-read-model makes them again)."""
        self.check_schema()
        super().create_table()

    def describe_store(self) -> str:
        """The schema."""
        return f"PostgreSQL schema {self.datastore.schema}"

    def schema_version(self) -> int | None:
        """The version of the view's tables (1 if they have no version)."""
        schema = self.datastore.schema
        rows = self._select(
            "SELECT to_regclass(%s) IS NOT NULL AS accounts, "
            "to_regclass(%s) IS NOT NULL AS version",
            (
                _qualified(schema, self.accounts_table),
                _qualified(schema, self.version_table),
            ),
        )
        if rows[0]["version"]:
            found = self._select("SELECT MAX(version) AS v FROM {schema}.{version}")
            return int(found[0]["v"] or 1)
        return 1 if rows[0]["accounts"] else None

    def reset_view(self, upstreams: Sequence[str]) -> None:
        """Drops the view's tables and makes them again, empty, in one transaction.

        The tracking positions in the upstreams and their failures are forgotten
        with them, so following the upstreams again rebuilds the view from their
        first events. Feed positions carry on from the last one given: a client
        that remembers a position never gets another message under it. Tables of
        an older shape are dropped and made in this one.
        """
        feed = _qualified(self.datastore.schema, self.feed_table)
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
                SQL("DROP TABLE IF EXISTS {}").format(
                    SQL(", ").join(
                        SQL("{}.{}").format(
                            Identifier(self.datastore.schema), Identifier(table)
                        )
                        for table in self.view_tables
                    )
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
        if changes:
            self.write_changes(curs, changes)

    def write_changes(self, curs: Cursor[DictRow], changes: ViewChanges) -> None:
        """Writes the rows of a page of events (in the caller's transaction)."""
        # One statement per table for the whole page of events (psycopg pipelines
        # executemany), not one round trip per row.
        if changes.accounts:
            curs.executemany(
                self._sql(
                    f"INSERT INTO {{schema}}.{{accounts}} ({ACCOUNT_COLUMNS}) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO "
                    "UPDATE SET name=EXCLUDED.name, balance=EXCLUDED.balance, "
                    "overdraft_limit=EXCLUDED.overdraft_limit, "
                    "is_closed=EXCLUDED.is_closed, updated_at=EXCLUDED.updated_at, "
                    "owner_id=EXCLUDED.owner_id, "
                    "owner_username=EXCLUDED.owner_username, "
                    "statement_seq=EXCLUDED.statement_seq, "
                    "sort_name=EXCLUDED.sort_name"
                ),
                [account_row(a) for a in changes.accounts],
            )
        if changes.transactions:
            curs.executemany(
                self._sql(
                    f"INSERT INTO {{schema}}.{{transactions}} ({TRANSACTION_COLUMNS}) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                    "ON CONFLICT (id) DO UPDATE "
                    "SET status=EXCLUDED.status, error=EXCLUDED.error, "
                    "updated_at=EXCLUDED.updated_at, "
                    "debit_owner_id=EXCLUDED.debit_owner_id, "
                    "debit_owner_username=EXCLUDED.debit_owner_username, "
                    "credit_owner_id=EXCLUDED.credit_owner_id, "
                    "credit_owner_username=EXCLUDED.credit_owner_username"
                ),
                [transaction_row(t) for t in changes.transactions],
            )
        if changes.statement:
            curs.executemany(
                self._sql(
                    f"INSERT INTO {{schema}}.{{statement}} ({STATEMENT_COLUMNS}) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                ),
                [statement_row(e) for e in changes.statement],
            )
        if changes.feed:
            self._append_feed(curs, changes.feed)
        if changes.transaction_events:
            curs.executemany(
                self._sql(
                    "INSERT INTO {schema}.{transaction_events} "
                    f"({TRANSACTION_EVENT_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s)"
                ),
                [
                    (
                        e.transaction_id,
                        e.application,
                        e.originator_id,
                        e.originator_version,
                        e.position,
                        e.type,
                        e.timestamp,
                    )
                    for e in changes.transaction_events
                ],
            )

    def _append_feed(self, curs: Cursor[DictRow], feed: Sequence[FeedMessage]) -> None:
        # One insert for all the messages; positions come back in their order.
        # On a cursor of its own: in pipeline mode, a cursor that an
        # executemany() above used may already hold that statement's last
        # result, and fetchall() would read it ("the last operation didn't
        # produce records (command status: INSERT 0 1)") instead of waiting
        # for this one's rows.
        with curs.connection.cursor() as feed_curs:
            feed_curs.execute(
                self._sql(
                    "INSERT INTO {schema}.{feed} (message, audience) "
                    "SELECT m, a FROM unnest(%s::text[], %s::text[]) "
                    "WITH ORDINALITY AS t(m, a, i) ORDER BY i RETURNING position"
                ),
                (
                    [message.encode() for message in feed],
                    [message.encode_audience() for message in feed],
                ),
            )
            rows = feed_curs.fetchall()
        positions = sorted(int(row["position"]) for row in rows)
        if len(positions) != len(feed):  # pragma: no cover
            msg = "feed insert returned the wrong number of positions"
            raise RuntimeError(msg)
        for message, position in zip(feed, positions, strict=True):
            message.position = position
        audiences = [(user_id, m.position) for m in feed for user_id in m.audience]
        if audiences:
            curs.executemany(
                self._sql(
                    "INSERT INTO {schema}.{audience} (user_id, position) "
                    "VALUES (%s, %s)"
                ),
                audiences,
            )
        about = about_transactions(feed)
        if about:
            at = now()
            curs.executemany(
                self._sql(
                    "INSERT INTO {schema}.{feed_transactions} "
                    "(transaction_id, position, at) VALUES (%s, %s, %s)"
                ),
                [(transaction_id, m.position, at) for transaction_id, m in about],
            )
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
        where: list[str] = []
        params: list[object] = []
        if owner_id is not None:
            where.append("owner_id=%s")
            params.append(owner_id)
        if search and search.strip():
            matches = "sort_name LIKE %s ESCAPE '!'"
            params.append(paging.like_pattern(search))
            bounds = paging.hex_prefix_range(search)
            if bounds is not None:
                matches += " OR id BETWEEN %s AND %s"
                params.extend(UUID(bound) for bound in bounds)
            where.append(f"({matches})")
        column, direction = {
            "opened": ("opened_at", "ASC"),
            "name": ("sort_name", "ASC"),
            "balance": ("balance", "DESC"),
        }[sort]
        if after:
            value, account_id = paging.read_account_cursor(sort, after)
            beyond = ">" if direction == "ASC" else "<"
            where.append(f"({column}, id) {beyond} (%s, %s)")
            params.extend([value, account_id])
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._select(
            f"SELECT {ACCOUNT_COLUMNS} FROM {{schema}}.{{accounts}} {condition} "
            f"ORDER BY {column} {direction}, id {direction} LIMIT %s",
            (*params, limit + 1),
        )
        return paging.page(
            [_account(row) for row in rows],
            limit,
            lambda a: paging.account_cursor(sort, a),
        )

    def get_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The transaction, or None."""
        rows = self._select(
            f"SELECT {TRANSACTION_COLUMNS} FROM {{schema}}.{{transactions}} "
            "WHERE id=%s",
            (transaction_id,),
        )
        return _transaction(rows[0]) if rows else None

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
        keyset = ""
        key: tuple[object, ...] = ()
        if after:
            key = paging.read_transaction_cursor(after)
            keyset = " AND (created_at, id) < (%s, %s)"
        branches: list[tuple[str, tuple[object, ...]]] = []
        if account_id is not None:
            viewer = ""
            viewer_params: tuple[object, ...] = ()
            if viewer_id is not None:
                viewer = " AND (debit_owner_id=%s OR credit_owner_id=%s)"
                viewer_params = (viewer_id, viewer_id)
            for column in ("debit_account_id", "credit_account_id"):
                branches.append((f"{column}=%s{viewer}", (account_id, *viewer_params)))
        elif viewer_id is not None:
            for column in ("debit_owner_id", "credit_owner_id"):
                branches.append((f"{column}=%s", (viewer_id,)))
        order = "ORDER BY created_at DESC, id DESC LIMIT %s"
        if not branches:
            rows = self._select(
                f"SELECT {TRANSACTION_COLUMNS} FROM {{schema}}.{{transactions}} "
                f"WHERE true{keyset} {order}",
                (*key, limit + 1),
            )
        else:
            # Each branch reads its own index, newest first, at most a page.
            selects = " UNION ".join(
                f"(SELECT {TRANSACTION_COLUMNS} FROM {{schema}}.{{transactions}} "
                f"WHERE {condition}{keyset} {order})"
                for condition, _ in branches
            )
            params: list[object] = []
            for _, branch_params in branches:
                params.extend([*branch_params, *key, limit + 1])
            rows = self._select(f"{selects} {order}", (*params, limit + 1))
        return paging.page(
            [_transaction(row) for row in rows], limit, paging.transaction_cursor
        )

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
        where = ["s.account_id=%s", "s.seq<%s"]
        params: list[object] = [account_id, before]
        # The dates become a range of seq (entries are in time order), read
        # through the (account_id, at) index.
        if since is not None:
            where.append(
                "s.seq>=(SELECT MIN(seq) FROM {schema}.{statement} "
                "WHERE account_id=%s AND at>=%s) AND s.at>=%s"
            )
            params.extend([account_id, since, since])
        if until is not None:
            where.append(
                "s.seq<=(SELECT MAX(seq) FROM {schema}.{statement} "
                "WHERE account_id=%s AND at<%s) AND s.at<%s"
            )
            params.extend([account_id, until, until])
        rows = self._select(
            "SELECT s.*, a.name AS counterparty_name, "
            "a.owner_id AS counterparty_owner_id, "
            "a.owner_username AS counterparty_owner_username "
            "FROM {schema}.{statement} s LEFT JOIN {schema}.{accounts} a "
            f"ON a.id=s.counterparty_id WHERE {' AND '.join(where)} "
            "ORDER BY s.seq DESC LIMIT %s",
            (*params, limit + 1),
        )
        return paging.page(
            [_entry(row) for row in rows], limit, paging.statement_cursor
        )

    def select_feed(
        self, after: int, limit: int = 500, viewer_id: UUID | None = None
    ) -> list[FeedMessage]:
        """Feed messages with positions greater than after, in order."""
        if viewer_id is None:
            rows = self._select(
                "SELECT position, message, audience FROM {schema}.{feed} "
                "WHERE position>%s ORDER BY position LIMIT %s",
                (after, limit),
            )
        else:
            rows = self._select(
                "SELECT f.position, f.message, f.audience FROM {schema}.{audience} a "
                "JOIN {schema}.{feed} f ON f.position=a.position "
                "WHERE a.user_id=%s AND a.position>%s ORDER BY a.position LIMIT %s",
                (viewer_id, after, limit),
            )
        return [
            FeedMessage.decode(row["position"], row["message"], row["audience"])
            for row in rows
        ]

    def max_feed_position(self) -> int:
        """The last position in the feed (0 if empty)."""
        rows = self._select("SELECT MAX(position) AS position FROM {schema}.{feed}")
        return int(rows[0]["position"] or 0)

    def select_transaction_events(
        self, transaction_ids: Sequence[UUID]
    ) -> list[TransactionEvent]:
        """The indexed upstream events of these transactions, by position."""
        if not transaction_ids:
            return []
        rows = self._select(
            f"SELECT {TRANSACTION_EVENT_COLUMNS} "
            "FROM {schema}.{transaction_events} WHERE transaction_id = ANY(%s) "
            "ORDER BY application, position",
            (list(transaction_ids),),
        )
        return [
            TransactionEvent(
                transaction_id=row["transaction_id"],
                application=row["application"],
                originator_id=row["originator_id"],
                originator_version=int(row["originator_version"]),
                position=int(row["position"]),
                type=row["type"],
                timestamp=row["timestamp"],
            )
            for row in rows
        ]

    def select_transaction_feed(
        self, transaction_ids: Sequence[UUID]
    ) -> list[FeedEntry]:
        """The feed messages about these transactions, in feed order."""
        if not transaction_ids:
            return []
        rows = self._select(
            "SELECT t.transaction_id, t.at, f.position, f.message, f.audience "
            "FROM {schema}.{feed_transactions} t JOIN {schema}.{feed} f "
            "ON f.position=t.position WHERE t.transaction_id = ANY(%s) "
            "ORDER BY t.position",
            (list(transaction_ids),),
        )
        return [
            FeedEntry(
                row["transaction_id"],
                row["at"],
                FeedMessage.decode(row["position"], row["message"], row["audience"]),
            )
            for row in rows
        ]


def _qualified(schema: str, table: str) -> str:
    return f"{Identifier(schema).as_string()}.{Identifier(table).as_string()}"


def _user(user: UserRef | None) -> tuple[UUID | None, str | None]:
    return (None, None) if user is None else (user.id, user.username)


def account_row(a: AccountView) -> tuple[object, ...]:
    """The account's row, in ACCOUNT_COLUMNS' order."""
    return (
        a.id,
        a.name,
        a.balance,
        a.overdraft_limit,
        a.is_closed,
        a.opened_at,
        a.updated_at,
        *_user(a.owner),
        a.statement_seq,
        a.sort_name,
    )


def transaction_row(t: TransactionView) -> tuple[object, ...]:
    """The transaction's row, in TRANSACTION_COLUMNS' order."""
    return (
        t.id,
        t.kind,
        t.debit_account_id,
        t.credit_account_id,
        t.amount,
        t.status,
        t.error,
        t.created_at,
        t.updated_at,
        *_user(t.initiated_by),
        *_user(t.debit_owner),
        *_user(t.credit_owner),
    )


def statement_row(e: StatementEntry) -> tuple[object, ...]:
    """The entry's row, in STATEMENT_COLUMNS' order."""
    return (
        e.account_id,
        e.seq,
        e.transaction_id,
        e.kind,
        e.amount,
        e.balance,
        None if e.counterparty is None else e.counterparty.id,
        *_user(e.initiated_by),
        e.at,
    )


def _user_ref(user_id: UUID | None, username: str | None) -> UserRef | None:
    return None if user_id is None else UserRef(user_id, username or "")


def _account(row: Mapping[str, Any]) -> AccountView:
    return AccountView(
        id=row["id"],
        name=row["name"],
        balance=row["balance"],
        overdraft_limit=row["overdraft_limit"],
        is_closed=row["is_closed"],
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        owner=_user_ref(row["owner_id"], row["owner_username"]),
        statement_seq=int(row["statement_seq"]),
    )


def _transaction(row: Mapping[str, Any]) -> TransactionView:
    return TransactionView(
        id=row["id"],
        kind=cast("TransactionKind", row["kind"]),
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=row["amount"],
        status=cast("TransactionStatus", row["status"]),
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        initiated_by=_user_ref(row["initiated_by_id"], row["initiated_by_username"]),
        debit_owner=_user_ref(row["debit_owner_id"], row["debit_owner_username"]),
        credit_owner=_user_ref(row["credit_owner_id"], row["credit_owner_username"]),
    )


def _entry(row: Mapping[str, Any]) -> StatementEntry:
    counterparty_id = row["counterparty_id"]
    return StatementEntry(
        account_id=row["account_id"],
        seq=int(row["seq"]),
        transaction_id=row["transaction_id"],
        kind=cast("EntryKind", row["kind"]),
        amount=row["amount"],
        balance=row["balance"],
        counterparty=None
        if counterparty_id is None
        else AccountRef(
            counterparty_id,
            row["counterparty_name"],
            _user_ref(row["counterparty_owner_id"], row["counterparty_owner_username"]),
        ),
        initiated_by=_user_ref(row["initiated_by_id"], row["initiated_by_username"]),
        at=row["at"],
    )

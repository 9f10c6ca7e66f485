"""The interface's read model in SQLite, written with the tracking record.

Times are UTC ISO strings in microseconds (paging.timestamp), so that they sort as
the times do; the balance is kept in cents too, for the balance order. Every
keyset read has its index: a page costs the same wherever it is in the rows.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

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
from bankaccounts.system.sqlite import SQLiteFollowerRecorder

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore

    from bankaccounts.readmodel.views import (
        AccountSort,
        EntryKind,
        TransactionKind,
        TransactionStatus,
    )

#: The view's tables: what rebuild-read-model drops and makes again.
VIEW_TABLES = (
    "view_accounts",
    "view_transactions",
    "view_statement",
    "view_feed",
    "view_feed_audience",
    "view_feed_transactions",
    "view_transaction_events",
    "view_version",
)

ACCOUNT_COLUMNS = (
    "id, name, balance, overdraft_limit, is_closed, opened_at, updated_at, "
    "owner_id, owner_username, statement_seq, sort_name, balance_cents"
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
    "CREATE TABLE IF NOT EXISTS view_accounts ("
    "id TEXT PRIMARY KEY, name TEXT, balance TEXT NOT NULL, "
    "overdraft_limit TEXT NOT NULL, is_closed INTEGER NOT NULL, "
    "opened_at TEXT NOT NULL, updated_at TEXT NOT NULL, owner_id TEXT, "
    "owner_username TEXT, statement_seq INTEGER NOT NULL, "
    "sort_name TEXT NOT NULL, balance_cents INTEGER NOT NULL)",
    # One index per order, alone and within an owner's accounts.
    "CREATE INDEX IF NOT EXISTS view_accounts_opened ON view_accounts (opened_at, id)",
    "CREATE INDEX IF NOT EXISTS view_accounts_name ON view_accounts (sort_name, id)",
    "CREATE INDEX IF NOT EXISTS view_accounts_balance "
    "ON view_accounts (balance_cents, id)",
    "CREATE INDEX IF NOT EXISTS view_accounts_owner_opened "
    "ON view_accounts (owner_id, opened_at, id)",
    "CREATE INDEX IF NOT EXISTS view_accounts_owner_name "
    "ON view_accounts (owner_id, sort_name, id)",
    "CREATE INDEX IF NOT EXISTS view_accounts_owner_balance "
    "ON view_accounts (owner_id, balance_cents, id)",
    "CREATE TABLE IF NOT EXISTS view_transactions ("
    "id TEXT PRIMARY KEY, kind TEXT NOT NULL, debit_account_id TEXT, "
    "credit_account_id TEXT, amount TEXT NOT NULL, status TEXT NOT NULL, "
    "error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
    "initiated_by_id TEXT, initiated_by_username TEXT, debit_owner_id TEXT, "
    "debit_owner_username TEXT, credit_owner_id TEXT, credit_owner_username TEXT)",
    "CREATE INDEX IF NOT EXISTS view_transactions_created "
    "ON view_transactions (created_at, id)",
    "CREATE INDEX IF NOT EXISTS view_transactions_debit "
    "ON view_transactions (debit_account_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS view_transactions_credit "
    "ON view_transactions (credit_account_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS view_transactions_debit_owner "
    "ON view_transactions (debit_owner_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS view_transactions_credit_owner "
    "ON view_transactions (credit_owner_id, created_at, id)",
    "CREATE TABLE IF NOT EXISTS view_statement ("
    "account_id TEXT NOT NULL, seq INTEGER NOT NULL, transaction_id TEXT, "
    "kind TEXT NOT NULL, amount TEXT NOT NULL, balance TEXT NOT NULL, "
    "counterparty_id TEXT, initiated_by_id TEXT, initiated_by_username TEXT, "
    "at TEXT NOT NULL, PRIMARY KEY (account_id, seq)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS view_statement_at ON view_statement (account_id, at)",
    "CREATE TABLE IF NOT EXISTS view_feed ("
    "position INTEGER PRIMARY KEY AUTOINCREMENT, message TEXT NOT NULL, "
    "audience TEXT NOT NULL DEFAULT '')",
    # Who may see which message: a customer's feed is a range of this key.
    "CREATE TABLE IF NOT EXISTS view_feed_audience ("
    "user_id TEXT NOT NULL, position INTEGER NOT NULL, "
    "PRIMARY KEY (user_id, position)) WITHOUT ROWID",
    # A transaction's feed messages and upstream events, by its id (the timeline).
    "CREATE TABLE IF NOT EXISTS view_feed_transactions ("
    "transaction_id TEXT NOT NULL, position INTEGER NOT NULL, at TEXT NOT NULL, "
    "PRIMARY KEY (transaction_id, position)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS view_transaction_events ("
    "transaction_id TEXT NOT NULL, application TEXT NOT NULL, "
    "originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL, "
    "position INTEGER NOT NULL, type TEXT NOT NULL, timestamp TEXT NOT NULL, "
    "PRIMARY KEY (transaction_id, application, position)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS view_version (version INTEGER NOT NULL)",
    f"INSERT INTO view_version (version) SELECT {READ_MODEL_VERSION} "
    "WHERE NOT EXISTS (SELECT 1 FROM view_version)",
)


class SQLiteReadModelRecorder(SQLiteFollowerRecorder, ReadModelRecorder):
    """Keeps accounts, transactions, statements and the feed in the interface's
    SQLite file."""

    def __init__(
        self, datastore: SQLiteDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        """Prepares the statements."""
        super().__init__(datastore, events_table_name=events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        """Adds the view tables to the library's tables."""
        return [*super().construct_create_table_statements(), *VIEW_STATEMENTS]

    def create_table(self) -> None:
        """Makes the tables, unless the view's are of an older shape (then raises
        ReadModelOutdatedError: rebuild-read-model makes them again)."""
        self.check_schema()
        super().create_table()

    def describe_store(self) -> str:
        """The file."""
        return str(self.datastore.pool.db_name)

    def schema_version(self) -> int | None:
        """The version of the view's tables (1 if they have no version)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT name FROM sqlite_master WHERE type='table' "
                "AND name IN ('view_accounts', 'view_version')"
            )
            present = {row[0] for row in c.fetchall()}
            if "view_version" in present:
                c.execute("SELECT MAX(version) FROM view_version")
                return int(c.fetchone()[0] or 1)
            return 1 if "view_accounts" in present else None

    def reset_view(self, upstreams: Sequence[str]) -> None:
        """Drops the view's tables and makes them again, empty, in one transaction.

        The tracking positions in the upstreams and their failures are forgotten
        with them, so following the upstreams again rebuilds the view from their
        first events. Feed positions carry on from the last one given: a client
        that remembers a position never gets another message under it. Tables of
        an older shape are dropped and made in this one.
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
                c.execute("DELETE FROM sqlite_sequence WHERE name='view_feed'")
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
            self.write_changes(c, changes)
        return notification_ids

    def write_changes(self, c: SQLiteCursor, changes: ViewChanges) -> None:
        """Writes the rows of a page of events (in the caller's transaction)."""
        if changes.accounts:
            c.executemany(
                f"INSERT OR REPLACE INTO view_accounts ({ACCOUNT_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [account_row(a) for a in changes.accounts],
            )
        if changes.transactions:
            c.executemany(
                f"INSERT OR REPLACE INTO view_transactions ({TRANSACTION_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [transaction_row(t) for t in changes.transactions],
            )
        if changes.statement:
            c.executemany(
                f"INSERT INTO view_statement ({STATEMENT_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                [statement_row(e) for e in changes.statement],
            )
        for message in changes.feed:
            c.execute(
                "INSERT INTO view_feed (message, audience) VALUES (?, ?)",
                (message.encode(), message.encode_audience()),
            )
            message.position = c.lastrowid
        audiences = [
            (user_id.hex, m.position) for m in changes.feed for user_id in m.audience
        ]
        if audiences:
            c.executemany(
                "INSERT INTO view_feed_audience (user_id, position) VALUES (?, ?)",
                audiences,
            )
        about = about_transactions(changes.feed)
        if about:
            at = paging.timestamp(now())
            c.executemany(
                "INSERT INTO view_feed_transactions (transaction_id, position, at) "
                "VALUES (?, ?, ?)",
                [(tid.hex, m.position, at) for tid, m in about],
            )
        if changes.transaction_events:
            c.executemany(
                f"INSERT INTO view_transaction_events ({TRANSACTION_EVENT_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?)",
                [transaction_event_row(e) for e in changes.transaction_events],
            )

    def _select(self, statement: str, params: Sequence[object] = ()) -> list[Any]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return cast("list[Any]", c.fetchall())

    def get_account(self, account_id: UUID) -> AccountView | None:
        """The account, or None."""
        rows = self._select(
            f"SELECT {ACCOUNT_COLUMNS} FROM view_accounts WHERE id=?",
            (account_id.hex,),
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
            where.append("owner_id=?")
            params.append(owner_id.hex)
        if search and search.strip():
            matches = "sort_name LIKE ? ESCAPE '!'"
            params.append(paging.like_pattern(search))
            bounds = paging.hex_prefix_range(search)
            if bounds is not None:
                matches += " OR id BETWEEN ? AND ?"
                params.extend(bounds)
            where.append(f"({matches})")
        column, direction = {
            "opened": ("opened_at", "ASC"),
            "name": ("sort_name", "ASC"),
            "balance": ("balance_cents", "DESC"),
        }[sort]
        if after:
            value, account_id = paging.read_account_cursor(sort, after)
            key: object = (
                paging.timestamp(value)
                if isinstance(value, datetime)
                else _cents(value)
                if isinstance(value, Decimal)
                else value
            )
            beyond = ">" if direction == "ASC" else "<"
            where.append(
                f"{column} {beyond}= ? AND ({column} {beyond} ? OR id {beyond} ?)"
            )
            params.extend([key, key, account_id.hex])
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._select(
            f"SELECT {ACCOUNT_COLUMNS} FROM view_accounts {condition} "
            f"ORDER BY {column} {direction}, id {direction} LIMIT ?",
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
            f"SELECT {TRANSACTION_COLUMNS} FROM view_transactions WHERE id=?",
            (transaction_id.hex,),
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
            created_at, last_id = paging.read_transaction_cursor(after)
            stamp = paging.timestamp(created_at)
            keyset = " AND created_at<=? AND (created_at<? OR id<?)"
            key = (stamp, stamp, last_id.hex)
        # Each branch reads its own index, newest first, at most a page; the
        # union of the branches is ordered again.
        branches: list[tuple[str, tuple[object, ...]]] = []
        viewer = ""
        viewer_params: tuple[object, ...] = ()
        if account_id is not None:
            if viewer_id is not None:
                viewer = " AND (debit_owner_id=? OR credit_owner_id=?)"
                viewer_params = (viewer_id.hex, viewer_id.hex)
            for column in ("debit_account_id", "credit_account_id"):
                branches.append(
                    (f"{column}=?{viewer}", (account_id.hex, *viewer_params))
                )
        elif viewer_id is not None:
            for column in ("debit_owner_id", "credit_owner_id"):
                branches.append((f"{column}=?", (viewer_id.hex,)))
        order = "ORDER BY created_at DESC, id DESC LIMIT ?"
        if not branches:
            rows = self._select(
                f"SELECT {TRANSACTION_COLUMNS} FROM view_transactions "
                f"WHERE 1=1{keyset} {order}",
                (*key, limit + 1),
            )
        else:
            selects = " UNION ".join(
                f"SELECT * FROM (SELECT {TRANSACTION_COLUMNS} FROM view_transactions "
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
        where = ["s.account_id=?", "s.seq<?"]
        params: list[object] = [account_id.hex, before]
        # The dates become a range of seq (entries are in time order), read
        # through the (account_id, at) index.
        if since is not None:
            stamp = paging.timestamp(since)
            where.append(
                "s.seq>=(SELECT MIN(seq) FROM view_statement "
                "WHERE account_id=? AND at>=?) AND s.at>=?"
            )
            params.extend([account_id.hex, stamp, stamp])
        if until is not None:
            stamp = paging.timestamp(until)
            where.append(
                "s.seq<=(SELECT MAX(seq) FROM view_statement "
                "WHERE account_id=? AND at<?) AND s.at<?"
            )
            params.extend([account_id.hex, stamp, stamp])
        rows = self._select(
            "SELECT s.*, a.name AS counterparty_name, "
            "a.owner_id AS counterparty_owner_id, "
            "a.owner_username AS counterparty_owner_username "
            "FROM view_statement s LEFT JOIN view_accounts a "
            f"ON a.id=s.counterparty_id WHERE {' AND '.join(where)} "
            "ORDER BY s.seq DESC LIMIT ?",
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
                "SELECT position, message, audience FROM view_feed WHERE position>? "
                "ORDER BY position LIMIT ?",
                (after, limit),
            )
        else:
            rows = self._select(
                "SELECT f.position, f.message, f.audience FROM view_feed_audience a "
                "JOIN view_feed f ON f.position=a.position "
                "WHERE a.user_id=? AND a.position>? ORDER BY a.position LIMIT ?",
                (viewer_id.hex, after, limit),
            )
        return [FeedMessage.decode(row[0], row[1], row[2]) for row in rows]

    def max_feed_position(self) -> int:
        """The last position in the feed (0 if empty)."""
        rows = self._select("SELECT MAX(position) FROM view_feed")
        return int(rows[0][0] or 0)

    def select_transaction_events(
        self, transaction_ids: Sequence[UUID]
    ) -> list[TransactionEvent]:
        """The indexed upstream events of these transactions, by position."""
        if not transaction_ids:
            return []
        marks = ",".join("?" for _ in transaction_ids)
        rows = self._select(
            f"SELECT {TRANSACTION_EVENT_COLUMNS} FROM view_transaction_events "
            f"WHERE transaction_id IN ({marks}) ORDER BY application, position",
            [t.hex for t in transaction_ids],
        )
        return [
            TransactionEvent(
                transaction_id=UUID(row["transaction_id"]),
                application=row["application"],
                originator_id=UUID(row["originator_id"]),
                originator_version=int(row["originator_version"]),
                position=int(row["position"]),
                type=row["type"],
                timestamp=datetime.fromisoformat(row["timestamp"]),
            )
            for row in rows
        ]

    def select_transaction_feed(
        self, transaction_ids: Sequence[UUID]
    ) -> list[FeedEntry]:
        """The feed messages about these transactions, in feed order."""
        if not transaction_ids:
            return []
        marks = ",".join("?" for _ in transaction_ids)
        rows = self._select(
            "SELECT t.transaction_id, t.at, f.position, f.message, f.audience "
            "FROM view_feed_transactions t JOIN view_feed f ON f.position=t.position "
            f"WHERE t.transaction_id IN ({marks}) ORDER BY t.position",
            [t.hex for t in transaction_ids],
        )
        return [
            FeedEntry(
                UUID(row["transaction_id"]),
                datetime.fromisoformat(row["at"]),
                FeedMessage.decode(row["position"], row["message"], row["audience"]),
            )
            for row in rows
        ]


def _cents(amount: Decimal) -> int:
    return int(amount.scaleb(2).to_integral_value())


def _hex(value: UUID | None) -> str | None:
    return None if value is None else value.hex


def _user(user: UserRef | None) -> tuple[str | None, str | None]:
    return (None, None) if user is None else (user.id.hex, user.username)


def account_row(a: AccountView) -> tuple[object, ...]:
    """The account's row, in ACCOUNT_COLUMNS' order."""
    return (
        a.id.hex,
        a.name,
        str(a.balance),
        str(a.overdraft_limit),
        int(a.is_closed),
        paging.timestamp(a.opened_at),
        paging.timestamp(a.updated_at),
        *_user(a.owner),
        a.statement_seq,
        a.sort_name,
        _cents(a.balance),
    )


def transaction_row(t: TransactionView) -> tuple[object, ...]:
    """The transaction's row, in TRANSACTION_COLUMNS' order."""
    return (
        t.id.hex,
        t.kind,
        _hex(t.debit_account_id),
        _hex(t.credit_account_id),
        str(t.amount),
        t.status,
        t.error,
        paging.timestamp(t.created_at),
        paging.timestamp(t.updated_at),
        *_user(t.initiated_by),
        *_user(t.debit_owner),
        *_user(t.credit_owner),
    )


def statement_row(e: StatementEntry) -> tuple[object, ...]:
    """The entry's row, in STATEMENT_COLUMNS' order."""
    return (
        e.account_id.hex,
        e.seq,
        _hex(e.transaction_id),
        e.kind,
        str(e.amount),
        str(e.balance),
        None if e.counterparty is None else e.counterparty.id.hex,
        *_user(e.initiated_by),
        paging.timestamp(e.at),
    )


def transaction_event_row(e: TransactionEvent) -> tuple[object, ...]:
    """The index row, in TRANSACTION_EVENT_COLUMNS' order."""
    return (
        e.transaction_id.hex,
        e.application,
        e.originator_id.hex,
        e.originator_version,
        e.position,
        e.type,
        paging.timestamp(e.timestamp),
    )


def _user_ref(user_id: str | None, username: str | None) -> UserRef | None:
    return None if user_id is None else UserRef(UUID(user_id), username or "")


def _uuid(value: str | None) -> UUID | None:
    return UUID(value) if value else None


def _account(row: sqlite3.Row) -> AccountView:
    return AccountView(
        id=UUID(row["id"]),
        name=row["name"],
        balance=Decimal(row["balance"]),
        overdraft_limit=Decimal(row["overdraft_limit"]),
        is_closed=bool(row["is_closed"]),
        opened_at=datetime.fromisoformat(row["opened_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        owner=_user_ref(row["owner_id"], row["owner_username"]),
        statement_seq=int(row["statement_seq"]),
    )


def _transaction(row: sqlite3.Row) -> TransactionView:
    return TransactionView(
        id=UUID(row["id"]),
        kind=cast("TransactionKind", row["kind"]),
        debit_account_id=_uuid(row["debit_account_id"]),
        credit_account_id=_uuid(row["credit_account_id"]),
        amount=Decimal(row["amount"]),
        status=cast("TransactionStatus", row["status"]),
        error=row["error"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        initiated_by=_user_ref(row["initiated_by_id"], row["initiated_by_username"]),
        debit_owner=_user_ref(row["debit_owner_id"], row["debit_owner_username"]),
        credit_owner=_user_ref(row["credit_owner_id"], row["credit_owner_username"]),
    )


def _entry(row: sqlite3.Row) -> StatementEntry:
    counterparty_id = _uuid(row["counterparty_id"])
    return StatementEntry(
        account_id=UUID(row["account_id"]),
        seq=int(row["seq"]),
        transaction_id=_uuid(row["transaction_id"]),
        kind=cast("EntryKind", row["kind"]),
        amount=Decimal(row["amount"]),
        balance=Decimal(row["balance"]),
        counterparty=None
        if counterparty_id is None
        else AccountRef(
            counterparty_id,
            row["counterparty_name"],
            _user_ref(row["counterparty_owner_id"], row["counterparty_owner_username"]),
        ),
        initiated_by=_user_ref(row["initiated_by_id"], row["initiated_by_username"]),
        at=datetime.fromisoformat(row["at"]),
    )

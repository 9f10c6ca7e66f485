"""The interface's read model on MySQL or MariaDB, written with the tracking record.

Names sort byte-wise (utf8mb4_bin), as in the other stores; every keyset read has
its index, so a page costs the same wherever it is in the rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from sqlalchemy import text

from bankaccounts.domainmodel import UserRef
from bankaccounts.readmodel import paging
from bankaccounts.readmodel.recorder import (
    READ_MODEL_VERSION,
    ReadModelRecorder,
    about_transactions,
    now,
)
from bankaccounts.readmodel.views import (
    SORT_NAME_LENGTH,
    AccountRef,
    AccountView,
    FeedEntry,
    FeedMessage,
    StatementEntry,
    TransactionEvent,
    TransactionView,
    ViewChanges,
)
from bankaccounts.system.mysql import (
    TABLE_OPTIONS,
    MySQLFollowerRecorder,
    _aware,
    _hex_or_none,
    _utc,
    _uuid_or_none,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from eventsourcing.persistence import StoredEvent
    from eventsourcing_sqlalchemy.datastore import SQLAlchemyDatastore
    from sqlalchemy.orm import Session

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


def _marks(columns: str) -> str:
    return ",".join(f":{column.strip()}" for column in columns.split(","))


class MySQLReadModelRecorder(MySQLFollowerRecorder, ReadModelRecorder):
    """Keeps accounts, transactions, statements and the feed in tables named for
    the application."""

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
        self.accounts_table = accounts = f"{self.prefix}_accounts"
        self.transactions_table = transactions = f"{self.prefix}_transactions"
        self.statement_table = statement = f"{self.prefix}_statement"
        self.feed_table = f"{self.prefix}_feed"
        self.audience_table = f"{self.prefix}_feed_audience"
        self.feed_transactions_table = f"{self.prefix}_feed_transactions"
        self.transaction_events_table = f"{self.prefix}_transaction_events"
        self.version_table = f"{self.prefix}_view_version"
        self.view_tables = (
            accounts,
            transactions,
            statement,
            self.feed_table,
            self.audience_table,
            self.feed_transactions_table,
            self.transaction_events_table,
            self.version_table,  # last: reset_view empties the others
        )
        money = "DECIMAL(20,2) NOT NULL"
        user = "CHAR(32), {0}_username VARCHAR(191)"
        self.create_statements += [
            f"CREATE TABLE IF NOT EXISTS {accounts} ("
            f"id CHAR(32) NOT NULL PRIMARY KEY, name TEXT, balance {money}, "
            f"overdraft_limit {money}, is_closed BOOLEAN NOT NULL, "
            "opened_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL, "
            f"owner_id {user.format('owner')}, statement_seq BIGINT NOT NULL, "
            f"sort_name VARCHAR({SORT_NAME_LENGTH}) COLLATE utf8mb4_bin NOT NULL, "
            f"INDEX {accounts}_opened (opened_at, id), "
            f"INDEX {accounts}_name (sort_name, id), "
            f"INDEX {accounts}_balance (balance, id), "
            f"INDEX {accounts}_owner_opened (owner_id, opened_at, id), "
            f"INDEX {accounts}_owner_name (owner_id, sort_name, id), "
            f"INDEX {accounts}_owner_balance (owner_id, balance, id)"
            f") {TABLE_OPTIONS}",
            f"CREATE TABLE IF NOT EXISTS {transactions} ("
            "id CHAR(32) NOT NULL PRIMARY KEY, kind VARCHAR(16) NOT NULL, "
            f"debit_account_id CHAR(32), credit_account_id CHAR(32), amount {money}, "
            "status VARCHAR(16) NOT NULL, error TEXT, "
            "created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL, "
            f"initiated_by_id {user.format('initiated_by')}, "
            f"debit_owner_id {user.format('debit_owner')}, "
            f"credit_owner_id {user.format('credit_owner')}, "
            f"INDEX {transactions}_created (created_at, id), "
            f"INDEX {transactions}_debit (debit_account_id, created_at, id), "
            f"INDEX {transactions}_credit (credit_account_id, created_at, id), "
            f"INDEX {transactions}_debit_owner (debit_owner_id, created_at, id), "
            f"INDEX {transactions}_credit_owner (credit_owner_id, created_at, id)"
            f") {TABLE_OPTIONS}",
            f"CREATE TABLE IF NOT EXISTS {statement} ("
            "account_id CHAR(32) NOT NULL, seq BIGINT NOT NULL, "
            "transaction_id CHAR(32), kind VARCHAR(16) NOT NULL, "
            f"amount {money}, balance {money}, counterparty_id CHAR(32), "
            f"initiated_by_id {user.format('initiated_by')}, "
            "at DATETIME(6) NOT NULL, PRIMARY KEY (account_id, seq), "
            f"INDEX {statement}_at (account_id, at)) {TABLE_OPTIONS}",
            # AUTO_INCREMENT: positions handed out under the application's lock
            # (see _insert_stored_events), so they increase in commit order.
            f"CREATE TABLE IF NOT EXISTS {self.feed_table} ("
            "position BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            f"message MEDIUMTEXT NOT NULL, audience TEXT NOT NULL) {TABLE_OPTIONS}",
            f"CREATE TABLE IF NOT EXISTS {self.audience_table} ("
            "user_id CHAR(32) NOT NULL, position BIGINT NOT NULL, "
            f"PRIMARY KEY (user_id, position)) {TABLE_OPTIONS}",
            # A transaction's feed messages and upstream events, by its id.
            f"CREATE TABLE IF NOT EXISTS {self.feed_transactions_table} ("
            "transaction_id CHAR(32) NOT NULL, position BIGINT NOT NULL, "
            "at DATETIME(6) NOT NULL, PRIMARY KEY (transaction_id, position)"
            f") {TABLE_OPTIONS}",
            f"CREATE TABLE IF NOT EXISTS {self.transaction_events_table} ("
            "transaction_id CHAR(32) NOT NULL, application VARCHAR(64) NOT NULL, "
            "originator_id CHAR(32) NOT NULL, originator_version BIGINT NOT NULL, "
            "position BIGINT NOT NULL, type VARCHAR(191) NOT NULL, "
            "timestamp DATETIME(6) NOT NULL, "
            f"PRIMARY KEY (transaction_id, application, position)) {TABLE_OPTIONS}",
            f"CREATE TABLE IF NOT EXISTS {self.version_table} ("
            f"version INT NOT NULL) {TABLE_OPTIONS}",
            f"INSERT INTO {self.version_table} (version) "
            f"SELECT {READ_MODEL_VERSION} FROM DUAL WHERE NOT EXISTS "
            f"(SELECT 1 FROM {self.version_table})",
        ]

    def create_table(self) -> None:
        """Makes the tables, unless the view's are of an older shape (then raises
        ReadModelOutdatedError: rebuild-read-model makes them again)."""
        self.check_schema()
        super().create_table()

    def describe_store(self) -> str:
        """The tables."""
        return f"the {self.prefix}_* tables"

    def schema_version(self) -> int | None:
        """The version of the view's tables (1 if they have no version)."""
        if self._table_exists(self.version_table):
            rows = self._select(f"SELECT MAX(version) AS v FROM {self.version_table}")
            return int(rows[0]["v"] or 1)
        return 1 if self._table_exists(self.accounts_table) else None

    def reset_view(self, upstreams: Sequence[str]) -> None:
        """Empties the view's tables, in one transaction.

        The tracking positions in the upstreams and their failures are forgotten
        with them, so following the upstreams again rebuilds the view from their
        first events. Feed positions carry on from the last one given (DELETE keeps
        the AUTO_INCREMENT counter): a client that remembers a position never gets
        another message under it. Rows are deleted, not tables dropped, because
        MySQL commits before any DROP or CREATE; only tables of an older shape are
        dropped (first, on their own) and made again.
        """
        version = self.schema_version()
        if version is not None and version < READ_MODEL_VERSION:
            self._drop_outdated_view()
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
            for table in self.view_tables[:-1]:  # not the version
                session.execute(text(f"DELETE FROM {table}"))

    def _drop_outdated_view(self) -> None:
        last = 0
        if self._table_exists(self.feed_table):
            rows = self._select(f"SELECT MAX(position) AS last FROM {self.feed_table}")
            last = int(rows[0]["last"] or 0)
        with self.transaction(commit=True) as session:
            for table in self.view_tables:
                session.execute(text(f"DROP TABLE IF EXISTS {table}"))
        self.create_table()
        if last:
            with self.transaction(commit=True) as session:
                session.execute(
                    text(f"ALTER TABLE {self.feed_table} AUTO_INCREMENT={last + 1}")
                )

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
            self.write_changes(session, changes)
        return notification_ids

    def write_changes(self, session: Session, changes: ViewChanges) -> None:
        """Writes the rows of a page of events (in the caller's transaction)."""
        # One statement per table for the whole page (PyMySQL sends an executemany
        # of an INSERT as one multi-row statement).
        if changes.accounts:
            session.execute(
                text(
                    f"INSERT INTO {self.accounts_table} ({ACCOUNT_COLUMNS}) VALUES "
                    f"({_marks(ACCOUNT_COLUMNS)}) ON DUPLICATE KEY UPDATE "
                    "name=VALUES(name), balance=VALUES(balance), "
                    "overdraft_limit=VALUES(overdraft_limit), "
                    "is_closed=VALUES(is_closed), updated_at=VALUES(updated_at), "
                    "owner_id=VALUES(owner_id), "
                    "owner_username=VALUES(owner_username), "
                    "statement_seq=VALUES(statement_seq), "
                    "sort_name=VALUES(sort_name)"
                ),
                [account_row(a) for a in changes.accounts],
            )
        if changes.transactions:
            session.execute(
                text(
                    f"INSERT INTO {self.transactions_table} ({TRANSACTION_COLUMNS}) "
                    f"VALUES ({_marks(TRANSACTION_COLUMNS)}) ON DUPLICATE KEY UPDATE "
                    "status=VALUES(status), error=VALUES(error), "
                    "updated_at=VALUES(updated_at), "
                    "debit_owner_id=VALUES(debit_owner_id), "
                    "debit_owner_username=VALUES(debit_owner_username), "
                    "credit_owner_id=VALUES(credit_owner_id), "
                    "credit_owner_username=VALUES(credit_owner_username)"
                ),
                [transaction_row(t) for t in changes.transactions],
            )
        if changes.statement:
            session.execute(
                text(
                    f"INSERT INTO {self.statement_table} ({STATEMENT_COLUMNS}) "
                    f"VALUES ({_marks(STATEMENT_COLUMNS)})"
                ),
                [statement_row(e) for e in changes.statement],
            )
        if changes.feed:
            self._append_feed(session, changes.feed)
        if changes.transaction_events:
            session.execute(
                text(
                    f"INSERT INTO {self.transaction_events_table} "
                    f"({TRANSACTION_EVENT_COLUMNS}) "
                    f"VALUES ({_marks(TRANSACTION_EVENT_COLUMNS)})"
                ),
                [
                    {
                        "transaction_id": e.transaction_id.hex,
                        "application": e.application,
                        "originator_id": e.originator_id.hex,
                        "originator_version": e.originator_version,
                        "position": e.position,
                        "type": e.type,
                        "timestamp": _utc(e.timestamp),
                    }
                    for e in changes.transaction_events
                ],
            )

    def _append_feed(self, session: Session, messages: Sequence[FeedMessage]) -> None:
        # One multi-row INSERT: its rows take increasing positions in their order.
        # They are read back from LAST_INSERT_ID() (the first of them), which does
        # not assume consecutive ids (auto_increment_increment may be above 1).
        values = ",".join(f"(:m{i}, :a{i})" for i in range(len(messages)))
        params: dict[str, object] = {}
        for i, message in enumerate(messages):
            params[f"m{i}"] = message.encode()
            params[f"a{i}"] = message.encode_audience()
        session.execute(
            text(f"INSERT INTO {self.feed_table} (message, audience) VALUES {values}"),
            params,
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
        audiences = [
            {"user_id": user_id.hex, "position": m.position}
            for m in messages
            for user_id in m.audience
        ]
        if audiences:
            session.execute(
                text(
                    f"INSERT INTO {self.audience_table} (user_id, position) "
                    "VALUES (:user_id, :position)"
                ),
                audiences,
            )
        about = about_transactions(messages)
        if about:
            at = _utc(now())
            session.execute(
                text(
                    f"INSERT INTO {self.feed_transactions_table} "
                    "(transaction_id, position, at) VALUES (:tid, :position, :at)"
                ),
                [
                    {"tid": tid.hex, "position": m.position, "at": at}
                    for tid, m in about
                ],
            )

    def get_account(self, account_id: UUID) -> AccountView | None:
        """The account, or None."""
        rows = self._select(
            f"SELECT {ACCOUNT_COLUMNS} FROM {self.accounts_table} WHERE id=:id",
            {"id": account_id.hex},
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
        params: dict[str, object] = {"limit": limit + 1}
        if owner_id is not None:
            where.append("owner_id=:owner")
            params["owner"] = owner_id.hex
        if search and search.strip():
            matches = "sort_name LIKE :pattern ESCAPE '!'"
            params["pattern"] = paging.like_pattern(search)
            bounds = paging.hex_prefix_range(search)
            if bounds is not None:
                matches += " OR id BETWEEN :low AND :high"
                params["low"], params["high"] = bounds
            where.append(f"({matches})")
        column, direction = {
            "opened": ("opened_at", "ASC"),
            "name": ("sort_name", "ASC"),
            "balance": ("balance", "DESC"),
        }[sort]
        if after:
            value, account_id = paging.read_account_cursor(sort, after)
            beyond = ">" if direction == "ASC" else "<"
            where.append(
                f"{column} {beyond}= :key AND ({column} {beyond} :key "
                f"OR id {beyond} :last)"
            )
            params["key"] = _utc(value) if isinstance(value, datetime) else value
            params["last"] = account_id.hex
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._select(
            f"SELECT {ACCOUNT_COLUMNS} FROM {self.accounts_table} {condition} "
            f"ORDER BY {column} {direction}, id {direction} LIMIT :limit",
            params,
        )
        return paging.page(
            [_account(row) for row in rows],
            limit,
            lambda a: paging.account_cursor(sort, a),
        )

    def get_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The transaction, or None."""
        rows = self._select(
            f"SELECT {TRANSACTION_COLUMNS} FROM {self.transactions_table} WHERE id=:id",
            {"id": transaction_id.hex},
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
        params: dict[str, object] = {"limit": limit + 1}
        keyset = ""
        if after:
            created_at, last_id = paging.read_transaction_cursor(after)
            keyset = " AND created_at<=:created AND (created_at<:created OR id<:last)"
            params["created"] = _utc(created_at)
            params["last"] = last_id.hex
        conditions: list[str] = []
        if account_id is not None:
            params["account"] = account_id.hex
            viewer = ""
            if viewer_id is not None:
                viewer = " AND (debit_owner_id=:viewer OR credit_owner_id=:viewer)"
                params["viewer"] = viewer_id.hex
            conditions = [
                f"debit_account_id=:account{viewer}",
                f"credit_account_id=:account{viewer}",
            ]
        elif viewer_id is not None:
            params["viewer"] = viewer_id.hex
            conditions = ["debit_owner_id=:viewer", "credit_owner_id=:viewer"]
        order = "ORDER BY created_at DESC, id DESC LIMIT :limit"
        table = self.transactions_table
        if not conditions:
            statement = (
                f"SELECT {TRANSACTION_COLUMNS} FROM {table} WHERE TRUE{keyset} {order}"
            )
        else:
            # Each branch reads its own index, newest first, at most a page.
            statement = " UNION ".join(
                f"(SELECT {TRANSACTION_COLUMNS} FROM {table} "
                f"WHERE {condition}{keyset} {order})"
                for condition in conditions
            )
            statement += f" {order}"
        rows = self._select(statement, params)
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
        where = ["s.account_id=:account", "s.seq<:before"]
        params: dict[str, object] = {
            "account": account_id.hex,
            "before": before,
            "limit": limit + 1,
        }
        # The dates become a range of seq (entries are in time order), read
        # through the (account_id, at) index.
        if since is not None:
            where.append(
                f"s.seq>=(SELECT MIN(seq) FROM {self.statement_table} "
                "WHERE account_id=:account AND at>=:since) AND s.at>=:since"
            )
            params["since"] = _utc(since)
        if until is not None:
            where.append(
                f"s.seq<=(SELECT MAX(seq) FROM {self.statement_table} "
                "WHERE account_id=:account AND at<:until) AND s.at<:until"
            )
            params["until"] = _utc(until)
        rows = self._select(
            "SELECT s.*, a.name AS counterparty_name, "
            "a.owner_id AS counterparty_owner_id, "
            "a.owner_username AS counterparty_owner_username "
            f"FROM {self.statement_table} s LEFT JOIN {self.accounts_table} a "
            f"ON a.id=s.counterparty_id WHERE {' AND '.join(where)} "
            "ORDER BY s.seq DESC LIMIT :limit",
            params,
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
                f"SELECT position, message, audience FROM {self.feed_table} "
                "WHERE position>:after ORDER BY position LIMIT :limit",
                {"after": after, "limit": limit},
            )
        else:
            rows = self._select(
                "SELECT f.position, f.message, f.audience "
                f"FROM {self.audience_table} a JOIN {self.feed_table} f "
                "ON f.position=a.position WHERE a.user_id=:viewer "
                "AND a.position>:after ORDER BY a.position LIMIT :limit",
                {"viewer": viewer_id.hex, "after": after, "limit": limit},
            )
        return [
            FeedMessage.decode(int(row["position"]), row["message"], row["audience"])
            for row in rows
        ]

    def max_feed_position(self) -> int:
        """The last position in the feed (0 if empty)."""
        rows = self._select(f"SELECT MAX(position) AS position FROM {self.feed_table}")
        return int(rows[0]["position"] or 0)

    def select_transaction_events(
        self, transaction_ids: Sequence[UUID]
    ) -> list[TransactionEvent]:
        """The indexed upstream events of these transactions, by position."""
        if not transaction_ids:
            return []
        marks, params = _in(transaction_ids)
        rows = self._select(
            f"SELECT {TRANSACTION_EVENT_COLUMNS} FROM {self.transaction_events_table} "
            f"WHERE transaction_id IN ({marks}) ORDER BY application, position",
            params,
        )
        return [
            TransactionEvent(
                transaction_id=UUID(row["transaction_id"]),
                application=row["application"],
                originator_id=UUID(row["originator_id"]),
                originator_version=int(row["originator_version"]),
                position=int(row["position"]),
                type=row["type"],
                timestamp=_aware(row["timestamp"]),
            )
            for row in rows
        ]

    def select_transaction_feed(
        self, transaction_ids: Sequence[UUID]
    ) -> list[FeedEntry]:
        """The feed messages about these transactions, in feed order."""
        if not transaction_ids:
            return []
        marks, params = _in(transaction_ids)
        rows = self._select(
            "SELECT t.transaction_id, t.at, f.position, f.message, f.audience "
            f"FROM {self.feed_transactions_table} t JOIN {self.feed_table} f "
            f"ON f.position=t.position WHERE t.transaction_id IN ({marks}) "
            "ORDER BY t.position",
            params,
        )
        return [
            FeedEntry(
                UUID(row["transaction_id"]),
                _aware(row["at"]),
                FeedMessage.decode(
                    int(row["position"]), row["message"], row["audience"]
                ),
            )
            for row in rows
        ]


def _in(ids: Sequence[UUID]) -> tuple[str, dict[str, object]]:
    """Placeholders and parameters for `IN (...)` of these ids."""
    params: dict[str, object] = {f"id{i}": value.hex for i, value in enumerate(ids)}
    return ",".join(f":{key}" for key in params), params


def _user(user: UserRef | None, name: str) -> dict[str, object]:
    return {
        f"{name}_id": None if user is None else user.id.hex,
        f"{name}_username": None if user is None else user.username,
    }


def account_row(a: AccountView) -> dict[str, object]:
    """The account's row, by column."""
    return {
        "id": a.id.hex,
        "name": a.name,
        "balance": a.balance,
        "overdraft_limit": a.overdraft_limit,
        "is_closed": a.is_closed,
        "opened_at": _utc(a.opened_at),
        "updated_at": _utc(a.updated_at),
        **_user(a.owner, "owner"),
        "statement_seq": a.statement_seq,
        "sort_name": a.sort_name,
    }


def transaction_row(t: TransactionView) -> dict[str, object]:
    """The transaction's row, by column."""
    return {
        "id": t.id.hex,
        "kind": t.kind,
        "debit_account_id": _hex_or_none(t.debit_account_id),
        "credit_account_id": _hex_or_none(t.credit_account_id),
        "amount": t.amount,
        "status": t.status,
        "error": t.error,
        "created_at": _utc(t.created_at),
        "updated_at": _utc(t.updated_at),
        **_user(t.initiated_by, "initiated_by"),
        **_user(t.debit_owner, "debit_owner"),
        **_user(t.credit_owner, "credit_owner"),
    }


def statement_row(e: StatementEntry) -> dict[str, object]:
    """The entry's row, by column."""
    return {
        "account_id": e.account_id.hex,
        "seq": e.seq,
        "transaction_id": _hex_or_none(e.transaction_id),
        "kind": e.kind,
        "amount": e.amount,
        "balance": e.balance,
        "counterparty_id": None if e.counterparty is None else e.counterparty.id.hex,
        **_user(e.initiated_by, "initiated_by"),
        "at": _utc(e.at),
    }


def _user_ref(user_id: str | None, username: str | None) -> UserRef | None:
    return None if user_id is None else UserRef(UUID(user_id), username or "")


def _account(row: Mapping[Any, Any]) -> AccountView:
    return AccountView(
        id=UUID(row["id"]),
        name=row["name"],
        balance=row["balance"],
        overdraft_limit=row["overdraft_limit"],
        is_closed=bool(row["is_closed"]),
        opened_at=_aware(row["opened_at"]),
        updated_at=_aware(row["updated_at"]),
        owner=_user_ref(row["owner_id"], row["owner_username"]),
        statement_seq=int(row["statement_seq"]),
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
        initiated_by=_user_ref(row["initiated_by_id"], row["initiated_by_username"]),
        debit_owner=_user_ref(row["debit_owner_id"], row["debit_owner_username"]),
        credit_owner=_user_ref(row["credit_owner_id"], row["credit_owner_username"]),
    )


def _entry(row: Mapping[Any, Any]) -> StatementEntry:
    counterparty_id = _uuid_or_none(row["counterparty_id"])
    return StatementEntry(
        account_id=UUID(row["account_id"]),
        seq=int(row["seq"]),
        transaction_id=_uuid_or_none(row["transaction_id"]),
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
        at=_aware(row["at"]),
    )

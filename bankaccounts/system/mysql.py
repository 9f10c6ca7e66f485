"""Followers and the interface's read model on MySQL or MariaDB (SQLAlchemy plugin).

The same as postgres.py, on the guarded recorders of bankaccounts/mysql.py: a page is
recorded with its first event's tracking too, failures are kept per upstream, and the
interface's views and feed are written in the transaction of the tracking record.
Tables are named after the application, as the plugin names its own
(`interface_events`, `interface_accounts`, ...), so every application shares one
database. Money is DECIMAL(20,2) (MAX_BALANCE has 14 whole digits), times are
DATETIME(6) in UTC, ids are hex.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.utils import retry
from sqlalchemy import text

from bankaccounts.mysql import MySQLProcessRecorder, begin, connect
from bankaccounts.system.followers import (
    FAILURE_COLUMNS,
    FollowerFailure,
    FollowerRecorder,
    next_failure,
    page_trackings,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from eventsourcing.persistence import StoredEvent
    from eventsourcing_sqlalchemy.datastore import SQLAlchemyDatastore
    from sqlalchemy.orm import Session


TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"


class MySQLFollowerRecorder(MySQLProcessRecorder, FollowerRecorder):
    """The guarded process recorder, with the page guard and the failures table."""

    def __init__(
        self,
        datastore: SQLAlchemyDatastore,
        *,
        events_table_name: str,
        tracking_table_name: str,
        schema_name: str | None = None,
    ) -> None:
        """Names the failures table after the application's events table."""
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
            schema_name=schema_name,
        )
        self.prefix = events_table_name.removesuffix("_events")
        self.failures_table = f"{self.prefix}_failures"
        self.create_statements = [
            f"CREATE TABLE IF NOT EXISTS {self.failures_table} ("
            "upstream VARCHAR(191) NOT NULL PRIMARY KEY, position BIGINT NOT NULL, "
            "event TEXT NOT NULL, error TEXT NOT NULL, attempts INT NOT NULL, "
            "first_failed_at DATETIME(6) NOT NULL, "
            f"last_failed_at DATETIME(6) NOT NULL) {TABLE_OPTIONS}"
        ]

    def create_table(self) -> None:
        """The plugin's tables, the lock row and this recorder's tables."""
        super().create_table()
        with begin(self.datastore) as connection:
            for statement in self.create_statements:
                connection.execute(text(statement))

    def _insert_events(
        self, session: Session, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        for tracking in page_trackings(kwargs):
            # Refused (IntegrityError) unless the recorded position is below the
            # page; the last event's tracking record follows in this transaction.
            self._insert_tracking(session, tracking)
        super()._insert_events(session, stored_events, **kwargs)

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def record_failure(
        self, upstream: str, position: int, event: str, error: str
    ) -> FollowerFailure:
        """Records a failure; attempts count up while the position stays the same."""
        with self.transaction(commit=True) as session:
            row = (
                session.execute(
                    text(
                        f"SELECT {FAILURE_COLUMNS} FROM {self.failures_table} "
                        "WHERE upstream=:upstream FOR UPDATE"
                    ),
                    {"upstream": upstream},
                )
                .mappings()
                .first()
            )
            failure = next_failure(
                _failure(row) if row else None, upstream, position, event, error
            )
            session.execute(
                text(
                    f"INSERT INTO {self.failures_table} ({FAILURE_COLUMNS}) VALUES "
                    "(:upstream,:position,:event,:error,:attempts,:first,:last) "
                    "ON DUPLICATE KEY UPDATE position=VALUES(position), "
                    "event=VALUES(event), error=VALUES(error), "
                    "attempts=VALUES(attempts), "
                    "first_failed_at=VALUES(first_failed_at), "
                    "last_failed_at=VALUES(last_failed_at)"
                ),
                {
                    "upstream": failure.upstream,
                    "position": failure.position,
                    "event": failure.event,
                    "error": failure.error,
                    "attempts": failure.attempts,
                    "first": _utc(failure.first_failed_at),
                    "last": _utc(failure.last_failed_at),
                },
            )
        return failure

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def clear_failures(self, upstream: str, up_to: int) -> None:
        """Forgets failures in upstream at or before position up_to."""
        with self.transaction(commit=True) as session:
            session.execute(
                text(
                    f"DELETE FROM {self.failures_table} "
                    "WHERE upstream=:upstream AND position<=:up_to"
                ),
                {"upstream": upstream, "up_to": up_to},
            )

    def select_failures(self) -> list[FollowerFailure]:
        """Every failure recorded (none if the table does not exist yet)."""
        if not self._table_exists(self.failures_table):
            return []
        rows = self._select(
            f"SELECT {FAILURE_COLUMNS} FROM {self.failures_table} ORDER BY upstream"
        )
        return [_failure(row) for row in rows]

    def _table_exists(self, table: str) -> bool:
        rows = self._select(
            "SELECT COUNT(*) AS present FROM information_schema.tables "
            "WHERE table_schema=DATABASE() AND table_name=:table",
            {"table": table},
        )
        return bool(rows[0]["present"])

    # Like the library's own reads: a connection the server dropped is replaced.
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _select(
        self, statement: str, params: Mapping[str, object] | None = None
    ) -> list[Mapping[Any, Any]]:
        # A connection of its own, not the plugin's transaction of this context,
        # which may belong to another application's datastore.
        with connect(self.datastore) as connection:
            result = connection.execute(text(statement), dict(params or {}))
            return list(result.mappings().all())


def _utc(moment: datetime) -> datetime:
    """As DATETIME keeps it: UTC, without the zone."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def _hex_or_none(value: UUID | None) -> str | None:
    return None if value is None else value.hex


def _uuid_or_none(value: str | None) -> UUID | None:
    return None if value is None else UUID(value)


def _failure(row: Mapping[Any, Any]) -> FollowerFailure:
    return FollowerFailure(
        upstream=row["upstream"],
        position=int(row["position"]),
        event=row["event"],
        error=row["error"],
        attempts=int(row["attempts"]),
        first_failed_at=_aware(row["first_failed_at"]),
        last_failed_at=_aware(row["last_failed_at"]),
    )

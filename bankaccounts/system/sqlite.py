"""The interface's read model in SQLite, written with the tracking record."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.sqlite import SQLiteProcessRecorder

from bankaccounts.system.followers import (
    FAILURE_COLUMNS,
    FollowerFailure,
    FollowerRecorder,
    next_failure,
    page_trackings,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteCursor


class SQLiteFollowerRecorder(SQLiteProcessRecorder, FollowerRecorder):
    """The library's SQLite process recorder, with the page guard and failures."""

    def construct_create_table_statements(self) -> list[str]:
        """Adds the failures table to the library's tables."""
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS follower_failures ("
            "upstream TEXT PRIMARY KEY, position INTEGER NOT NULL, "
            "event TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, "
            "first_failed_at TEXT NOT NULL, last_failed_at TEXT NOT NULL)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        for tracking in page_trackings(kwargs):
            # Refused (IntegrityError) unless the recorded position is below the
            # page; the last event's tracking record follows in this transaction.
            self._insert_tracking(c, tracking)
        return super()._insert_events(c, stored_events, **kwargs)

    def record_failure(
        self, upstream: str, position: int, event: str, error: str
    ) -> FollowerFailure:
        """Records a failure; attempts count up while the position stays the same."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"SELECT {FAILURE_COLUMNS} FROM follower_failures WHERE upstream=?",
                (upstream,),
            )
            row = c.fetchone()
            failure = next_failure(
                _failure(row) if row else None, upstream, position, event, error
            )
            c.execute(
                "INSERT OR REPLACE INTO follower_failures VALUES (?,?,?,?,?,?,?)",
                (
                    failure.upstream,
                    failure.position,
                    failure.event,
                    failure.error,
                    failure.attempts,
                    failure.first_failed_at.isoformat(),
                    failure.last_failed_at.isoformat(),
                ),
            )
        return failure

    def clear_failures(self, upstream: str, up_to: int) -> None:
        """Forgets failures in upstream at or before position up_to."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "DELETE FROM follower_failures WHERE upstream=? AND position<=?",
                (upstream, up_to),
            )

    def select_failures(self) -> list[FollowerFailure]:
        """Every failure recorded (none if the table does not exist yet)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT name FROM sqlite_master "
                "WHERE type='table' AND name='follower_failures'"
            )
            if c.fetchone() is None:
                return []
            c.execute(f"SELECT {FAILURE_COLUMNS} FROM follower_failures")
            return [_failure(row) for row in c.fetchall()]


def _failure(row: sqlite3.Row) -> FollowerFailure:
    return FollowerFailure(
        upstream=row["upstream"],
        position=int(row["position"]),
        event=row["event"],
        error=row["error"],
        attempts=int(row["attempts"]),
        first_failed_at=datetime.fromisoformat(row["first_failed_at"]),
        last_failed_at=datetime.fromisoformat(row["last_failed_at"]),
    )

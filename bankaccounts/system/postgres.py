"""The interface's read model in PostgreSQL, written with the tracking record."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import (
    PostgresProcessRecorder,
)
from eventsourcing.utils import retry
from psycopg.sql import SQL, Composed, Identifier

from bankaccounts.deploy.heartbeat import workers_table_statement
from bankaccounts.system.followers import (
    FAILURE_COLUMNS,
    FollowerFailure,
    FollowerRecorder,
    next_failure,
    page_trackings,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresDatastore
    from psycopg import Cursor
    from psycopg.rows import DictRow


logger = logging.getLogger("bankaccounts.feed")


class PostgresFollowerRecorder(PostgresProcessRecorder, FollowerRecorder):
    """The library's process recorder, with the page guard and the failures table."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        """Names the failures table after the application's events table."""
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        prefix = events_table_name.removesuffix("_events")
        self.failures_table = f"{prefix}_failures"
        self.sql_create_statements.append(
            self._failures_sql(
                "CREATE TABLE IF NOT EXISTS {schema}.{failures} ("
                "upstream text PRIMARY KEY, position bigint NOT NULL, "
                "event text NOT NULL, error text NOT NULL, attempts int NOT NULL, "
                "first_failed_at timestamptz NOT NULL, "
                "last_failed_at timestamptz NOT NULL)"
            )
        )
        # The workers' heartbeats, for `bankaccounts status` (issue 14): made with
        # each follower's tables, so init-db makes it.
        self.sql_create_statements.append(workers_table_statement(datastore.schema))

    def _failures_sql(self, statement: str) -> Composed:
        return SQL(statement).format(
            schema=Identifier(self.datastore.schema),
            failures=Identifier(self.failures_table),
        )

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> None:
        for tracking in page_trackings(kwargs):
            # Refused (IntegrityError) unless the recorded position is below the
            # page; the last event's tracking record follows in this transaction.
            self._insert_tracking(curs, tracking)
        super()._insert_events(curs, stored_events, **kwargs)

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def record_failure(
        self, upstream: str, position: int, event: str, error: str
    ) -> FollowerFailure:
        """Records a failure; attempts count up while the position stays the same."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._failures_sql(
                    f"SELECT {FAILURE_COLUMNS} FROM {{schema}}.{{failures}} "
                    "WHERE upstream=%s FOR UPDATE"
                ),
                (upstream,),
            )
            row = curs.fetchone()
            failure = next_failure(
                FollowerFailure(**row) if row else None,
                upstream,
                position,
                event,
                error,
            )
            curs.execute(
                self._failures_sql(
                    f"INSERT INTO {{schema}}.{{failures}} ({FAILURE_COLUMNS}) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (upstream) DO UPDATE "
                    "SET position=EXCLUDED.position, event=EXCLUDED.event, "
                    "error=EXCLUDED.error, attempts=EXCLUDED.attempts, "
                    "first_failed_at=EXCLUDED.first_failed_at, "
                    "last_failed_at=EXCLUDED.last_failed_at"
                ),
                (
                    failure.upstream,
                    failure.position,
                    failure.event,
                    failure.error,
                    failure.attempts,
                    failure.first_failed_at,
                    failure.last_failed_at,
                ),
            )
        return failure

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def clear_failures(self, upstream: str, up_to: int) -> None:
        """Forgets failures in upstream at or before position up_to."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._failures_sql(
                    "DELETE FROM {schema}.{failures} WHERE upstream=%s AND position<=%s"
                ),
                (upstream, up_to),
            )

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def select_failures(self) -> list[FollowerFailure]:
        """Every failure recorded (none if the table does not exist yet)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT to_regclass(quote_ident(%s) || '.' || quote_ident(%s)) "
                "IS NOT NULL AS present",
                (self.datastore.schema, self.failures_table),
            )
            row = curs.fetchone()
            if not row or not row["present"]:
                return []
            curs.execute(
                self._failures_sql(
                    f"SELECT {FAILURE_COLUMNS} FROM {{schema}}.{{failures}} "
                    "ORDER BY upstream"
                )
            )
            return [FollowerFailure(**row) for row in curs.fetchall()]

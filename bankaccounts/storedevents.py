"""Reading stored events back by their positions, with their notification ids.

After a write whose outcome is unknown (its commit was acknowledged to nobody, so
the library's retry was refused by the unique key), the application asks what is
stored at the positions it tried to write. The library has no such query: its
recorders read an aggregate's events or the notification log, not notification ids
by position, so each store is asked here in one query (one transaction in SQLite).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from eventsourcing.persistence import InterfaceError, Notification, OperationalError
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import retry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Recorder

#: An event's place: its aggregate's id and its version.
Position = tuple[UUID, int]


def select_stored_events(
    recorder: Recorder, positions: Sequence[Position]
) -> dict[Position, Notification] | None:
    """What is stored at each position (absent where nothing is); None: can't ask."""
    if not positions:
        return {}
    # A recorder may answer itself (the MySQL one, bankaccounts/mysql.py), so that
    # this module does not import the optional SQLAlchemy plugin.
    own_select = getattr(recorder, "select_stored_events", None)
    if own_select is not None:
        return cast("dict[Position, Notification]", own_select(positions))
    if isinstance(recorder, SQLiteApplicationRecorder):
        return _select_sqlite(recorder, positions)
    if isinstance(recorder, POPOApplicationRecorder):
        return _select_popo(recorder, positions)
    try:  # psycopg is installed only where PostgreSQL is used
        from eventsourcing.postgres import PostgresApplicationRecorder
    except ImportError:  # pragma: no cover
        return None
    if isinstance(recorder, PostgresApplicationRecorder):
        found: dict[Position, Notification] = _select_postgres(recorder, positions)
        return found
    return None


def _select_sqlite(
    recorder: SQLiteApplicationRecorder, positions: Sequence[Position]
) -> dict[Position, Notification]:
    statement = (
        f"SELECT rowid, topic, state FROM {recorder.events_table_name} "
        "WHERE originator_id=? AND originator_version=?"
    )
    found: dict[Position, Notification] = {}
    with recorder.datastore.transaction(commit=False) as cursor:
        for originator_id, version in positions:
            stored_id = (
                originator_id.hex if isinstance(originator_id, UUID) else originator_id
            )
            cursor.execute(statement, (stored_id, version))
            row = cursor.fetchone()
            if row is not None:
                found[originator_id, version] = Notification(
                    originator_id=originator_id,
                    originator_version=version,
                    topic=row["topic"],
                    state=row["state"],
                    id=row["rowid"],
                )
    return found


def _select_popo(
    recorder: POPOApplicationRecorder, positions: Sequence[Position]
) -> dict[Position, Notification]:
    found: dict[Position, Notification] = {}
    with recorder._database_lock:
        for originator_id, version in positions:
            versions = recorder._stored_events_index.get(str(originator_id), {})
            index = versions.get(version)
            if index is not None:
                stored = recorder._stored_events[index]
                found[originator_id, version] = Notification(
                    originator_id=originator_id,
                    originator_version=version,
                    topic=stored.topic,
                    state=stored.state,
                    id=index + 1,  # as the in-memory recorder numbers them
                )
    return found


@retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
def _select_postgres(
    recorder: Any, positions: Sequence[Position]
) -> dict[Position, Notification]:
    from psycopg.sql import SQL, Identifier

    statement = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state "
        "FROM {schema}.{table} WHERE (originator_id, originator_version) IN ({keys})"
    ).format(
        schema=Identifier(recorder.datastore.schema),
        table=Identifier(recorder.events_table_name),
        keys=SQL(", ").join([SQL("(%s, %s)")] * len(positions)),
    )
    params = [value for position in positions for value in position]
    by_key = {
        (str(originator_id), version): (originator_id, version)
        for originator_id, version in positions
    }
    found: dict[Position, Notification] = {}
    with (
        recorder.datastore.get_connection() as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, params)
        for row in cursor.fetchall():
            position = by_key[str(row["originator_id"]), row["originator_version"]]
            found[position] = Notification(
                originator_id=position[0],
                originator_version=position[1],
                topic=row["topic"],
                state=bytes(row["state"]),
                id=row["notification_id"],
            )
    return found

"""Reading stored events back by their positions, with their notification ids.

After a write whose outcome is unknown (its commit was acknowledged to nobody, so
the library's retry was refused by the unique key), the application asks what is
stored at the positions it tried to write. A transaction's timeline (journey.py)
asks for the events of a few aggregates with their notification ids. The library
has no such query: its recorders read an aggregate's events or the notification
log, not notification ids by aggregate, so each store is asked here in one query
(one transaction in SQLite), through the events' primary key.
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


def select_aggregate_notifications(
    recorder: Recorder, originator_ids: Sequence[UUID]
) -> dict[UUID, list[Notification]]:
    """The stored events of these aggregates in version order, each with its
    notification id, in one indexed read (the events' primary key), never a scan.

    Aggregates with no events are absent. Raises NotImplementedError for a
    recorder of another store.
    """
    if not originator_ids:
        return {}
    if isinstance(recorder, SQLiteApplicationRecorder):
        rows = _aggregates_sqlite(recorder, originator_ids)
    elif isinstance(recorder, POPOApplicationRecorder):
        rows = _aggregates_popo(recorder, originator_ids)
    elif hasattr(recorder, "events_record_cls"):  # the SQLAlchemy plugin's
        rows = _aggregates_sqlalchemy(recorder, originator_ids)
    elif _is_postgres(recorder):
        rows = _aggregates_postgres(recorder, originator_ids)
    else:
        msg = f"no notification ids from {type(recorder).__name__}"
        raise NotImplementedError(msg)
    by_key = {str(originator_id): originator_id for originator_id in originator_ids}
    found: dict[UUID, list[Notification]] = {}
    for notification in sorted(rows, key=lambda n: n.id):
        key = by_key[_plain(notification.originator_id)]
        found.setdefault(key, []).append(
            Notification(
                originator_id=key,
                originator_version=notification.originator_version,
                topic=notification.topic,
                state=notification.state,
                id=notification.id,
            )
        )
    for notifications in found.values():
        notifications.sort(key=lambda n: n.originator_version)
    return found


def notification_ids(
    recorder: Recorder, originator_ids: Sequence[UUID]
) -> dict[UUID, dict[int, int]]:
    """The notification id of each event of these aggregates, by version."""
    return {
        originator_id: {n.originator_version: n.id for n in notifications}
        for originator_id, notifications in select_aggregate_notifications(
            recorder, originator_ids
        ).items()
    }


def _is_postgres(recorder: Recorder) -> bool:
    try:  # psycopg is installed only where PostgreSQL is used
        from eventsourcing.postgres import PostgresApplicationRecorder
    except ImportError:  # pragma: no cover
        return False
    return isinstance(recorder, PostgresApplicationRecorder)


def _plain(originator_id: object) -> str:
    """An id as str(UUID) spells it, from a UUID or a store's text."""
    if isinstance(originator_id, UUID):
        return str(originator_id)
    return str(UUID(str(originator_id)))


def _aggregates_sqlite(
    recorder: SQLiteApplicationRecorder, originator_ids: Sequence[UUID]
) -> list[Notification]:
    marks = ",".join("?" for _ in originator_ids)
    statement = (
        f"SELECT rowid, originator_id, originator_version, topic, state "
        f"FROM {recorder.events_table_name} WHERE originator_id IN ({marks})"
    )
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, [o.hex for o in originator_ids])
        return [
            Notification(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=row["state"],
                id=row["rowid"],
            )
            for row in cursor.fetchall()
        ]


def _aggregates_popo(
    recorder: POPOApplicationRecorder, originator_ids: Sequence[UUID]
) -> list[Notification]:
    found: list[Notification] = []
    with recorder._database_lock:
        for originator_id in originator_ids:
            versions = recorder._stored_events_index.get(str(originator_id), {})
            for version, index in versions.items():
                stored = recorder._stored_events[index]
                found.append(
                    Notification(
                        originator_id=originator_id,
                        originator_version=version,
                        topic=stored.topic,
                        state=stored.state,
                        id=index + 1,  # as the in-memory recorder numbers them
                    )
                )
    return found


@retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
def _aggregates_postgres(
    recorder: Any, originator_ids: Sequence[UUID]
) -> list[Notification]:
    from psycopg.sql import SQL, Identifier

    statement = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state "
        "FROM {schema}.{table} WHERE originator_id = ANY(%s)"
    ).format(
        schema=Identifier(recorder.datastore.schema),
        table=Identifier(recorder.events_table_name),
    )
    with (
        recorder.datastore.get_connection() as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, (list(originator_ids),))
        return [
            Notification(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
                id=row["notification_id"],
            )
            for row in cursor.fetchall()
        ]


def _aggregates_sqlalchemy(
    recorder: Any, originator_ids: Sequence[UUID]
) -> list[Notification]:
    """Through the plugin's table (MySQL and MariaDB): its unique index on
    (originator_id, originator_version) answers the read."""
    from sqlalchemy import select

    table = recorder.events_record_cls.__table__
    statement = select(
        table.c.id,
        table.c.originator_id,
        table.c.originator_version,
        table.c.topic,
        table.c.state,
    ).where(table.c.originator_id.in_(list(originator_ids)))
    with recorder.datastore.transaction(commit=False) as session:
        return [
            Notification(
                originator_id=row.originator_id,
                originator_version=row.originator_version,
                topic=row.topic,
                state=bytes(row.state),
                id=row.id,
            )
            for row in session.execute(statement)
        ]

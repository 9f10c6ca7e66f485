"""Each worker's heartbeat: a row kept fresh, so `bankaccounts status` knows who lives.

A worker process inserts a row (its id, kind, host, pid, state) once connected,
updates it every HEARTBEAT_INTERVAL seconds from a thread on a connection of its own,
and deletes it when it stops cleanly. A row is alive while it was updated within
STALE_AFTER seconds and the server still has the connection that updated it: a
kill -9 ends that connection at once (the kernel closes the socket), a frozen or
cut-off host stops updating. The row's timestamps are the server's (now()), so the
hosts' clocks never matter.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID, uuid4

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed, Identifier

from bankaccounts import logs

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

logger = logging.getLogger("bankaccounts.deploy.worker")

#: Seconds between a worker's updates of its row.
HEARTBEAT_INTERVAL = 2.0

#: A row not updated for this long is a worker that is gone (three missed beats).
STALE_AFTER = 3 * HEARTBEAT_INTERVAL

#: The table, in the schema of the applications' tables (init-db creates it).
WORKERS_TABLE = "bankaccounts_workers"

#: starting: connecting, or waiting to try again after a failure; waiting: another
#: worker of its kind holds the lock; running: it holds the lock and follows.
WorkerState = Literal["starting", "waiting", "running"]

COLUMNS = "id, kind, host, pid, state, started_at, last_beat"


def workers_table_statement(schema: str) -> Composed:
    """CREATE TABLE IF NOT EXISTS for the heartbeats, in the schema."""
    return SQL(
        "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
        "id uuid PRIMARY KEY, kind text NOT NULL, host text NOT NULL, "
        "pid int NOT NULL, state text NOT NULL, "
        "started_at timestamptz NOT NULL, last_beat timestamptz NOT NULL, "
        "backend_pid int)"
    ).format(schema=Identifier(schema), table=Identifier(WORKERS_TABLE))


def _explain(error: psycopg.Error) -> str:
    if isinstance(error, psycopg.errors.UndefinedTable):
        return f"no table {WORKERS_TABLE}; run bankaccounts init-db"
    return logs.one_line(error)


def _sql(statement: str, schema: str) -> Composed:
    return SQL(statement).format(
        schema=Identifier(schema), table=Identifier(WORKERS_TABLE)
    )


@dataclass(frozen=True)
class WorkerBeat:
    """A worker process as its row shows it, read by `bankaccounts status`."""

    id: UUID
    kind: str  # sagas, accounts or interface
    host: str
    pid: int
    state: str  # starting, waiting or running (as the worker last wrote)
    started_at: datetime
    last_beat: datetime
    age: float  # seconds since the last beat, by the server's clock
    connected: bool  # the server still has the connection that beat

    @property
    def alive(self) -> bool:
        """Its connection is open and it beat within STALE_AFTER seconds."""
        return self.connected and self.age < STALE_AFTER

    @property
    def shown_state(self) -> str:
        """Its state, or gone if it is not alive."""
        return self.state if self.alive else "gone"

    def to_json(self) -> dict[str, Any]:
        """As JSON-ready values."""
        return {
            "id": str(self.id),
            "kind": self.kind,
            "host": self.host,
            "pid": self.pid,
            "state": self.shown_state,
            "alive": self.alive,
            "started_at": self.started_at.isoformat(),
            "last_beat": self.last_beat.isoformat(),
            "seconds_since_last_beat": round(self.age, 1),
        }


def read_workers(connection: psycopg.Connection[Any], schema: str) -> list[WorkerBeat]:
    """Every worker's row, oldest first (none if the table does not exist yet)."""
    with connection.cursor(row_factory=dict_row) as curs:
        curs.execute(
            "SELECT to_regclass(quote_ident(%s) || '.' || quote_ident(%s)) "
            "IS NOT NULL AS present",
            (schema, WORKERS_TABLE),
        )
        row = curs.fetchone()
        if not row or not row["present"]:
            return []
        curs.execute(
            _sql(
                f"SELECT {COLUMNS}, "
                "extract(epoch FROM now() - last_beat)::float AS age, "
                "EXISTS (SELECT 1 FROM pg_stat_activity a "
                "WHERE a.pid = w.backend_pid) AS connected "
                "FROM {schema}.{table} w ORDER BY started_at, id",
                schema,
            )
        )
        return [WorkerBeat(**row) for row in curs.fetchall()]


class Heartbeat:
    """Keeps a worker's row fresh from a thread of its own, until stop()."""

    def __init__(
        self,
        kind: str,
        connect_kwargs: Mapping[str, Any],
        schema: str,
        *,
        interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        """The heartbeat of a worker of this kind (not started)."""
        self.id = uuid4()
        self.kind = kind
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.connect_kwargs = dict(connect_kwargs)
        self.schema = schema
        self.interval = interval
        self._state: WorkerState = "starting"
        self.started_at: datetime | None = None  # the server's time of the first beat
        self.beats = 0  # rows written
        self.attempts = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connection: psycopg.Connection[Any] | None = None
        self._connecting = False
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat {kind}", daemon=True
        )

    @property
    def state(self) -> WorkerState:
        """What the row says the worker is doing."""
        return self._state

    @state.setter
    def state(self, state: WorkerState) -> None:
        if state != self._state:
            self._state = state
            self._wake.set()  # shown at once, not at the next beat

    def start(self) -> None:
        """Starts beating."""
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stops beating and deletes the row (waiting at most timeout seconds).

        A thread in a connect attempt is not waited for: the row, if any, is not
        updated any more, and soon shows the worker gone.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive() and not self._connecting:
            self._thread.join(timeout)

    def _run(self) -> None:
        logs.bind(application=self.kind.capitalize())
        failing = False
        while not self._stopping.is_set():
            try:
                self._beat()
            except psycopg.Error as error:
                self._disconnect()
                if not failing:
                    # Once per run of failures: the worker logs its own errors too.
                    logger.warning(
                        "%s: cannot keep its heartbeat: %s",
                        self.kind.capitalize(),
                        _explain(error),
                    )
                failing = True
            except Exception:  # a bug: said with its traceback, and tried again
                self._disconnect()
                logger.exception("%s: heartbeat failed", self.kind.capitalize())
                failing = True
            else:
                if failing:
                    logger.info("%s: heartbeat again", self.kind.capitalize())
                failing = False
            self._wake.wait(self.interval)
            self._wake.clear()
        self._delete()

    def _beat(self) -> None:
        self.attempts += 1
        if self._connection is None or self._connection.closed:
            self._connecting = True
            try:
                self._connection = psycopg.connect(
                    **self.connect_kwargs, autocommit=True
                )
            finally:
                self._connecting = False
        with self._connection.transaction():
            row = self._connection.execute(
                _sql(
                    f"INSERT INTO {{schema}}.{{table}} ({COLUMNS}, backend_pid) "
                    "VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), now(), "
                    "pg_backend_pid()) ON CONFLICT (id) DO UPDATE SET "
                    "state=EXCLUDED.state, last_beat=EXCLUDED.last_beat, "
                    "backend_pid=EXCLUDED.backend_pid RETURNING started_at",
                    self.schema,
                ),
                (
                    self.id,
                    self.kind,
                    self.host,
                    self.pid,
                    self._state,
                    self.started_at,
                ),
            ).fetchone()
            # Rows of its kind that stopped beating: workers that died. Once one
            # of the kind is alive, status needs them no more.
            self._connection.execute(
                _sql(
                    "DELETE FROM {schema}.{table} WHERE kind=%s AND id<>%s "
                    "AND last_beat < now() - make_interval(secs => %s)",
                    self.schema,
                ),
                (self.kind, self.id, STALE_AFTER),
            )
        if row is not None and self.started_at is None:
            self.started_at = row[0]
        self.beats += 1

    def _delete(self) -> None:
        connection = self._connection
        if connection is None or connection.closed:
            return
        try:
            connection.execute(
                _sql("DELETE FROM {schema}.{table} WHERE id=%s", self.schema),
                (self.id,),
            )
        except psycopg.Error as error:  # it shows as gone in a few seconds
            logger.warning(
                "%s: could not delete its heartbeat: %s", self.kind.capitalize(), error
            )
        finally:
            self._disconnect()

    def _disconnect(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

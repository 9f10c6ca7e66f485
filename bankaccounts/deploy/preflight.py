"""Before a command uses PostgreSQL: is it there, are the tables, do connections fit.

The library's pool waits up to POSTGRES_CONNECT_TIMEOUT (30 s by default) for a
connection and then says only "couldn't get a connection after 30.00 sec"; a worker
would retry that for ever. So each command first connects once, itself, with a short
timeout, and on failure stops with libpq's own message ("database "x" does not
exist", "password authentication failed", "Connection refused") and a hint. Once
running, a worker that loses its connection still reconnects with backoff.

The connection budget is worked out here too: the most connections a process may
hold (each application's pool at its largest, plus the worker's own connections),
compared with what the server's max_connections leaves.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from bankaccounts.logs import one_line

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

logger = logging.getLogger("bankaccounts.deploy.preflight")

#: Seconds to wait for the first connection when POSTGRES_CONNECT_TIMEOUT is unset.
DEFAULT_CHECK_TIMEOUT = 5

#: The library's pool sizes when POSTGRES_POOL_SIZE / POSTGRES_MAX_OVERFLOW are unset.
LIBRARY_POOL_SIZE = 5
LIBRARY_MAX_OVERFLOW = 10

#: Causes libpq reports, and what to check for each.
HINTS = (
    (
        re.compile(r"database \".*\" does not exist"),
        "create it (createdb), or set POSTGRES_DBNAME",
    ),
    (
        re.compile(r"role \".*\" does not exist"),
        "create the user, or set POSTGRES_USER",
    ),
    (
        re.compile(r"password authentication failed|no password supplied"),
        "check POSTGRES_USER and POSTGRES_PASSWORD",
    ),
    (
        re.compile(r"Connection refused|could not translate host name|timeout"),
        "is the server running, and are POSTGRES_HOST and POSTGRES_PORT right?",
    ),
)


#: The tables a process of the distributed deployment reads (init-db makes them).
DISTRIBUTED_TABLES = (
    "commands_events",
    "sagas_events",
    "accounts_events",
    "interface_events",
    "interface_accounts",
    "interface_transactions",
    "interface_feed",
    "users_events",
    "users_snapshots",
)

#: The pools of a web process of the distributed deployment (per uvicorn worker):
#: Sagas only for the status in GET /api/system and /metrics; the feed's LISTEN
#: connection is one of Interface's; Users checks every request's token.
WEB_APPLICATIONS = ("Commands", "Accounts", "Interface", "Sagas", "Users")

#: Pool sizes, unless the environment says otherwise. A web process answers from up
#: to 40 threads, but each query holds a connection for a millisecond or two: five
#: per pool keep requests from waiting long, where the library's 5 + 10 let two web
#: processes hold 34 idle connections after a burst. A worker processes one page at
#: a time; its pools serve that, a subscription (LISTEN and reads), and /metrics.
WEB_POOL = {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "4"}
WORKER_POOL = {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "2"}

#: A worker's connections outside its pools: the advisory lock's and the heartbeat's.
WORKER_OWN_CONNECTIONS = (("lock", 1), ("heartbeat", 1))


class DatabaseUnavailableError(Exception):
    """PostgreSQL cannot be used as configured; the message says why."""


class MissingTablesError(DatabaseUnavailableError):
    """The database answers, but init-db has not made the tables (in this schema)."""

    def __init__(self, message: str, missing: Sequence[str]) -> None:
        """The message, and the tables missing."""
        super().__init__(message)
        self.missing = list(missing)


def connect_kwargs(environ: Mapping[str, str]) -> dict[str, Any]:
    """psycopg.connect's arguments from the POSTGRES_* variables, as the library's."""
    password = environ.get("POSTGRES_PASSWORD", "")
    topic = environ.get("POSTGRES_GET_PASSWORD_TOPIC")
    if topic:
        from eventsourcing.utils import resolve_topic

        password = resolve_topic(topic)()
    return {
        "dbname": environ.get("POSTGRES_DBNAME", ""),
        "host": environ.get("POSTGRES_HOST", ""),
        "port": environ.get("POSTGRES_PORT") or "5432",
        "user": environ.get("POSTGRES_USER", ""),
        "password": password,
    }


def schema_of(environ: Mapping[str, str]) -> str:
    """The schema of the applications' tables, as the library reads POSTGRES_SCHEMA."""
    return (environ.get("POSTGRES_SCHEMA") or "").strip() or "public"


def where(environ: Mapping[str, str]) -> str:
    """user@host:port/dbname (never the password)."""
    return (
        f"{environ.get('POSTGRES_USER', '')}@{environ.get('POSTGRES_HOST', '')}:"
        f"{environ.get('POSTGRES_PORT') or '5432'}/{environ.get('POSTGRES_DBNAME', '')}"
    )


def explain(error: psycopg.Error) -> str:
    """libpq's message on one line, with a hint at what to check."""
    text = one_line(error).removeprefix("connection failed: ")
    for pattern, hint in HINTS:
        if pattern.search(text):
            return f"{text} ({hint})"
    return text


def connect(
    environ: Mapping[str, str], timeout: float | None = None
) -> psycopg.Connection[Any]:
    """A connection, or DatabaseUnavailableError with libpq's reason within timeout."""
    if timeout is None:
        timeout = float(
            environ.get("POSTGRES_CONNECT_TIMEOUT") or DEFAULT_CHECK_TIMEOUT
        )
    try:
        return psycopg.connect(
            **connect_kwargs(environ),
            connect_timeout=max(1, round(timeout)),
            autocommit=True,
        )
    except psycopg.Error as error:
        msg = f"cannot connect to PostgreSQL at {where(environ)}: {explain(error)}"
        raise DatabaseUnavailableError(msg) from None


def missing_tables(
    connection: psycopg.Connection[Any], schema: str, tables: Sequence[str]
) -> list[str]:
    """Those of the tables that the schema lacks."""
    missing = []
    for table in tables:
        row = connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL",
            (sql.Identifier(schema, table).as_string(connection),),
        ).fetchone()
        if not (row and row[0]):
            missing.append(table)
    return missing


@dataclass
class Budget:
    """The most connections a process may hold, and of what."""

    parts: list[tuple[str, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """The sum of the parts."""
        return sum(count for _, count in self.parts)

    def add(self, what: str, count: int) -> None:
        """Adds a part."""
        self.parts.append((what, count))

    def describe(self) -> str:
        """ "Commands pool 5 + Accounts pool 5 + ... = 20"."""
        terms = " + ".join(f"{what} {count}" for what, count in self.parts)
        return f"{terms} = {self.total}"


def pool_limit(environ: Mapping[str, str], application: str) -> int:
    """An application's pool at its largest: POSTGRES_POOL_SIZE + MAX_OVERFLOW.

    The library reads each setting with the application's name as a prefix first
    (ACCOUNTS_POSTGRES_POOL_SIZE), then without.
    """

    def setting(key: str, default: int) -> int:
        for name in (f"{application.upper()}_{key}", key):
            text = environ.get(name, "").strip()
            if text:
                return int(text)
        return default

    return setting("POSTGRES_POOL_SIZE", LIBRARY_POOL_SIZE) + setting(
        "POSTGRES_MAX_OVERFLOW", LIBRARY_MAX_OVERFLOW
    )


def process_budget(
    environ: Mapping[str, str],
    applications: Sequence[str],
    *,
    own_connections: Sequence[tuple[str, int]] = (),
    processes: int = 1,
) -> Budget:
    """The most connections of a process (times processes, for uvicorn's workers).

    Each application has a pool of its own; a LISTEN connection (a subscription's,
    the web's feed) is one of its pool's. own_connections are opened outside pools
    (a worker's lock and heartbeat).
    """
    budget = Budget()
    for application in applications:
        budget.add(f"{application} pool", pool_limit(environ, application) * processes)
    for what, count in own_connections:
        budget.add(what, count * processes)
    return budget


def worker_budget(environ: Mapping[str, str], application: str) -> Budget:
    """A worker's connections: its own pool, one per upstream, lock and heartbeat."""
    from bankaccounts.system.definition import BankAccountSystem

    upstreams = BankAccountSystem().follows[application]
    return process_budget(
        environ, [application, *upstreams], own_connections=WORKER_OWN_CONNECTIONS
    )


@dataclass(frozen=True)
class ServerRoom:
    """How many more connections the server takes."""

    max_connections: int
    reserved: int  # for superusers (and pg_use_reserved_connections)
    in_use: int

    @property
    def free(self) -> int:
        """Connections left for ordinary users."""
        return self.max_connections - self.reserved - self.in_use


def server_room(connection: psycopg.Connection[Any]) -> ServerRoom:
    """max_connections, the reserved ones, and those in use (not counting ours)."""
    row = connection.execute(
        "SELECT current_setting('max_connections')::int, "
        "current_setting('superuser_reserved_connections')::int "
        "+ coalesce(current_setting('reserved_connections', true)::int, 0), "
        "(SELECT count(*) FROM pg_stat_activity "
        " WHERE backend_type = 'client backend')::int - 1"
    ).fetchone()
    assert row is not None
    return ServerRoom(int(row[0]), int(row[1]), int(row[2]))


def check_database(
    environ: Mapping[str, str],
    *,
    tables: Sequence[str] = (),
    budget: Budget | None = None,
    timeout: float | None = None,
) -> ServerRoom:
    """Connects once; raises DatabaseUnavailableError if the server or a table is
    missing, and warns if the budget exceeds what max_connections leaves."""
    with connect(environ, timeout) as connection:
        schema = schema_of(environ)
        missing = missing_tables(connection, schema, tables)
        if missing:
            msg = (
                f"the tables {', '.join(missing)} are not in schema {schema} of "
                f"{where(environ)}: run `bankaccounts init-db` first"
            )
            raise MissingTablesError(msg, missing)
        room = server_room(connection)
    if budget is not None and budget.total > room.free:
        logger.warning(
            "this process may open up to %d connections (%s), but the server's "
            "max_connections (%d) leaves %d (%d in use, %d reserved): raise "
            "max_connections, or lower POSTGRES_POOL_SIZE / POSTGRES_MAX_OVERFLOW",
            budget.total,
            budget.describe(),
            room.max_connections,
            room.free,
            room.in_use,
            room.reserved,
        )
    return room

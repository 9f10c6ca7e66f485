"""MySQL and MariaDB through the eventsourcing-sqlalchemy plugin, in commit order.

A follower reads an upstream's notifications "after position N". That is safe only if
a row with a lower id can never commit after a row with a higher one. The plugin makes
sure of it on PostgreSQL alone (LOCK TABLE ... IN EXCLUSIVE MODE). InnoDB hands out
AUTO_INCREMENT ids when rows are inserted, not when they commit, so two writers of one
application can commit out of order, and a follower that read id 8 while id 7 was
still uncommitted never reads 7 (tests/test_mysql.py shows it happening).

Here every write to an application's events table first locks that application's row
in a small lock table (SELECT ... FOR UPDATE, inside the write's transaction), so the
writers of one application take their ids and commit one after another; InnoDB
releases the row with the commit or the rollback. Writers of different applications
do not wait for each other. The tracking record of a process application is read
with a locking read as well: the plugin's consistent read would let two instances of
a follower both record the same position.

Chosen by the configuration alone: BankApplication.construct_factory passes the
plugin's factory to mysql_factory(), which replaces it only when SQLALCHEMY_URL names
a MySQL or MariaDB database.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy.exc
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
)
from eventsourcing.utils import retry
from eventsourcing_sqlalchemy.datastore import SQLAlchemyDatastore, exception_classes
from eventsourcing_sqlalchemy.factory import SQLAlchemyFactory
from eventsourcing_sqlalchemy.recorders import (
    SQLAlchemyApplicationRecorder,
    SQLAlchemyProcessRecorder,
)
from sqlalchemy import (
    URL,
    Engine,
    and_,
    create_engine,
    insert,
    make_url,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.pool import NullPool

from bankaccounts.deploy.preflight import DatabaseUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from contextlib import AbstractContextManager
    from uuid import UUID

    from eventsourcing.persistence import InfrastructureFactory, Tracking
    from eventsourcing.utils import Environment
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

# The plugin names every tracking record class NotificationTrackingRecord, and
# SQLAlchemy warns at each one after the first; the classes work (they are looked
# up by table), so the warning says nothing to the person starting the server.
warnings.filterwarnings(
    "ignore",
    message="This declarative base already contains a class with the same class "
    "name and module name as eventsourcing_sqlalchemy",
    category=sqlalchemy.exc.SAWarning,
)

#: The SQLAlchemy dialects of MySQL and MariaDB.
MYSQL_DIALECTS = ("mysql", "mariadb")
#: One row per events table; a writer locks its application's row while it inserts.
LOCK_TABLE = "bankaccounts_write_locks"
LOCK_TABLE_STATEMENT = (
    f"CREATE TABLE IF NOT EXISTS {LOCK_TABLE} ("
    "name VARCHAR(191) NOT NULL PRIMARY KEY) ENGINE=InnoDB"
)


def is_mysql(datastore: SQLAlchemyDatastore) -> bool:
    """True if the datastore's engine speaks to MySQL or MariaDB."""
    engine = datastore.engine
    return engine is not None and engine.dialect.name in MYSQL_DIALECTS


def mysql_factory(factory: InfrastructureFactory[Any]) -> InfrastructureFactory[Any]:
    """The plugin's factory, or, if its URL is MySQL's, one with guarded recorders."""
    datastore = getattr(factory, "datastore", None)
    if datastore is None or not is_mysql(datastore):
        return factory
    datastore.engine.dispose()  # made but never connected: replaced below
    return MySQLFactory(factory.env)


class MySQLDatastore(SQLAlchemyDatastore):
    """The plugin's datastore, whose pool checks a connection before handing it out.

    After a server restart, or a connection the server ended (wait_timeout), the
    pool would otherwise hand out a dead connection and the write would fail once.
    """

    def __init__(self, **kwargs: Any) -> None:
        """Pings on checkout; renews connections older than an hour."""
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_recycle", 3600)
        super().__init__(**kwargs)


class MySQLFactory(SQLAlchemyFactory):
    """The plugin's factory with the recorders below; close() ends its connections."""

    datastore_class = MySQLDatastore

    def __init__(self, env: Environment) -> None:
        """As the plugin's, with this module's recorder classes."""
        super().__init__(env)
        self.application_recorder_class = MySQLApplicationRecorder
        self.process_recorder_class = MySQLProcessRecorder

    def close(self) -> None:
        """Closes the pool's connections (the plugin's factory leaves them open)."""
        if isinstance(self.datastore.engine, Engine):
            self.datastore.engine.dispose()


class MySQLApplicationRecorder(SQLAlchemyApplicationRecorder):
    """The plugin's recorder, whose writers commit in the order of their ids."""

    #: Off only in the test that shows what goes wrong without it.
    guard_commit_order: ClassVar[bool] = True

    @property
    def lock_name(self) -> str:
        """The application's row in the lock table: its events table's name."""
        if self.schema_name:
            return f"{self.schema_name}.{self.events_table_name}"
        return self.events_table_name

    def create_table(self) -> None:
        """The plugin's tables, and the lock table with this application's row."""
        super().create_table()
        with begin(self.datastore) as connection:
            connection.execute(text(LOCK_TABLE_STATEMENT))
            connection.execute(
                text(f"INSERT IGNORE INTO {LOCK_TABLE} (name) VALUES (:name)"),
                {"name": self.lock_name},
            )

    def _lock_table(self, session: Session) -> None:
        if self.guard_commit_order:
            lock_application(session, self.lock_name)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_stored_events(
        self, positions: Sequence[tuple[UUID, int]]
    ) -> dict[tuple[UUID, int], Notification]:
        """What is stored at each position (aggregate id, version), with its id.

        After a write whose outcome is unknown, the application asks what is there
        (see BankApplication._record); the plugin has no such query.
        """
        if not positions:
            return {}
        table = self.events_record_cls.__table__
        statement = select(
            table.c.id,
            table.c.originator_id,
            table.c.originator_version,
            table.c.topic,
            table.c.state,
        ).where(
            or_(
                *(
                    and_(
                        table.c.originator_id == originator_id,
                        table.c.originator_version == version,
                    )
                    for originator_id, version in positions
                )
            )
        )
        by_key = {(str(uid), version): (uid, version) for uid, version in positions}
        found: dict[tuple[UUID, int], Notification] = {}
        with connect(self.datastore) as connection:
            for row in connection.execute(statement):
                position = by_key[str(row.originator_id), row.originator_version]
                found[position] = Notification(
                    id=row.id,
                    originator_id=position[0],
                    originator_version=position[1],
                    topic=row.topic,
                    state=bytes(row.state),
                )
        return found

    def lock_application(self, session: Session) -> None:
        """Waits for, then holds until commit, the right to write this application."""
        lock_application(session, self.lock_name)


def begin(datastore: SQLAlchemyDatastore) -> AbstractContextManager[Connection]:
    """A connection of the datastore's engine in a transaction, committed at the end."""
    engine = datastore.engine
    assert isinstance(engine, Engine), "the plugin makes an engine from the URL"
    return engine.begin()


@contextmanager
def connect(datastore: SQLAlchemyDatastore) -> Iterator[Connection]:
    """A connection of the datastore's pool, given back at the end.

    The plugin's get_connection() never closes what it opens. Database errors come
    out as the library's (OperationalError, ...), as from the plugin's transactions.
    """
    engine = datastore.engine
    assert isinstance(engine, Engine), "the plugin makes an engine from the URL"
    try:
        with engine.connect() as connection:
            yield connection
    except sqlalchemy.exc.DBAPIError as error:
        library_error = exception_classes.get(type(error).__name__, PersistenceError)
        raise library_error(error) from error


def lock_application(session: Session, name: str) -> None:
    """Locks the application's row (made if missing) until the transaction ends."""
    statement = text(f"SELECT name FROM {LOCK_TABLE} WHERE name=:name FOR UPDATE")
    params = {"name": name}
    if session.execute(statement, params).first() is None:
        # Tables made by an older version, or CREATE_TABLE off: without the row the
        # SELECT would lock nothing.
        session.execute(
            text(f"INSERT IGNORE INTO {LOCK_TABLE} (name) VALUES (:name)"), params
        )
        session.execute(statement, params)


class MySQLProcessRecorder(MySQLApplicationRecorder, SQLAlchemyProcessRecorder):
    """The guarded recorder, whose tracking record is read with a locking read."""

    def _insert_tracking(self, session: Session, tracking: Tracking) -> None:
        # The plugin reads the recorded position with a consistent read, which does
        # not see what another instance committed since this transaction's snapshot:
        # both would record. FOR UPDATE reads the latest row and holds it.
        table = self.tracking_table
        name = str(tracking.application_name)
        row = session.execute(
            select(table.c.notification_id)
            .where(table.c.application_name == name)
            .with_for_update()
        ).first()
        if row is None:
            # Two first records: the primary key refuses the second.
            session.execute(
                insert(table).values(
                    application_name=name, notification_id=tracking.notification_id
                )
            )
        elif row[0] is not None and row[0] >= tracking.notification_id:
            msg = (
                f"{name} position {tracking.notification_id} is already recorded "
                f"(at {row[0]})"
            )
            raise IntegrityError(msg)
        else:
            session.execute(
                update(table)
                .where(table.c.application_name == name)
                .values(notification_id=tracking.notification_id)
            )


#: What to check, by MySQL's error number.
HINTS = {
    1044: "the user may not use this database: GRANT it, or fix SQLALCHEMY_URL",
    1045: "check the user and password in SQLALCHEMY_URL",
    1049: "create it (CREATE DATABASE), or fix the database in SQLALCHEMY_URL",
    2003: "is the server running, at the host and port of SQLALCHEMY_URL?",
    2005: "check the host name in SQLALCHEMY_URL",
}


def where(url: URL) -> str:
    """user@host:port/database (never the password)."""
    return f"{url.username or ''}@{url.host or ''}:{url.port or 3306}/{url.database}"


def describe_url(text: str) -> str:
    """Says in words which database SQLALCHEMY_URL names, without the password."""
    try:
        url = make_url(text)
    except sqlalchemy.exc.ArgumentError:
        return "SQLAlchemy (SQLALCHEMY_URL)"
    if url.get_backend_name() in MYSQL_DIALECTS:
        return f"MySQL/MariaDB database {url.database} on {url.host}"
    return f"SQLAlchemy database {url.render_as_string(hide_password=True)}"


def check_connection(environ: Mapping[str, str], timeout: float = 5.0) -> None:
    """Connects once with a short timeout, before anything starts.

    Raises ValueError for a missing or malformed SQLALCHEMY_URL, and
    DatabaseUnavailableError with the server's own reason and a hint if MySQL or
    MariaDB cannot be reached; other databases are left to the plugin.
    """
    text = environ.get("SQLALCHEMY_URL", "").strip()
    if not text:
        msg = (
            "PERSISTENCE_MODULE is eventsourcing_sqlalchemy, so set SQLALCHEMY_URL "
            "(for example mysql+pymysql://user:password@host:3306/dbname)"
        )
        raise ValueError(msg)
    try:
        url = make_url(text)
    except sqlalchemy.exc.ArgumentError:
        msg = "SQLALCHEMY_URL must be a database URL such as mysql+pymysql://..."
        raise ValueError(msg) from None
    if url.get_backend_name() not in MYSQL_DIALECTS:
        return
    try:
        engine = create_engine(
            url, poolclass=NullPool, connect_args={"connect_timeout": timeout}
        )
    except (ImportError, sqlalchemy.exc.ArgumentError) as error:
        msg = f"SQLALCHEMY_URL names a driver that cannot be used: {error}"
        raise ValueError(msg) from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as error:
        cause = error.orig
        number = cause.args[0] if cause is not None and cause.args else None
        reason = " ".join(str(cause.args[-1] if cause else error).split())
        hint = HINTS.get(number) if isinstance(number, int) else None
        msg = f"cannot connect to MySQL at {where(url)}: {reason}"
        msg += f" ({hint})" if hint else ""
        raise DatabaseUnavailableError(msg) from None
    finally:
        engine.dispose()

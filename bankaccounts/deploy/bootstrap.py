"""The composition root: where data lives, which runner runs the system."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsourcing.system import MultiThreadedRunner, Runner, SingleThreadedRunner

from bankaccounts.accountapplication import AccountApplication
from bankaccounts.deploy.catchup import CatchUp, interval_from_environment
from bankaccounts.deploy.readiness import DatabaseCheck
from bankaccounts.deploy.runner import PipelineRunner
from bankaccounts.deploy.status import read_statuses
from bankaccounts.infrastructure import sqlite_env
from bankaccounts.logs import one_line
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.batching import BatchProcessApplication
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas
from bankaccounts.users import Users

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from eventsourcing.application import Application

    from bankaccounts.deploy.status import FollowerStatus
    from bankaccounts.deploy.subscription import PostgresFeedSubscription
    from bankaccounts.readmodel import FeedMessage


def _ray_runner(system: BankAccountSystem, env: Mapping[str, str]) -> Runner[Any]:
    """The system on Ray actors (imported here: Ray is an optional extra)."""
    try:
        from bankaccounts.deploy.ray import RayRunner
    except ImportError as error:
        msg = f'the ray runner needs Ray: pip install "bankaccounts[ray]" ({error})'
        raise ValueError(msg) from None
    return RayRunner(system, env=dict(env))


# Runner classes, or factories of runners with the same arguments.
RUNNERS: dict[str, Callable[[BankAccountSystem, Mapping[str, str]], Runner[Any]]] = {
    "pipeline": PipelineRunner,
    "single": SingleThreadedRunner,
    "multi": MultiThreadedRunner,
    "ray": _ray_runner,
}
#: The embedded server's runner (`serve --runner`, BANKACCOUNTS_RUNNER): a thread per
#: follower, batching what arrives while it commits (deploy/runner.py). A client
#: still reads its own writes: the interface follows Accounts and Sagas in causal
#: order (after ?wait=true the balance shows the transaction), and a write of an
#: account waits for its row (an account just opened is listed).
DEFAULT_RUNNER = "pipeline"
#: How long a client's write of an account (open, limit, close) waits for the read
#: model to show it, before it is answered anyway (the read model being stuck).
READ_YOUR_WRITES_TIMEOUT = 3.0
#: After this long, the wait prompts the followers as the catch-up would.
FIRST_WAIT = 0.1
APPLICATION_NAMES = ("Commands", "Sagas", "Accounts", "Interface")
#: The application of users and tokens: next to the system, not part of it.
USERS_NAME = Users.name
DEFAULT_DATA_DIR = "bankaccounts-data"

logger = logging.getLogger(__name__)


def system_env(
    data_dir: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The library's persistence settings for the system.

    If PERSISTENCE_MODULE is set (for example to eventsourcing.postgres with the
    POSTGRES_* variables), the environment decides. Otherwise every application gets
    its own SQLite file in one data directory, so accounts survive a restart (the
    users too: users.sqlite).
    """
    directory = data_directory(data_dir, environ)
    if directory is None:
        return {}
    return sqlite_env(directory, [*APPLICATION_NAMES, USERS_NAME])


def users_env(env: Mapping[str, str]) -> dict[str, str]:
    """The Users application's settings, next to the system's in env.

    PostgreSQL and MySQL keep its events in a table of its own (users_events) in the
    same database, POPO in memory. SQLite needs a file of its own (the library's
    tables are not prefixed): USERS_SQLITE_DBNAME if set, else users.sqlite next to
    the system's files. Raises ValueError if there is nowhere to put it.
    """
    merged = {**os.environ, **env}
    variable = f"{USERS_NAME.upper()}_SQLITE_DBNAME"
    if merged.get("PERSISTENCE_MODULE") != "eventsourcing.sqlite" or merged.get(
        variable
    ):
        return dict(env)
    for name in APPLICATION_NAMES:
        path = merged.get(f"{name.upper()}_SQLITE_DBNAME", "")
        if path and "memory" not in path:
            users_file = Path(path).parent / f"{USERS_NAME.lower()}.sqlite"
            return {**env, variable: str(users_file)}
    msg = f"the users need a SQLite file of their own: set {variable}"
    raise ValueError(msg)


def data_directory(
    data_dir: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The directory of the SQLite files, or None when PERSISTENCE_MODULE decides."""
    environ = os.environ if environ is None else environ
    if environ.get("PERSISTENCE_MODULE"):
        return None
    directory = data_dir or environ.get("BANKACCOUNTS_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(directory).resolve()


def distributed_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The library's settings for the processes of a distributed deployment.

    They share one PostgreSQL database; tables are made once by `init-db`, never by a
    starting process (concurrent first starts race in PostgreSQL's catalog); and each
    application's pool keeps one connection open, growing on demand, so that a dozen
    processes stay well inside the server's max_connections.
    """
    module = environ.get("PERSISTENCE_MODULE", "")
    if module != "eventsourcing.postgres":
        msg = (
            "the processes of a distributed deployment share one PostgreSQL "
            "database: set PERSISTENCE_MODULE=eventsourcing.postgres and the "
            f"POSTGRES_* variables (PERSISTENCE_MODULE is {module or 'not set'})"
        )
        raise ValueError(msg)
    return {"POSTGRES_POOL_SIZE": "1", **environ, "CREATE_TABLE": "n"}


def describe_storage(env: Mapping[str, str]) -> str:
    """Says in words where the system keeps its data."""
    if "COMMANDS_SQLITE_DBNAME" in env:
        return f"SQLite files in {Path(env['COMMANDS_SQLITE_DBNAME']).parent}"
    module = os.environ.get("PERSISTENCE_MODULE", "eventsourcing.popo")
    if module == "eventsourcing_sqlalchemy":
        from bankaccounts.mysql import describe_url

        return describe_url(os.environ.get("SQLALCHEMY_URL", ""))
    if module.endswith("postgres"):
        database = os.environ.get("POSTGRES_DBNAME", "?")
        host = os.environ.get("POSTGRES_HOST", "?")
        return f"PostgreSQL database {database} on {host}"
    return f"{module} (in memory: nothing survives a restart)"


class Bank:
    """The running system, and the applications that the web layer talks to."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        runner: str = DEFAULT_RUNNER,
        *,
        catch_up_interval: float | None = None,
    ):
        """Builds the runner; call start() to run it.

        catch_up_interval: seconds between catch-ups of the followers (default
        BANKACCOUNTS_CATCH_UP_INTERVAL, or 2).
        """
        if runner not in RUNNERS:
            msg = f"runner must be one of {', '.join(RUNNERS)}, not {runner!r}"
            raise ValueError(msg)
        self.env = dict(env or {})
        if catch_up_interval is None:
            catch_up_interval = interval_from_environment({**os.environ, **self.env})
        self.runner: Runner[Any] = RUNNERS[runner](BankAccountSystem(), self.env)
        # Work recorded but not processed before a crash is carried out on start,
        # not when the next command happens to arrive.
        self.catch_up = CatchUp(self.runner, catch_up_interval)
        self._database_check = DatabaseCheck(lambda: self.interface.view)
        self._users_env = users_env(self.env)
        self._users: Users | None = None

    def start(self) -> None:
        """Starts the runner (and so every application), the catch-ups, the users."""
        self._users = Users(env=self._users_env)
        try:
            self.runner.start()
        except BaseException:
            self._close_users()
            raise
        self.catch_up.start()

    def stop(self) -> None:
        """Stops the catch-ups and the runner; closes the applications' connections."""
        self.catch_up.stop()
        self.runner.stop()
        self._close_users()

    def _close_users(self) -> None:
        if self._users is not None:
            self._users.close()
            self._users = None

    @property
    def users(self) -> Users:
        """Registers users, signs them in and tells who holds a token (once started)."""
        if self._users is None:
            msg = "the bank is not started"
            raise RuntimeError(msg)
        return self._users

    @property
    def commands(self) -> Commands:
        """Records client requests."""
        return self.runner.get(Commands)

    @property
    def accounts(self) -> Accounts:
        """Keeps the accounts."""
        return self.runner.get(Accounts)

    @property
    def sagas(self) -> Sagas:
        """Carries out the requests."""
        return self.runner.get(Sagas)

    @property
    def interface(self) -> InterfaceApplication:
        """Keeps the read model and the feed."""
        return self.runner.get(InterfaceApplication)

    def add_feed_listener(
        self, listener: Callable[[Sequence[FeedMessage]], None]
    ) -> Callable[[], None]:
        """Calls listener with each batch of new feed messages; returns a remover."""
        return self.interface.add_feed_listener(listener)

    def wait_for_read_model(self) -> bool:
        """Waits (bounded) until the read model shows this thread's last account write.

        So a client reads its own writes: an account it opened is listed, a limit it
        set shown, whichever runner (or process) keeps the read model. True if it
        does; False if READ_YOUR_WRITES_TIMEOUT passed first, or the position could
        not be read (the answer then comes from the aggregate, and the list
        follows). Applications in Ray actors are not waited for.
        """
        accounts: Any = self.accounts
        interface: Any = self.interface
        if not isinstance(accounts, AccountApplication) or not isinstance(
            interface, BatchProcessApplication
        ):
            return True
        position = accounts.last_written_position()
        if position is None:
            return True
        try:
            if interface.wait_for_position(accounts.name, position, FIRST_WAIT):
                return True
            # A prompt can go unanswered (the single-threaded runner's thread was
            # just letting go): the catch-up's prompt, now rather than later.
            catch_up: CatchUp | None = getattr(self, "catch_up", None)
            if catch_up is not None:
                catch_up.catch_up()
            return interface.wait_for_position(
                accounts.name, position, READ_YOUR_WRITES_TIMEOUT - FIRST_WAIT
            )
        except Exception as error:  # the write is done: its answer still goes out
            logger.warning(
                "could not wait for the read model to show an account write: %s: %s",
                type(error).__name__,
                one_line(error),
            )
            return False

    def follower_statuses(self) -> list[FollowerStatus]:
        """Each follower's position, lag and failure, in each of its upstreams."""
        return read_statuses(self.applications())

    def applications(self) -> dict[str, Application[Any]]:
        """The system's applications by name."""
        return dict(self.runner.apps)  # type: ignore[attr-defined]

    def readiness(self) -> dict[str, str]:
        """Each readiness check: "ok", or why it fails (the database's, here)."""
        return {"database": self._database_check() or "ok"}

    def is_ready(self) -> bool:
        """True if every readiness check passes (GET /readyz answers 200)."""
        return all(state == "ok" for state in self.readiness().values())


class DistributedBank(Bank):
    """A web process's part of a bank whose process applications run as workers.

    It records commands, opens, limits and closes accounts (with optimistic
    concurrency against the Accounts worker), answers queries from the read model,
    and follows the feed with a PostgreSQL subscription of its own, so every web
    process pushes every message to its own clients.
    """

    def __init__(self, env: Mapping[str, str] | None = None):
        # Its reads answer clients, so it reads what the workers wrote since.
        environ = {"AGGREGATE_CACHE_FASTFORWARD": "y", **os.environ, **(env or {})}
        self.env = distributed_env(environ)
        self._apps: dict[type[Any], Any] = {}
        self._listeners: list[Callable[[Sequence[FeedMessage]], None]] = []
        self.feed: PostgresFeedSubscription | None = None
        self._sagas_reader: Sagas | None = None
        self._sagas_lock = threading.Lock()
        self._database_check = DatabaseCheck(lambda: self.interface.view)
        self._users_env = self.env
        self._users = None

    def start(self) -> None:
        """Connects the applications and starts following the feed."""
        from bankaccounts.deploy.subscription import PostgresFeedSubscription
        from bankaccounts.readmodel.postgres import PostgresReadModelRecorder

        for cls in (Commands, Accounts, InterfaceApplication):
            self._apps[cls] = cls(env=self.env)
        self._users = Users(env=self.env)
        view = self.interface.view
        assert isinstance(view, PostgresReadModelRecorder)
        self.feed = PostgresFeedSubscription(
            view, view.max_feed_position(), self._deliver
        )
        self.feed.start()

    def stop(self) -> None:
        """Stops following the feed and closes the connections."""
        if self.feed is not None:
            self.feed.stop()
        for app in self._apps.values():
            app.close()
        self._apps.clear()
        self._close_users()
        if self._sagas_reader is not None:
            self._sagas_reader.close()
            self._sagas_reader = None

    def readiness(self) -> dict[str, str]:
        """The database's check, and whether the feed subscription follows."""
        checks = super().readiness()
        following = self.feed is not None and self.feed.is_following
        checks["feed"] = "ok" if following else "not following (reconnecting)"
        return checks

    def _deliver(self, messages: Sequence[FeedMessage]) -> None:
        for listener in list(self._listeners):
            listener(messages)

    def add_feed_listener(
        self, listener: Callable[[Sequence[FeedMessage]], None]
    ) -> Callable[[], None]:
        """Calls listener with each batch of new feed messages; returns a remover."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    @property
    def commands(self) -> Commands:
        """Records client requests."""
        app: Commands = self._apps[Commands]
        return app

    @property
    def accounts(self) -> Accounts:
        """Opens, limits and closes accounts; reads them."""
        app: Accounts = self._apps[Accounts]
        return app

    @property
    def sagas(self) -> Sagas:
        """Not in a web process: the Sagas worker runs them."""
        msg = "the sagas run in their own worker"
        raise RuntimeError(msg)

    def applications(self) -> dict[str, Application[Any]]:
        """The system's applications by name; Sagas only reads, for the status."""
        with self._sagas_lock:
            if self._sagas_reader is None:
                self._sagas_reader = Sagas(env=self.env)
        return {
            Commands.name: self.commands,
            Sagas.name: self._sagas_reader,
            Accounts.name: self.accounts,
            InterfaceApplication.name: self.interface,
        }

    @property
    def interface(self) -> InterfaceApplication:
        """The read model (written by the Interface worker)."""
        app: InterfaceApplication = self._apps[InterfaceApplication]
        return app

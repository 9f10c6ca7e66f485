"""The console entry point: `bankaccounts serve` (also `python -m bankaccounts`),
the workers, init-db, status, rebuild-read-model, and `bankaccounts users`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from bankaccounts import logs
from bankaccounts.backpressure import DEFAULT_MAX_BACKLOG, TARGET_SECONDS
from bankaccounts.deploy import preflight
from bankaccounts.deploy.bootstrap import DEFAULT_RUNNER
from bankaccounts.deploy.worker import WORKER_NAMES
from bankaccounts.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from bankaccounts.readmodel import ReadModelOutdatedError
from bankaccounts.settings import ConfigurationError, check_environment
from bankaccounts.users import ROLES, Users

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import FrameType

    from bankaccounts.deploy.preflight import Budget
    from bankaccounts.users import Actor

logger = logging.getLogger("bankaccounts.cli")

POSTGRES_MODULE = "eventsourcing.postgres"
SQLALCHEMY_MODULE = "eventsourcing_sqlalchemy"


def build_parser(values: Mapping[str, object] | None = None) -> argparse.ArgumentParser:
    """The command line: subcommands and options (defaults from BANKACCOUNTS_*).

    values are the environment's, as settings.check_environment() parsed them.
    """
    values = values or {}

    def env(name: str, default: Any) -> Any:
        return values.get(f"BANKACCOUNTS_{name}", default)

    parser = argparse.ArgumentParser(
        prog="bankaccounts", description="An event-sourced bank."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_logging(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--log-level", default=env("LOG_LEVEL", "info"), choices=LOG_LEVELS
        )
        command.add_argument(
            "--log-format",
            default=env("LOG_FORMAT", "text"),
            choices=LOG_FORMATS,
            help="text: a line per event; json: a JSON object per line",
        )

    def add_max_backlog(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--max-backlog",
            type=non_negative_int,
            default=env("MAX_BACKLOG", DEFAULT_MAX_BACKLOG),
            metavar="COMMANDS",
            help="money requests are answered 503 (Retry-After) while this many "
            "commands wait for the Sagas; 0: no bound (default "
            f"{DEFAULT_MAX_BACKLOG}, about {TARGET_SECONDS:g} s of processing)",
        )

    def add_data_dir(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--data-dir",
            default=env("DATA_DIR", None),
            help="directory of the SQLite files (default ./bankaccounts-data); "
            "ignored when PERSISTENCE_MODULE is set",
        )

    for name, help_text in (
        ("serve", "run the web UI: with the whole system (embedded) or --distributed"),
        ("run-all", "run everything in one process (the same as serve)"),
    ):
        serve = commands.add_parser(name, help=help_text)
        serve.add_argument("--host", default=env("HOST", "127.0.0.1"))
        serve.add_argument("--port", type=port_number, default=env("PORT", 8000))
        add_data_dir(serve)
        serve.add_argument(
            "--runner",
            choices=["single", "pipeline", "multi", "ray"],
            default=env("RUNNER", DEFAULT_RUNNER),
            help="single (the default): the library's SingleThreadedRunner, the "
            "whole pipe in the request's thread; pipeline: a request records its "
            "command and a thread per process application processes pages of "
            "events (faster; a client may not read its own writes at once); the "
            "library's MultiThreadedRunner; or ray: each application in a Ray "
            "actor (a local Ray, or the cluster in RAY_ADDRESS; needs the ray extra)",
        )
        serve.add_argument(
            "--allowed-hosts",
            default=env("ALLOWED_HOSTS", ""),
            metavar="NAMES",
            help="comma-separated host names (or *.domain) that clients may use in "
            "the Host header, besides localhost, 127.0.0.1, ::1 and --host",
        )
        serve.add_argument(
            "--registration",
            choices=["open", "closed"],
            default=env("REGISTRATION", "open"),
            help="open: anyone may sign up (the first user is staff when --host is "
            "a loopback address); closed: only signed-in staff may add users",
        )
        add_max_backlog(serve)
        add_logging(serve)
        if name == "serve":
            serve.add_argument(
                "--distributed",
                action="store_true",
                default=env("DISTRIBUTED", False),
                help="PostgreSQL only: the process applications run as workers; this "
                "process records commands, reads the read model and follows the feed",
            )
            serve.add_argument(
                "--workers",
                type=int,
                default=env("WORKERS", 1),
                help="web processes (uvicorn workers); more than 1 needs --distributed",
            )

    init_db = commands.add_parser(
        "init-db", help="create every application's tables (PostgreSQL), once"
    )
    add_logging(init_db)

    worker = commands.add_parser(
        "worker", help="run one process application, following its upstreams"
    )
    worker.add_argument("name", choices=sorted(WORKER_NAMES))
    worker.add_argument(
        "--health-port",
        type=port_number,
        default=env("HEALTH_PORT", None),
        metavar="PORT",
        help="serve /healthz, /readyz and /metrics on this port (default: none)",
    )
    worker.add_argument(
        "--health-host",
        default=env("HEALTH_HOST", "127.0.0.1"),
        metavar="HOST",
        help="the address of --health-port (default 127.0.0.1; 0.0.0.0 for a "
        "kubelet's probes)",
    )
    add_logging(worker)

    status = commands.add_parser(
        "status", help="each follower's position and lag; exit 1 if stuck or failing"
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--stuck-after",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a follower that lags and doesn't move for this long is stuck "
        "(default 10)",
    )
    add_data_dir(status)
    add_max_backlog(status)
    add_logging(status)

    rebuild = commands.add_parser(
        "rebuild-read-model",
        help="drop the interface's view and feed and make them again from the "
        "events (workers and server stopped); exit 1 if the view was wrong",
    )
    rebuild.add_argument(
        "--dry-run",
        action="store_true",
        help="only compare the view with the accounts and transactions, and list "
        "the differences (exit 1 if any)",
    )
    add_data_dir(rebuild)
    add_logging(rebuild)
    add_users_commands(commands, add_data_dir, add_logging)
    return parser


def add_users_commands(
    commands: Any,
    add_data_dir: Callable[[argparse.ArgumentParser], None],
    add_logging: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`bankaccounts users create|list|set-role|revoke-tokens`."""
    users = commands.add_parser(
        "users", help="create users, list them, set their roles, revoke their tokens"
    )
    actions = users.add_subparsers(
        dest="users_command", metavar="ACTION", required=True
    )
    create = actions.add_parser(
        "create",
        help="create a user; the password is read from a prompt, or a line of stdin",
    )
    create.add_argument("username", metavar="NAME")
    create.add_argument("--role", choices=ROLES, default="customer")
    listing = actions.add_parser("list", help="list the users: username, role, id")
    listing.add_argument("--json", action="store_true", help="print JSON")
    set_role = actions.add_parser("set-role", help="make a user staff or customer")
    set_role.add_argument("username", metavar="NAME")
    set_role.add_argument("role", metavar="ROLE", choices=ROLES)
    revoke = actions.add_parser(
        "revoke-tokens", help="sign a user out everywhere: revoke every token"
    )
    revoke.add_argument("username", metavar="NAME")
    for action in (create, listing, set_role, revoke):
        add_data_dir(action)
        add_logging(action)


def non_negative_int(text: str) -> int:
    """A whole number, 0 or more (argparse's type)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"must be a whole number, 0 or more, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def port_number(text: str) -> int:
    """A port number from 0 to 65535 (argparse's type)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        msg = f"must be a port number from 0 to 65535, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def serve(
    host: str,
    port: int,
    data_dir: str | None,
    runner: str,
    log_level: str,
    *,
    distributed: bool = False,
    workers: int = 1,
    allowed_hosts: str = "",
    log_format: str = "text",
    registration: str = "open",
    max_backlog: int = DEFAULT_MAX_BACKLOG,
) -> int:
    """Runs the web server (and the system, unless distributed) until SIGTERM.

    Whatever can refuse to start does so before the server says it is serving:
    the database (PostgreSQL), the data directory's lock (one server per
    directory) and the port.
    """
    import uvicorn

    from bankaccounts.deploy.bootstrap import (
        Bank,
        DistributedBank,
        data_directory,
        describe_storage,
        distributed_env,
        system_env,
    )
    from bankaccounts.deploy.datalock import DataDirectoryInUseError, DataDirectoryLock
    from bankaccounts.deploy.preflight import WEB_POOL, DatabaseUnavailableError
    from bankaccounts.web.app import (
        ALLOWED_HOSTS_VARIABLE,
        HOST_VARIABLE,
        MAX_BACKLOG_VARIABLE,
        REGISTRATION_VARIABLE,
        create_app,
        is_loopback_host,
    )
    from bankaccounts.web.websocket import MAX_MESSAGE_BYTES

    if workers < 1 or (workers > 1 and not distributed):
        return fail(
            "--workers above 1 needs --distributed (the embedded system runs in "
            "its one process)"
        )
    hosts = served_hosts(host, allowed_hosts)
    if host in WILDCARD_ADDRESSES and not allowed_hosts.strip():
        logger.warning(
            "listening on %s, but only requests for %s are answered; give the "
            "names clients use with --allowed-hosts",
            host,
            ", ".join(hosts),
        )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        # One format in one stream: uvicorn's loggers go through our handler, and
        # the web's own access log (with latency and request id) replaces uvicorn's.
        "log_config": logs.uvicorn_log_config(log_level, log_format),
        "access_log": False,
        "ws": "websockets-sansio",
        # uvicorn would buffer a websocket message up to 16 MiB before the handler
        # could refuse it; over this it closes with 1009 (message too big).
        "ws_max_size": MAX_MESSAGE_BYTES,
        "timeout_graceful_shutdown": 5,
    }
    lock: DataDirectoryLock | None = None
    try:
        if distributed:
            os.environ.setdefault("PGAPPNAME", "bankaccounts serve")
            # Small pools: every web process (and uvicorn worker) has four.
            for name, value in WEB_POOL.items():
                os.environ.setdefault(name, value)
            # What create_distributed_app reads, in this process and uvicorn's.
            os.environ[ALLOWED_HOSTS_VARIABLE] = ",".join(hosts)
            os.environ[REGISTRATION_VARIABLE] = registration
            os.environ[HOST_VARIABLE] = host
            os.environ[MAX_BACKLOG_VARIABLE] = str(max_backlog)
            environ = distributed_env(os.environ)
            check_postgres(
                environ,
                tables=preflight.DISTRIBUTED_TABLES,
                budget=web_budget(environ, workers),
            )
            bank: Bank = DistributedBank(environ)
            storage = f" (web process): data in {describe_storage({})}"
        else:
            env = system_env(data_dir)
            if os.environ.get("PERSISTENCE_MODULE") == POSTGRES_MODULE:
                environ = dict(os.environ)
                check_postgres(environ, budget=embedded_budget(environ))
            elif os.environ.get("PERSISTENCE_MODULE") == SQLALCHEMY_MODULE:
                check_sqlalchemy(os.environ)
            directory = data_directory(data_dir)
            if directory is not None:
                lock = DataDirectoryLock(directory)
                try:
                    lock.acquire()
                except DataDirectoryInUseError as error:
                    return fail(str(error), status=1)
            bank = Bank(env, runner=runner)
            storage = f": data in {describe_storage(env)}"
    except (ValueError, OSError) as error:  # OSError: the library's bad setting
        return fail(str(error))
    except DatabaseUnavailableError as error:
        return fail(str(error), status=1)
    try:
        sock = listen(host, port)
    except OSError as error:
        return fail(
            f"cannot listen on {host}:{port} ({error.strerror or error}); is "
            "another server using the port? Choose another with --port",
            status=1,
        )
    url = f"http://{url_host(host)}:{sock.getsockname()[1]}"
    logs.announce(f"Bank accounts{storage}")
    # Only someone at this machine can be the first to reach a loopback address.
    founder_may_sign_up = is_loopback_host(host)
    if not founder_may_sign_up:
        logger.info(
            "listening on %s, not a loopback address: nobody becomes staff by "
            "signing up; create staff with `bankaccounts users create NAME --role "
            "staff`",
            host,
        )
    if workers > 1:
        # uvicorn's workers bind the port themselves: it was free a moment ago.
        sock.close()
        logs.announce(f"Serving {url} with {workers} workers")
        uvicorn.run(
            "bankaccounts.web.app:create_distributed_app",
            factory=True,
            workers=workers,
            **options,
        )
        return 0
    app = create_app(
        bank,
        allowed_hosts=hosts,
        registration="closed" if registration == "closed" else "open",
        founder_may_sign_up=founder_may_sign_up,
        max_backlog=max_backlog,
    )
    server = _clean_exit_server_class()(uvicorn.Config(app, **options))
    logs.announce(f"Serving {url} (Ctrl-C to stop)")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if lock is not None:
            lock.release()
    return 0 if server.started else 1


WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})  # noqa: S104


def served_hosts(host: str, allowed_hosts: str) -> list[str]:
    """The Host names answered: loopback, --host unless a wildcard, --allowed-hosts."""
    from bankaccounts.web.app import allowed_hosts_from

    names = [] if host in WILDCARD_ADDRESSES else [host]
    return allowed_hosts_from(",".join([*names, allowed_hosts]))


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host and port; OSError if it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn does: a restart may bind while old connections linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def url_host(host: str) -> str:
    """The host as written in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def fail(message: str, status: int = 2) -> int:
    """Says why on stderr (a log line); returns the exit status (2: a usage error)."""
    logger.error("%s", message)
    return status


def check_postgres(
    environ: Mapping[str, str],
    *,
    tables: Sequence[str] = (),
    budget: Budget | None = None,
) -> None:
    """Connects once with a short timeout: raises DatabaseUnavailableError with
    libpq's reason, or if a table is missing; warns if connections may not fit."""
    from bankaccounts.deploy.preflight import check_database

    check_database(environ, tables=tables, budget=budget)
    if budget is not None:
        logger.debug("connection budget: %s", budget.describe())


def check_sqlalchemy(environ: Mapping[str, str]) -> None:
    """The MySQL/MariaDB connection check (bankaccounts/mysql.py); ValueError if
    the plugin (the `mysql` extra) is not installed."""
    try:
        from bankaccounts.mysql import check_connection
    except ImportError as error:
        msg = (
            f"PERSISTENCE_MODULE is {SQLALCHEMY_MODULE}, but {error.name} is not "
            'installed: pip install -e ".[mysql]"'
        )
        raise ValueError(msg) from None
    check_connection(environ)


def web_budget(environ: Mapping[str, str], workers: int) -> Budget:
    """A web process's connections: four pools per uvicorn worker."""
    from bankaccounts.deploy.preflight import WEB_APPLICATIONS, process_budget

    return process_budget(environ, WEB_APPLICATIONS, processes=workers)


def embedded_budget(environ: Mapping[str, str]) -> Budget:
    """The embedded system's connections: a pool per application, and the users'."""
    from bankaccounts.deploy.bootstrap import APPLICATION_NAMES, USERS_NAME
    from bankaccounts.deploy.preflight import process_budget

    return process_budget(environ, [*APPLICATION_NAMES, USERS_NAME])


def init_db() -> int:
    """Creates the tables of every application of the system, one after another,
    then the users'."""
    from bankaccounts.deploy.bootstrap import distributed_env
    from bankaccounts.deploy.preflight import DatabaseUnavailableError
    from bankaccounts.system.definition import BankAccountSystem

    try:
        env = {**distributed_env(os.environ), "CREATE_TABLE": "y"}
        check_postgres(env)
    except ValueError as error:
        return fail(str(error))
    except DatabaseUnavailableError as error:
        return fail(str(error), status=1)
    system = BankAccountSystem()
    for name in system.nodes:
        system.get_app_cls(name)(env=env).close()
        print(f"{name}: tables ready", flush=True)
    Users(env=env).close()
    print(f"{Users.name}: tables ready", flush=True)
    return 0


def run_worker(
    name: str, health_port: int | None = None, health_host: str = "127.0.0.1"
) -> int:
    """Runs one process application until SIGINT or SIGTERM."""
    from bankaccounts.deploy.bootstrap import distributed_env
    from bankaccounts.deploy.preflight import (
        WORKER_POOL,
        DatabaseUnavailableError,
        worker_budget,
    )
    from bankaccounts.deploy.worker import Worker

    # Shows which process a connection belongs to, in pg_stat_activity.
    os.environ.setdefault("PGAPPNAME", f"bankaccounts worker {name}")
    for variable, value in WORKER_POOL.items():
        os.environ.setdefault(variable, value)

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)  # asked to stop before there is a worker to stop

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    try:
        env = distributed_env(os.environ)
        check_postgres(
            env,
            tables=preflight.DISTRIBUTED_TABLES,
            budget=worker_budget(env, WORKER_NAMES[name]),
        )
    except ValueError as error:
        return fail(str(error))
    except DatabaseUnavailableError as error:
        return fail(str(error), status=1)
    logs.set_role(f"worker {name}", application=WORKER_NAMES[name])
    worker = Worker(
        WORKER_NAMES[name], env, health_port=health_port, health_host=health_host
    )

    def handle(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    try:
        worker.run()
    except OSError as error:  # only the health port's bind raises
        return fail(
            f"cannot listen on --health-port {health_port} "
            f"({error.strerror or error}); choose another",
            status=1,
        )
    return 0


def status(
    as_json: bool,
    stuck_after: float,
    data_dir: str | None = None,
    max_backlog: int = DEFAULT_MAX_BACKLOG,
) -> int:
    """Prints each follower's position and lag, and the backlog against its bound.

    Exits 1 if a follower is stuck or failing, 0 otherwise.
    """
    from eventsourcing.persistence import PersistenceError

    from bankaccounts.backpressure import Backlog, bound_of, read_backlog
    from bankaccounts.deploy.bootstrap import system_env
    from bankaccounts.deploy.preflight import DatabaseUnavailableError
    from bankaccounts.deploy.status import SystemStatus, format_table

    environ = dict(os.environ)
    if environ.get("PERSISTENCE_MODULE") == POSTGRES_MODULE:
        environ = {**preflight.WORKER_POOL, **environ}  # four small pools
        try:
            check_postgres(environ, tables=preflight.DISTRIBUTED_TABLES)
        except preflight.MissingTablesError as error:
            return fail(
                f"cannot read the positions (no table {', '.join(error.missing)}); "
                "has the bank been started, or init-db run?"
            )
        except DatabaseUnavailableError as error:
            return fail(str(error))
    environ.update(system_env(data_dir, environ=environ))
    try:
        system_status = SystemStatus(environ)
        try:
            statuses = system_status.watch(stuck_after)
            backlog = Backlog(read_backlog(system_status.apps), bound_of(max_backlog))
        finally:
            system_status.close()
    except PersistenceError as error:
        return fail(
            f"cannot read the positions ({error}); has the bank been started, or "
            "init-db run?"
        )
    if as_json:
        # A list, as it has always been (scripts read it); the backlog is in the
        # text and in GET /api/system.
        print(json.dumps([s.to_json() for s in statuses], indent=2))
    else:
        print(format_table(statuses, backlog))
    return 0 if all(s.is_healthy for s in statuses) else 1  # none stuck or failing


def rebuild_read_model(dry_run: bool, data_dir: str | None) -> int:
    """Checks the view against the aggregates; unless dry_run, rebuilds it first."""
    from bankaccounts.rebuild import run

    return run(dry_run=dry_run, data_dir=data_dir)


def users_command(args: argparse.Namespace) -> int:
    """Runs `bankaccounts users ACTION`: 0 done, 2 bad input, 1 no such user."""
    from eventsourcing.persistence import PersistenceError

    from bankaccounts.deploy.preflight import DatabaseUnavailableError
    from bankaccounts.exceptions import (
        InvalidPasswordError,
        InvalidUsernameError,
        UsernameTakenError,
        UserNotFoundError,
    )

    password = None
    if args.users_command == "create":
        try:
            password = read_password()
        except ValueError as error:
            return fail(str(error))
    try:
        users = open_users(args.data_dir)
    except ValueError as error:
        return fail(str(error))
    except (DatabaseUnavailableError, PersistenceError) as error:
        return fail(str(error), status=1)
    try:
        return run_users_action(users, args, password)
    except (InvalidUsernameError, InvalidPasswordError) as error:
        return fail(str(error))
    except (UsernameTakenError, UserNotFoundError) as error:
        return fail(str(error), status=1)
    finally:
        users.close()


def run_users_action(
    users: Users, args: argparse.Namespace, password: str | None
) -> int:
    """One action on the users; prints what was done."""
    from bankaccounts.exceptions import UserNotFoundError

    if args.users_command == "create":
        actor = users.register(args.username, password or "", role=args.role)
        print(f"created {actor.role} {actor.username} ({actor.id})")
    elif args.users_command == "list":
        actors = users.list_users()
        if args.json:
            print(json.dumps([actor.to_json() for actor in actors], indent=2))
        else:
            print(format_users(actors))
    elif args.users_command == "set-role":
        actor = users.set_role(args.username, args.role)
        print(f"{actor.username} is {actor.role}")
    else:
        actor_or_none = users.get_user(args.username)
        if actor_or_none is None:
            msg = f"No user is called {args.username!r}"
            raise UserNotFoundError(msg)
        count = users.revoke_tokens(actor_or_none.username)
        print(f"revoked {count} token{'' if count == 1 else 's'} of {args.username}")
    return 0


def format_users(actors: Sequence[Actor]) -> str:
    """A table: username, role, id, one user a line."""
    rows = [("USERNAME", "ROLE", "ID")]
    rows.extend((a.username, a.role, str(a.id)) for a in actors)
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{name:<{widths[0]}}  {role:<{widths[1]}}  {id_}" for name, role, id_ in rows
    )


def read_password() -> str:
    """The new user's password: typed twice at a prompt, or a line of stdin."""
    import getpass

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat the password: ") != password:
            msg = "the passwords typed differ"
            raise ValueError(msg)
        return password
    line = sys.stdin.readline()
    if not line:
        msg = "no password: type it at the prompt, or give it as a line of stdin"
        raise ValueError(msg)
    return line.removesuffix("\n").removesuffix("\r")


def open_users(data_dir: str | None) -> Users:
    """The Users application where the bank keeps its data (as serve would).

    The data directory's SQLite file, or the store PERSISTENCE_MODULE names; the
    database is checked first, so a wrong setting says why within seconds.
    """
    from bankaccounts.deploy.bootstrap import system_env, users_env

    module = os.environ.get("PERSISTENCE_MODULE")
    if module == POSTGRES_MODULE:
        environ = {**preflight.WORKER_POOL, **os.environ}
        check_postgres(environ)
        return Users(env=environ)
    if module == SQLALCHEMY_MODULE:
        check_sqlalchemy(os.environ)
    return Users(env=users_env(system_env(data_dir)))


def _clean_exit_server_class() -> type:
    import uvicorn

    class CleanExitServer(uvicorn.Server):
        """Stops gracefully on SIGINT/SIGTERM, then exits normally.

        uvicorn re-raises the captured signal after shutting down, which would end the
        process with -15 (SIGTERM) or a KeyboardInterrupt traceback (SIGINT).
        """

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return CleanExitServer


def main(argv: Sequence[str] | None = None) -> int:
    """Parses the command line and runs the subcommand (serve by default)."""
    from bankaccounts.settings import unknown_variables

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        values = check_environment(os.environ)
    except ConfigurationError as error:
        print(f"bankaccounts: {error}", file=sys.stderr)
        return 2
    parser = build_parser(values)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format, role=role(args))
    for warning in unknown_variables(os.environ):
        logger.warning("%s", warning)
    try:
        return run_command(args, parser)
    except ReadModelOutdatedError as error:  # the message says what to do
        return fail(str(error), status=1)


def run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Runs the parsed subcommand; returns its exit status."""
    if args.command in ("serve", "run-all"):
        return serve(
            args.host,
            args.port,
            args.data_dir,
            args.runner,
            args.log_level,
            distributed=getattr(args, "distributed", False),
            workers=getattr(args, "workers", 1),
            allowed_hosts=args.allowed_hosts,
            log_format=args.log_format,
            registration=args.registration,
            max_backlog=args.max_backlog,
        )
    if args.command == "init-db":
        return init_db()
    if args.command == "worker":
        return run_worker(args.name, args.health_port, args.health_host)
    if args.command == "status":
        return status(args.json, args.stuck_after, args.data_dir, args.max_backlog)
    if args.command == "rebuild-read-model":
        return rebuild_read_model(args.dry_run, args.data_dir)
    if args.command == "users":
        return users_command(args)
    parser.print_help()  # pragma: no cover (argparse rejects unknown commands)
    return 2  # pragma: no cover


def role(args: argparse.Namespace) -> str:
    """What the process is, in its log lines: "web", "worker sagas", "status"."""
    if args.command == "worker":
        return f"worker {args.name}"
    if args.command in ("serve", "run-all"):
        return "web" if getattr(args, "distributed", False) else "server"
    return str(args.command)

"""The console entry point: `bankaccounts serve` (also `python -m bankaccounts`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from bankaccounts.worker import WORKER_NAMES

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


LOG_LEVELS = ["critical", "error", "warning", "info", "debug"]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    """The command line: subcommands and options (defaults from BANKACCOUNTS_*)."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="bankaccounts", description="An event-sourced bank."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_log_level(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--log-level",
            default=env("BANKACCOUNTS_LOG_LEVEL", "info"),
            choices=LOG_LEVELS,
        )

    for name, help_text in (
        ("serve", "run the web UI: with the whole system (embedded) or --distributed"),
        ("run-all", "run everything in one process (the same as serve)"),
    ):
        serve = commands.add_parser(name, help=help_text)
        serve.add_argument("--host", default=env("BANKACCOUNTS_HOST", "127.0.0.1"))
        serve.add_argument(
            "--port", type=int, default=int(env("BANKACCOUNTS_PORT", "8000"))
        )
        serve.add_argument(
            "--data-dir",
            default=env("BANKACCOUNTS_DATA_DIR"),
            help="directory of the SQLite files (default ./bankaccounts-data); "
            "ignored when PERSISTENCE_MODULE is set",
        )
        serve.add_argument(
            "--runner",
            choices=["single", "multi"],
            default=env("BANKACCOUNTS_RUNNER", "single"),
            help="the library's SingleThreadedRunner or MultiThreadedRunner",
        )
        serve.add_argument(
            "--allowed-hosts",
            default=env("BANKACCOUNTS_ALLOWED_HOSTS", ""),
            metavar="NAMES",
            help="comma-separated host names (or *.domain) that clients may use in "
            "the Host header, besides localhost, 127.0.0.1, ::1 and --host",
        )
        add_log_level(serve)
        if name == "serve":
            serve.add_argument(
                "--distributed",
                action="store_true",
                default=env("BANKACCOUNTS_DISTRIBUTED", "") in ("1", "true", "yes"),
                help="PostgreSQL only: the process applications run as workers; this "
                "process records commands, reads the read model and follows the feed",
            )
            serve.add_argument(
                "--workers",
                type=int,
                default=int(env("BANKACCOUNTS_WORKERS", "1")),
                help="web processes (uvicorn workers); more than 1 needs --distributed",
            )

    init_db = commands.add_parser(
        "init-db", help="create every application's tables (PostgreSQL), once"
    )
    add_log_level(init_db)

    worker = commands.add_parser(
        "worker", help="run one process application, following its upstreams"
    )
    worker.add_argument("name", choices=sorted(WORKER_NAMES))
    add_log_level(worker)

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
    add_log_level(status)
    return parser


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
) -> int:
    """Runs the web server (and the system, unless distributed) until SIGTERM.

    Whatever can refuse to start does so before the server says it is serving:
    the data directory's lock (one server per directory) and the port.
    """
    import uvicorn

    from bankaccounts.bootstrap import (
        Bank,
        DistributedBank,
        data_directory,
        describe_storage,
        system_env,
    )
    from bankaccounts.datalock import DataDirectoryInUseError, DataDirectoryLock
    from bankaccounts.web.app import ALLOWED_HOSTS_VARIABLE, create_app
    from bankaccounts.web.websocket import MAX_MESSAGE_BYTES

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    if workers < 1 or (workers > 1 and not distributed):
        return fail(
            "--workers above 1 needs --distributed (the embedded system runs in "
            "its one process)"
        )
    hosts = served_hosts(host, allowed_hosts)
    if host in WILDCARD_ADDRESSES and not allowed_hosts.strip():
        print(
            f"bankaccounts: listening on {host}, but only requests for "
            f"{', '.join(hosts)} are answered; give the names clients use "
            "with --allowed-hosts",
            file=sys.stderr,
        )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "ws": "websockets-sansio",
        # uvicorn would buffer a websocket message up to 16 MiB before the handler
        # could refuse it; over this it closes with 1009 (message too big).
        "ws_max_size": MAX_MESSAGE_BYTES,
        "timeout_graceful_shutdown": 5,
    }
    lock: DataDirectoryLock | None = None
    if distributed:
        os.environ.setdefault("PGAPPNAME", "bankaccounts serve")
        # What create_distributed_app reads, in this process and uvicorn's workers.
        os.environ[ALLOWED_HOSTS_VARIABLE] = ",".join(hosts)
        try:
            bank: Bank = DistributedBank(dict(os.environ))
        except ValueError as error:
            return fail(str(error))
        storage = f" (web process): data in {describe_storage({})}"
    else:
        env = system_env(data_dir)
        directory = data_directory(data_dir)
        if directory is not None:
            lock = DataDirectoryLock(directory)
            try:
                lock.acquire()
            except DataDirectoryInUseError as error:
                return fail(str(error), status=1)
        try:
            bank = Bank(env, runner=runner)
        except ValueError as error:
            return fail(str(error))
        storage = f": data in {describe_storage(env)}"
    try:
        sock = listen(host, port)
    except OSError as error:
        return fail(
            f"cannot listen on {host}:{port} ({error.strerror or error}); is "
            "another server using the port? Choose another with --port",
            status=1,
        )
    url = f"http://{url_host(host)}:{sock.getsockname()[1]}"
    print(f"Bank accounts{storage}", flush=True)
    if workers > 1:
        # uvicorn's workers bind the port themselves: it was free a moment ago.
        sock.close()
        print(f"Serving {url} with {workers} workers", flush=True)
        uvicorn.run(
            "bankaccounts.web.app:create_distributed_app",
            factory=True,
            workers=workers,
            **options,
        )
        return 0
    app = create_app(bank, allowed_hosts=hosts)
    server = _clean_exit_server_class()(uvicorn.Config(app, **options))
    print(f"Serving {url} (Ctrl-C to stop)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if lock is not None:
            lock.release()
    return 0 if server.started else 1


#: Addresses that listen on every interface: no client names the server so.
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
    """Prints the reason on stderr; returns the exit status (2: a usage error)."""
    print(f"bankaccounts: {message}", file=sys.stderr)
    return status


def init_db(log_level: str) -> int:
    """Creates the tables of every application of the system, one after another."""
    from bankaccounts.bootstrap import distributed_env
    from bankaccounts.system.definition import BankAccountSystem

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    try:
        env = {**distributed_env(os.environ), "CREATE_TABLE": "y"}
    except ValueError as error:
        print(f"bankaccounts: {error}", file=sys.stderr)
        return 2
    system = BankAccountSystem()
    for name in system.nodes:
        system.get_app_cls(name)(env=env).close()
        print(f"{name}: tables ready", flush=True)
    return 0


def run_worker(name: str, log_level: str) -> int:
    """Runs one process application until SIGINT or SIGTERM."""
    from bankaccounts.bootstrap import distributed_env
    from bankaccounts.worker import Worker

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    try:
        env = distributed_env(os.environ)
    except ValueError as error:
        print(f"bankaccounts: {error}", file=sys.stderr)
        return 2
    # Shows which process a connection belongs to, in pg_stat_activity.
    os.environ.setdefault("PGAPPNAME", f"bankaccounts worker {name}")
    worker = Worker(WORKER_NAMES[name], env)

    def handle(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    worker.run()
    return 0


def status(as_json: bool, stuck_after: float, log_level: str) -> int:
    """Prints each follower's position and lag; 1 if one is stuck, 0 otherwise."""
    from bankaccounts.status import SystemStatus, format_table

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    from eventsourcing.persistence import PersistenceError

    from bankaccounts.bootstrap import system_env

    environ = dict(os.environ)
    if environ.get("PERSISTENCE_MODULE") == "eventsourcing.postgres":
        environ["POSTGRES_POOL_SIZE"] = environ.get("POSTGRES_POOL_SIZE", "1")
    environ.update(system_env(environ=environ))
    try:
        system_status = SystemStatus(environ)
        try:
            statuses = system_status.watch(stuck_after)
        finally:
            system_status.close()
    except PersistenceError as error:
        print(
            f"bankaccounts: cannot read the positions ({error}); "
            "has the bank been started, or init-db run?",
            file=sys.stderr,
        )
        return 2
    if as_json:
        print(json.dumps([s.to_json() for s in statuses], indent=2))
    else:
        print(format_table(statuses))
    return 0 if all(s.is_healthy for s in statuses) else 1  # none stuck or failing


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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]
    args = parser.parse_args(argv)
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
        )
    if args.command == "init-db":
        return init_db(args.log_level)
    if args.command == "worker":
        return run_worker(args.name, args.log_level)
    if args.command == "status":
        return status(args.json, args.stuck_after, args.log_level)
    parser.print_help()  # pragma: no cover (argparse rejects unknown commands)
    return 2  # pragma: no cover

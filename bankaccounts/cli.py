"""The console entry point: `bankaccounts serve` (also `python -m bankaccounts`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
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
) -> int:
    """Runs the web server (and the system, unless distributed) until SIGTERM."""
    import uvicorn

    from bankaccounts.bootstrap import (
        Bank,
        DistributedBank,
        describe_storage,
        system_env,
    )
    from bankaccounts.web.app import create_app

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    if workers < 1 or (workers > 1 and not distributed):
        print(
            "bankaccounts: --workers above 1 needs --distributed (the embedded "
            "system runs in its one process)",
            file=sys.stderr,
        )
        return 2
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "ws": "websockets-sansio",
        "timeout_graceful_shutdown": 5,
    }
    if distributed:
        os.environ.setdefault("PGAPPNAME", "bankaccounts serve")
        try:
            bank: Bank = DistributedBank(dict(os.environ))
        except ValueError as error:
            print(f"bankaccounts: {error}", file=sys.stderr)
            return 2
        print(
            f"Bank accounts (web process): data in {describe_storage({})}", flush=True
        )
        if workers > 1:
            print(f"Serving http://{host}:{port} with {workers} workers", flush=True)
            uvicorn.run(
                "bankaccounts.web.app:create_distributed_app",
                factory=True,
                workers=workers,
                **options,
            )
            return 0
    else:
        env = system_env(data_dir)
        bank = Bank(env, runner=runner)
        print(f"Bank accounts: data in {describe_storage(env)}", flush=True)
    server = _clean_exit_server_class()(uvicorn.Config(create_app(bank), **options))
    print(f"Serving http://{host}:{port} (Ctrl-C to stop)", flush=True)
    server.run()
    return 0 if server.started else 1


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
        )
    if args.command == "init-db":
        return init_db(args.log_level)
    if args.command == "worker":
        return run_worker(args.name, args.log_level)
    if args.command == "status":
        return status(args.json, args.stuck_after, args.log_level)
    parser.print_help()  # pragma: no cover (argparse rejects unknown commands)
    return 2  # pragma: no cover

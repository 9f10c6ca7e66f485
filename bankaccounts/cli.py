"""The console entry point: `bankaccounts serve` (also `python -m bankaccounts`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


def build_parser() -> argparse.ArgumentParser:
    """The command line: subcommands and options (defaults from BANKACCOUNTS_*)."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="bankaccounts", description="An event-sourced bank."
    )
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the system and the web UI")
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
        "--log-level",
        default=env("BANKACCOUNTS_LOG_LEVEL", "info"),
        choices=["critical", "error", "warning", "info", "debug"],
    )
    return parser


def serve(
    host: str, port: int, data_dir: str | None, runner: str, log_level: str
) -> int:
    """Runs the whole system and the web server until SIGINT or SIGTERM."""
    import uvicorn

    from bankaccounts.bootstrap import Bank, describe_storage, system_env
    from bankaccounts.web.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(message)s")
    env = system_env(data_dir)
    app = create_app(Bank(env, runner=runner))
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws="websockets-sansio",
        timeout_graceful_shutdown=5,
    )
    server = _clean_exit_server_class()(config)
    print(f"Bank accounts: data in {describe_storage(env)}", flush=True)
    print(f"Serving http://{host}:{port} (Ctrl-C to stop)", flush=True)
    server.run()
    return 0 if server.started else 1


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
    args = build_parser().parse_args(argv)
    if args.command in (None, "serve"):
        if args.command is None:
            args = build_parser().parse_args(["serve", *(argv or sys.argv[1:])])
        return serve(args.host, args.port, args.data_dir, args.runner, args.log_level)
    return 2  # pragma: no cover (argparse rejects unknown subcommands)

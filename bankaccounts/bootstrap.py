"""The composition root: where data lives, which runner runs the system."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsourcing.system import MultiThreadedRunner, Runner, SingleThreadedRunner

from bankaccounts.infrastructure import sqlite_env
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas

if TYPE_CHECKING:
    from collections.abc import Mapping

RUNNERS: dict[str, type[Runner[Any]]] = {
    "single": SingleThreadedRunner,
    "multi": MultiThreadedRunner,
}
APPLICATION_NAMES = ("Commands", "Sagas", "Accounts", "Interface")
DEFAULT_DATA_DIR = "bankaccounts-data"


def system_env(
    data_dir: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The library's persistence settings for the system.

    If PERSISTENCE_MODULE is set (for example to eventsourcing.postgres with the
    POSTGRES_* variables), the environment decides. Otherwise every application gets
    its own SQLite file in one data directory, so accounts survive a restart.
    """
    environ = os.environ if environ is None else environ
    if environ.get("PERSISTENCE_MODULE"):
        return {}
    directory = data_dir or environ.get("BANKACCOUNTS_DATA_DIR") or DEFAULT_DATA_DIR
    return sqlite_env(Path(directory).resolve(), APPLICATION_NAMES)


def describe_storage(env: Mapping[str, str]) -> str:
    """Says in words where the system keeps its data."""
    if "COMMANDS_SQLITE_DBNAME" in env:
        return f"SQLite files in {Path(env['COMMANDS_SQLITE_DBNAME']).parent}"
    module = os.environ.get("PERSISTENCE_MODULE", "eventsourcing.popo")
    if module.endswith("postgres"):
        database = os.environ.get("POSTGRES_DBNAME", "?")
        host = os.environ.get("POSTGRES_HOST", "?")
        return f"PostgreSQL database {database} on {host}"
    return f"{module} (in memory: nothing survives a restart)"


class Bank:
    """The running system, and the applications that the web layer talks to."""

    def __init__(self, env: Mapping[str, str] | None = None, runner: str = "single"):
        """Builds the runner; call start() to run it."""
        if runner not in RUNNERS:
            msg = f"runner must be one of {', '.join(RUNNERS)}, not {runner!r}"
            raise ValueError(msg)
        self.env = dict(env or {})
        self.runner: Runner[Any] = RUNNERS[runner](BankAccountSystem(), env=self.env)

    def start(self) -> None:
        """Starts the runner (and so every application)."""
        self.runner.start()

    def stop(self) -> None:
        """Stops the runner and closes the applications' connections."""
        self.runner.stop()

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

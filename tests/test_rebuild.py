"""`bankaccounts rebuild-read-model`, run as an operator would, on both stores.

A view tampered with (a balance changed, a transaction deleted, a status set back,
an account closed by hand) is found by the dry run (exit 1, each difference named)
and put right by the rebuild, which ends agreeing with the aggregates; feed
positions carry on past the old ones. It refuses while the server or the Interface
worker runs.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from bankaccounts.deploy.bootstrap import Bank, system_env
from bankaccounts.readmodel import ReadModelOutdatedError
from bankaccounts.readmodel.sqlite import VIEW_TABLES
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.interface import InterfaceApplication
from tests.cluster import connect, wait_until_quiet
from tests.serverprocess import ROOT, ServerProcess

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID

    from tests.cluster import Cluster


def rebuild(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m bankaccounts rebuild-read-model ARGS` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "bankaccounts", "rebuild-read-model", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def make_history(commands: Commands, accounts: Accounts) -> list[UUID]:
    """Accounts with deposits, transfers, a refused withdrawal, a limit, a closing."""
    ids = [accounts.create_account(name) for name in ("Alice", "Bob", "Carol")]
    for number in range(12):
        commands.deposit_funds(ids[number % 3], Decimal("10.00"))
        commands.transfer_funds(ids[number % 3], ids[(number + 1) % 3], Decimal("3"))
    commands.withdraw_funds(ids[1], Decimal("1000.00"))  # insufficient funds
    accounts.set_overdraft_limit(ids[0], Decimal("25.00"))
    accounts.close_account(ids[2])
    return ids


def snapshot(view: Any) -> tuple[list[Any], list[Any]]:
    """Every account and transaction of a view."""
    accounts, more = view.list_accounts(limit=1000)
    transactions, more_transactions = view.list_transactions(limit=10_000)
    assert more is None
    assert more_transactions is None
    return accounts, transactions


@pytest.fixture
def sqlite_bank(tmp_path: Path) -> tuple[Path, tuple[list[Any], list[Any]]]:
    """A stopped embedded bank's data directory, and its view as the bank left it."""
    data_dir = tmp_path / "data"
    bank = Bank(system_env(data_dir))
    bank.start()
    try:
        make_history(bank.commands, bank.accounts)
    finally:
        bank.stop()  # after the followers have finished what was recorded
    interface = InterfaceApplication(system_env(data_dir))
    try:
        before = snapshot(interface.view)
    finally:
        interface.close()
    return data_dir, before


def test_the_rebuild_restores_a_sqlite_view_that_was_tampered_with(
    sqlite_bank: tuple[Path, tuple[list[Any], list[Any]]],
) -> None:
    data_dir, before = sqlite_bank
    accounts, transactions = before
    with sqlite3.connect(data_dir / "interface.sqlite") as db:
        last_position = db.execute("SELECT MAX(position) FROM view_feed").fetchone()[0]
        db.execute(
            "UPDATE view_accounts SET balance='999.00' WHERE id=?",
            (accounts[0].id.hex,),
        )
        db.execute(
            "UPDATE view_accounts SET is_closed=0 WHERE id=?", (accounts[2].id.hex,)
        )
        db.execute(
            "DELETE FROM view_transactions WHERE id=?", (transactions[0].id.hex,)
        )
        db.execute(
            "UPDATE view_transactions SET status='pending' WHERE id=?",
            (transactions[1].id.hex,),
        )
    env = {"BANKACCOUNTS_DATA_DIR": str(data_dir)}

    checked = rebuild("--dry-run", env=env)
    assert checked.returncode == 1, checked.stderr
    report = checked.stdout
    assert "The view differs from the aggregates in 4 places" in report
    assert f"account {accounts[0].id} (Alice): balance is 999.00 in the view" in report
    assert f"account {accounts[2].id} (Carol): is_closed is False in the view" in report
    assert f"{transactions[0].id}: missing from the view" in report
    assert (
        f"{transactions[1].id}: status is pending in the view, "
        f"{transactions[1].status} in the events" in report
    )
    assert "Traceback" not in checked.stderr

    rebuilt = rebuild(env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "The view agrees with the aggregates (3 accounts" in rebuilt.stdout
    assert "rebuilding from Sagas: event" in rebuilt.stderr  # the progress lines
    interface = InterfaceApplication(system_env(data_dir))
    try:
        assert snapshot(interface.view) == before
        feed = interface.view.select_feed(0, limit=10_000)
        # New positions, after the old ones: a client's position is never reused.
        assert feed[0].position == last_position + 1
        assert len(feed) == last_position
    finally:
        interface.close()
    assert rebuild("--dry-run", env=env).returncode == 0


#: The view's tables as the previous version (read model version 1) made them.
VERSION_1_VIEW = (
    "CREATE TABLE view_accounts (id TEXT PRIMARY KEY, name TEXT, "
    "balance TEXT NOT NULL, overdraft_limit TEXT NOT NULL, "
    "is_closed INTEGER NOT NULL, opened_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE INDEX view_accounts_opened ON view_accounts (opened_at)",
    "CREATE TABLE view_transactions (id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
    "debit_account_id TEXT, credit_account_id TEXT, amount TEXT NOT NULL, "
    "status TEXT NOT NULL, error TEXT, created_at TEXT NOT NULL, "
    "updated_at TEXT NOT NULL)",
    "CREATE TABLE view_feed (position INTEGER PRIMARY KEY AUTOINCREMENT, "
    "message TEXT NOT NULL)",
)


def test_a_view_of_the_previous_version_is_refused_then_rebuilt_whole(
    sqlite_bank: tuple[Path, tuple[list[Any], list[Any]]],
) -> None:
    data_dir, (accounts, _) = sqlite_bank
    with sqlite3.connect(data_dir / "interface.sqlite") as db:
        last_position = db.execute("SELECT MAX(position) FROM view_feed").fetchone()[0]
        for table in VIEW_TABLES:
            db.execute(f"DROP TABLE {table}")
        for statement in VERSION_1_VIEW:
            db.execute(statement)
        db.executemany(
            "INSERT INTO view_feed (position, message) VALUES (?, ?)",
            [(position, '{"type":"old"}') for position in (1, last_position)],
        )
    with pytest.raises(ReadModelOutdatedError, match="rebuild-read-model"):
        InterfaceApplication(system_env(data_dir))
    env = {"BANKACCOUNTS_DATA_DIR": str(data_dir)}

    checked = rebuild("--dry-run", env=env)
    assert checked.returncode == 1, checked.stderr
    assert "bankaccounts rebuild-read-model" in checked.stdout
    assert "Traceback" not in checked.stderr

    rebuilt = rebuild(env=env)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "The view agrees with the aggregates (3 accounts" in rebuilt.stdout
    interface = InterfaceApplication(system_env(data_dir))
    try:
        view = interface.view
        entries, _ = view.select_statement(accounts[0].id, limit=1)
        row = view.get_account(accounts[0].id)
        assert row is not None
        assert entries[0].balance == row.balance
        assert entries[0].seq == row.statement_seq > 0
        feed = view.select_feed(0, limit=10_000)
        assert feed[0].position == last_position + 1
    finally:
        interface.close()
    assert rebuild("--dry-run", env=env).returncode == 0


def test_the_rebuild_refuses_while_the_server_runs(
    sqlite_bank: tuple[Path, tuple[list[Any], list[Any]]], tmp_path: Path
) -> None:
    data_dir, _ = sqlite_bank
    server = ServerProcess(data_dir, tmp_path, args=["--log-level", "warning"])
    server.start()
    try:
        refused = rebuild(env={"BANKACCOUNTS_DATA_DIR": str(data_dir)})
        assert refused.returncode == 1
        assert "is in use" in refused.stderr
        assert "stop the server first" in refused.stderr
        # A dry run only reads: it may compare while the server runs.
        checked = rebuild("--dry-run", env={"BANKACCOUNTS_DATA_DIR": str(data_dir)})
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        server.stop()


def test_nothing_to_rebuild_in_an_empty_directory(tmp_path: Path) -> None:
    result = rebuild(env={"BANKACCOUNTS_DATA_DIR": str(tmp_path / "none")})
    assert result.returncode == 2
    assert "nothing to rebuild: no bank in" in result.stderr


@pytest.mark.postgres
def test_the_rebuild_restores_a_postgres_view_once_the_worker_stops(
    cluster: Cluster,
) -> None:
    env = {**cluster.env, "CREATE_TABLE": "n"}
    commands, accounts = Commands(env), Accounts(env)
    try:
        make_history(commands, accounts)
    finally:
        commands.close()
        accounts.close()
    wait_until_quiet(cluster)
    interface = InterfaceApplication(env)
    try:
        before = snapshot(interface.view)
    finally:
        interface.close()
    schema = env["POSTGRES_SCHEMA"]
    with connect(env) as db:
        db.execute(f'UPDATE "{schema}".interface_accounts SET balance = 999')
        db.execute(
            f'DELETE FROM "{schema}".interface_transactions WHERE id = %s',
            (before[1][0].id,),
        )

    refused = rebuild(env=cluster.env)
    assert refused.returncode == 1
    assert "the Interface worker is running" in refused.stderr
    checked = rebuild("--dry-run", env=cluster.env)
    assert checked.returncode == 1
    assert "The view differs from the aggregates in 4 places" in checked.stdout

    cluster.processes["interface"].stop()
    rebuilt = rebuild(env=cluster.env)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "The view agrees with the aggregates (3 accounts" in rebuilt.stdout
    interface = InterfaceApplication(env)
    try:
        assert snapshot(interface.view) == before
    finally:
        interface.close()

    # The worker carries on from the rebuilt view's positions.
    cluster.start("interface")
    commands = Commands(env)
    try:
        commands.deposit_funds(before[0][0].id, Decimal("1.00"))
    finally:
        commands.close()
    wait_until_quiet(cluster)
    assert rebuild("--dry-run", env=cluster.env).returncode == 0

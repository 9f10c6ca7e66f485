"""Accepted work finishes after a crash without new traffic (issue 9, section 2).

A real embedded server accepts transfers (202) faster than it carries them out, so
many are pending when it is killed with SIGKILL. Started again, it must carry out
every one of them without being sent anything new: every follower catches up with
its upstreams on start and at an interval, whatever the runner.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from bankaccounts.deploy.bootstrap import Bank, system_env
from bankaccounts.deploy.status import SystemStatus
from bankaccounts.system.commands import Commands
from tests.serverprocess import ServerProcess
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from uuid import UUID

RUNNERS = ["pipeline", "single", "multi"]
ACCOUNTS = 4
CLIENTS = 8
TRANSFERS = 320  # in all, shared by the clients
FINISH_TIMEOUT = 60.0


def push_transfers_and_kill(server: ServerProcess, account_ids: list[str]) -> list[str]:
    """CLIENTS threads post transfers as fast as they can; SIGKILL after TRANSFERS.

    Returns the ids of the transfers the server accepted (202). A request in flight
    at the kill gets no answer, so it is not counted.
    """
    accepted: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()
    enough = threading.Event()

    def client(index: int) -> None:
        pairs = itertools.cycle(itertools.permutations(account_ids, 2))
        for _ in range(index):
            next(pairs)
        for debit, credit in pairs:
            if killed.is_set():
                return
            body = {"debit_account_id": debit, "credit_account_id": credit}
            try:
                status, answer = server.request(
                    "POST", "/api/transfers", {**body, "amount": "1.00"}
                )
            except OSError:
                if killed.is_set():
                    return
                raise
            with lock:
                if status != 202:
                    errors.append(f"{status} {answer}")
                elif not killed.is_set():
                    accepted.append(answer["transaction_id"])
                if len(accepted) >= TRANSFERS or errors:
                    enough.set()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    enough.wait(FINISH_TIMEOUT)
    with lock:
        killed.set()
        server.kill()
    for thread in threads:
        thread.join()
    assert not errors, errors[:5]
    return accepted


def pending(server: ServerProcess, transaction_ids: set[str]) -> set[str]:
    """The transactions among these that the server says are pending."""
    still = set()
    for transaction_id in transaction_ids:
        status, answer = server.request("GET", f"/api/transactions/{transaction_id}")
        assert status == 200, answer
        if answer["status"] == "pending":
            still.add(transaction_id)
    return still


def lag(data_dir: Path) -> int:
    """The notifications the followers have still to process, read from the files."""
    status = SystemStatus(system_env(data_dir, environ={}))
    try:
        return sum(s.lag for s in status.read())
    finally:
        status.close()


@pytest.mark.parametrize("runner", RUNNERS)
def test_accepted_transfers_finish_after_a_kill_without_new_traffic(
    tmp_path: Path, runner: str
) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(
        data_dir, tmp_path, args=["--runner", runner, "--log-level", "warning"]
    )
    server.start()
    try:
        account_ids = []
        for number in range(ACCOUNTS):
            status, account = server.request(
                "POST", "/api/accounts", {"name": f"Account {number}"}
            )
            assert status == 201, account
            status, answer = server.request(
                "POST",
                f"/api/accounts/{account['id']}/deposits?wait=true",
                {"amount": "1000.00"},
            )
            assert answer["status"] == "succeeded", answer
            account_ids.append(account["id"])

        accepted = push_transfers_and_kill(server, account_ids)
        assert len(accepted) >= TRANSFERS
        lag_at_kill = lag(data_dir)
        assert lag_at_kill > 0, "nothing was pending at the kill: push harder"

        server.start()
        restarted = time.monotonic()
        remaining = set(accepted)
        counts: list[int] = []

        def all_finished() -> bool:
            remaining.intersection_update(pending(server, remaining))
            counts.append(len(remaining))
            return not remaining

        try:
            wait_for(all_finished, FINISH_TIMEOUT)
        except AssertionError:
            msg = (
                f"{len(remaining)} of {len(accepted)} accepted transfers still "
                f"pending {FINISH_TIMEOUT:.0f} s after the restart (lag {lag_at_kill} "
                f"at the kill; pending at each poll: {counts[:3]} ... {counts[-3:]})"
            )
            raise AssertionError(msg) from None
        elapsed = time.monotonic() - restarted
        print(
            f"{runner}: {len(accepted)} accepted, lag {lag_at_kill} at the kill, "
            f"{counts[0]} pending at the first poll after the restart, "
            f"0 pending {elapsed:.1f} s after the restart"
        )
        # Money moved between the accounts only: the total is what was deposited.
        total = Decimal(0)
        for account_id in account_ids:
            status, account = server.request("GET", f"/api/accounts/{account_id}")
            total += Decimal(account["balance"])
        assert total == ACCOUNTS * 1000
    finally:
        server.stop()


@pytest.fixture(params=RUNNERS)
def bank(request: pytest.FixtureRequest, sqlite_env: dict[str, str]) -> Iterator[Bank]:
    """A running bank on SQLite files with each runner, catching up often."""
    bank = Bank(sqlite_env, runner=request.param, catch_up_interval=0.05)
    bank.start()
    try:
        yield bank
    finally:
        bank.stop()


def record_unprompted_deposit(env: dict[str, str], account_id: UUID) -> UUID:
    """A deposit recorded by another Commands on the same file: nobody is prompted.

    As another process would write it, or as the running bank would have written it
    just before it died.
    """
    other = Commands(env=env)
    try:
        return other.deposit_funds(account_id, "5.00")
    finally:
        other.close()


def finished(bank: Bank, transaction_id: UUID) -> bool:
    """True once the read model shows the transaction succeeded."""
    transaction = bank.interface.view.get_transaction(transaction_id)
    return transaction is not None and transaction.status == "succeeded"


def test_work_recorded_without_a_prompt_is_carried_out_while_running(
    bank: Bank, sqlite_env: dict[str, str]
) -> None:
    account_id = bank.accounts.create_account("Alice")
    first = record_unprompted_deposit(sqlite_env, account_id)
    wait_for(lambda: finished(bank, first), 10, "first deposit still pending")
    # Again, now that the first catch-up has run: the next ones come at intervals.
    second = record_unprompted_deposit(sqlite_env, account_id)
    wait_for(lambda: finished(bank, second), 10, "second deposit still pending")
    assert bank.accounts.get_account(account_id).balance == 10


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_catch_up_that_fails_is_logged_and_tried_again(
    sqlite_env: dict[str, str], caplog: pytest.LogCaptureFixture, runner: str
) -> None:
    env = {**sqlite_env, "SQLITE_LOCK_TIMEOUT": "1"}
    bank = Bank(env, runner=runner, catch_up_interval=0.05)
    bank.start()
    try:
        account_id = bank.accounts.create_account("Alice")
        # Another writer holds the Sagas' file: their writes fail, "database is
        # locked", until it lets go.
        blocker = sqlite3.connect(env["SAGAS_SQLITE_DBNAME"], isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            transaction_id = record_unprompted_deposit(env, account_id)

            def failure_logged() -> bool:
                return any(
                    r.levelno == logging.ERROR
                    and "Sagas" in r.getMessage()
                    and "Commands" in r.getMessage()
                    and r.exc_info is not None
                    for r in caplog.records
                )

            with caplog.at_level(logging.ERROR):
                wait_for(failure_logged, 20, "no error logged")
            assert not finished(bank, transaction_id)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        wait_for(lambda: finished(bank, transaction_id), 20, "deposit still pending")
    finally:
        bank.stop()

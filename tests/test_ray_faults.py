"""Ray actors killed in the middle of a load: nothing lost, nothing applied twice.

Commands are sent with idempotency keys (and sent again when their actor died under
them) while the actors of Sagas, Accounts, Interface and Commands are killed, by Ray
(`ray.kill` with restarts) or by SIGKILL of their processes. Ray restarts each; a
restarted follower resumes from its tracking records in PostgreSQL. Afterwards the
invariants of the fault-injection test hold, read straight from the database.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest

from bankaccounts.domainmodel import BankAccount
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas
from tests.raysession import ray, ray_session
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from bankaccounts.deploy.ray import RayRunner

pytestmark = pytest.mark.postgres
__all__ = ["ray_session"]  # a fixture, used by name

ACCOUNTS = 8
OPERATIONS = 240
KILLS = ["Sagas", "Accounts", "Interface", "Commands", "Sagas", "Accounts"]
KILL_EVERY = OPERATIONS // (len(KILLS) + 1)  # operations sent between kills
SEND_ATTEMPTS = 20
METHODS = {
    "deposit": "deposit_funds",
    "withdrawal": "withdraw_funds",
    "transfer": "transfer_funds",
}


@pytest.fixture
def postgres_runner(
    ray_session: str, postgres_env: dict[str, str]
) -> Iterator[RayRunner]:
    from bankaccounts.deploy.ray import RayRunner

    runner = RayRunner(BankAccountSystem(), env=postgres_env)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def pid_of(actor: Any) -> int:
    """The actor's process id, once it answers (Ray may be restarting it)."""
    for _ in range(SEND_ATTEMPTS * 5):
        try:
            pid: int = ray.get(actor.ready.remote(), timeout=60)
        except ray.exceptions.RayActorError:
            time.sleep(0.2)
        else:
            return pid
    pytest.fail("the actor did not come back")


def send(command: Callable[[], UUID]) -> UUID:
    """Sends a keyed command, again if its actor died before it answered."""
    for _ in range(SEND_ATTEMPTS):
        try:
            return command()
        except ray.exceptions.RayActorError:
            time.sleep(0.2)  # Ray is restarting the actor
    pytest.fail("the Commands actor did not come back")


def test_nothing_is_lost_or_applied_twice_when_actors_die(
    postgres_runner: RayRunner,
    postgres_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = postgres_runner
    rng = random.Random(12)
    commands, accounts_proxy = runner.get(Commands), runner.get(Accounts)
    account_ids = [accounts_proxy.create_account() for _ in range(ACCOUNTS)]
    deposits = {
        send(lambda a=a: commands.deposit_funds(a, "1000.00", str(uuid4()))): (
            "deposit",
            Decimal("1000.00"),
        )
        for a in account_ids
    }
    operations: dict[UUID, tuple[str, Decimal]] = dict(deposits)
    kills: list[tuple[str, int, int]] = []  # name, pid killed, pid after

    def kill(number: int) -> None:
        name = KILLS[number]
        actor = runner.actor(name)
        pid = pid_of(actor)
        if number % 2:
            os.kill(pid, signal.SIGKILL)
        else:
            ray.kill(actor, no_restart=False)
        # ray.kill returns at once: the old process may answer a moment longer.
        wait_for(lambda: pid_of(actor) != pid, 60, f"{name} was not restarted")
        kills.append((name, pid, pid_of(actor)))

    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        for number in range(OPERATIONS):
            if number and number % KILL_EVERY == 0 and len(kills) < len(KILLS):
                threading.Thread(target=kill, args=(len(kills),)).start()
                wait_for(lambda n=number: len(kills) >= n // KILL_EVERY, 120)
            kind = rng.choice(["deposit", "withdrawal", "transfer", "transfer"])
            account, other = rng.sample(account_ids, 2)
            amount = Decimal(rng.randint(1, 30_000)) / 100
            key = str(uuid4())
            if kind == "transfer":
                arguments: tuple[Any, ...] = (account, other, amount, key)
            else:
                arguments = (account, amount, key)
            method = getattr(commands, METHODS[kind])
            tid = send(lambda m=method, a=arguments: m(*a))
            operations[tid] = (kind, amount)
        load_seconds = time.monotonic() - started

        env = {**postgres_env, "CREATE_TABLE": "n", "POSTGRES_POOL_SIZE": "1"}
        sagas, accounts = Sagas(env), Accounts(env)
        interface = InterfaceApplication(env)
        try:
            check_invariants(operations, account_ids, sagas, accounts, interface)
        finally:
            for app in (sagas, accounts, interface):
                app.close()
        caught_up = time.monotonic() - started - load_seconds

    assert [name for name, _, _ in kills] == KILLS
    assert all(before != after for _, before, after in kills), kills

    def restarts() -> Counter[str]:
        return Counter(
            r.ray_actor  # type: ignore[attr-defined]
            for r in caplog.records
            if "restarted; resuming" in r.getMessage()
        )

    # The actors' records are relayed at intervals: each restart was logged here.
    wait_for(lambda: restarts() == Counter(KILLS), 30, f"restarts: {restarts()}")
    print(  # the report of the run, shown with -s
        f"\n  {len(operations)} transactions in {load_seconds:.1f} s, all finished "
        f"{caught_up:.1f} s later; kills: {kills}"
    )


def check_invariants(
    operations: dict[UUID, tuple[str, Decimal]],
    account_ids: list[UUID],
    sagas: Sagas,
    accounts: Accounts,
    interface: InterfaceApplication,
) -> None:
    """The fault-injection test's invariants, read from the database."""

    def all_finished() -> bool:
        return all(
            interface.view.get_transaction(tid) is not None
            and interface.view.get_transaction(tid).status != "pending"  # type: ignore[union-attr]
            for tid in operations
        )

    wait_for(all_finished, 180, "not every transaction finished")
    deposited = withdrawn = Decimal(0)
    for tid, (kind, amount) in operations.items():
        saga: Any = sagas.get_saga(tid)
        assert saga.is_finished, tid  # every saga finished
        shown = interface.view.get_transaction(tid)
        assert shown is not None
        assert shown.status == ("succeeded" if saga.has_succeeded else "failed")
        if saga.has_succeeded and kind == "deposit":
            deposited += amount
        if saga.has_succeeded and kind == "withdrawal":
            withdrawn += amount
    total = Decimal(0)
    for account_id in account_ids:
        account = accounts.get_account(account_id)
        appended = [
            e
            for e in accounts.repository.event_store.get(account_id)
            if isinstance(e, BankAccount.TransactionAppended)
        ]
        ids = Counter(e.transaction_id for e in appended)
        assert not [i for i, n in ids.items() if n > 1], account_id  # not twice
        assert account.balance == sum((e.amount for e in appended), Decimal(0))
        shown_account = interface.view.get_account(account_id)
        assert shown_account is not None
        assert shown_account.balance == account.balance
        total += account.balance
    assert total == deposited - withdrawn  # money neither made nor lost

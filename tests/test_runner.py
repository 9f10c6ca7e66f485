"""The embedded bank's PipelineRunner: the system's scenarios, and its own promises."""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from bankaccounts.deploy import bootstrap
from bankaccounts.deploy.bootstrap import DEFAULT_RUNNER, Bank
from bankaccounts.deploy.runner import PipelineRunner
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas
from bankaccounts.usecases import Banking
from bankaccounts.users import Actor
from tests.test_system import SystemScenarios
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventsourcing.system import Runner


@pytest.fixture
def runner(persistence_env: dict[str, str]) -> Iterator[Runner[Any]]:
    runner = PipelineRunner(BankAccountSystem(), env=persistence_env)
    runner.start()
    yield runner
    runner.stop()


class TestPipelineRunner(SystemScenarios):
    """Every scenario of the system, under the pipeline runner."""


def test_the_embedded_default_is_the_pipeline() -> None:
    assert DEFAULT_RUNNER == "pipeline"
    assert Bank().runner.__class__ is PipelineRunner


def test_a_saga_ends_in_the_read_model_after_the_account_change_it_caused(
    sqlite_env: dict[str, str],
) -> None:
    """The interface follows Accounts and Sagas apart, yet in causal order.

    Each feed message that says a deposit succeeded is delivered right after the
    interface committed it; the balance the read model shows then already has
    every deposit that has been said to succeed (a client that waited for its
    transaction reads the balance it made).
    """
    bank = Bank(sqlite_env, runner="pipeline")
    bank.start()
    try:
        account = bank.accounts.create_account()
        view = bank.interface.view
        succeeded: set[Any] = set()
        behind: list[tuple[int, Decimal]] = []

        def listener(messages: Any) -> None:
            for message in messages:
                if message.type == "transaction_succeeded":
                    succeeded.add(message.transaction_id)
                    shown = view.get_account(account)
                    balance = shown.balance if shown else Decimal(0)
                    if balance < len(succeeded):
                        behind.append((len(succeeded), balance))

        bank.add_feed_listener(listener)
        commands = bank.commands

        def client(count: int) -> None:
            for _ in range(count):
                commands.deposit_funds(account, Decimal("1.00"))

        clients = [threading.Thread(target=client, args=(50,)) for _ in range(4)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        wait_for(lambda: len(succeeded) == 200, message="the deposits did not end")
        assert behind == []
        shown = view.get_account(account)
        assert shown is not None
        assert shown.balance == Decimal(200)
    finally:
        bank.stop()


@pytest.mark.parametrize("runner_name", ["pipeline", "single", "multi"])
def test_a_client_reads_the_accounts_it_writes(
    sqlite_env: dict[str, str], runner_name: str
) -> None:
    """Opened, limited, closed: the read model shows it when the use case returns."""
    bank = Bank(sqlite_env, runner=runner_name)
    bank.start()
    try:
        banking = Banking(bank)
        alice = Actor(uuid4(), "alice", "customer")
        for number in range(20):
            opened = banking.open_account(alice, f"Savings {number}")
            listed = banking.list_accounts(alice, limit=100).items
            assert opened.id in [account.id for account in listed]
            banking.set_overdraft_limit(alice, opened.id, Decimal(number))
            shown = bank.interface.view.get_account(opened.id)
            assert shown is not None
            assert shown.overdraft_limit == Decimal(number)
            banking.close_account(alice, opened.id)
            shown = bank.interface.view.get_account(opened.id)
            assert shown is not None
            assert shown.is_closed
    finally:
        bank.stop()


def test_a_write_is_answered_when_the_read_model_is_stuck(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait for the read model is bounded: a stuck interface delays, never hangs."""
    monkeypatch.setattr(bootstrap, "READ_YOUR_WRITES_TIMEOUT", 0.2)
    bank = Bank(sqlite_env, runner="pipeline")
    bank.start()
    try:
        interface = bank.interface
        interface.view  # noqa: B018 (made before the interface stops following)
        thread = bank.runner.threads[interface.name]  # type: ignore[attr-defined]
        thread.stop()
        thread.join(timeout=10)
        banking = Banking(bank)
        alice = Actor(uuid4(), "alice", "customer")
        started = time.monotonic()
        opened = banking.open_account(alice, "Stuck")
        assert time.monotonic() - started >= 0.2
        assert opened.name == "Stuck"
        assert banking.account(alice, opened.id).id == opened.id  # from the aggregate
        assert not bank.wait_for_read_model()
    finally:
        bank.stop()


def test_a_failing_pull_leaves_the_follower_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = PipelineRunner(
        BankAccountSystem(), env={"PERSISTENCE_MODULE": "eventsourcing.popo"}
    )
    sagas = runner.get(Sagas)
    pull = sagas.pull_notifications
    failures = [1]

    def failing_once(leader_name: str, *args: Any, **kwargs: Any) -> Any:
        if leader_name == Commands.name and failures:
            failures.pop()
            msg = "the log cannot be read just now"
            raise OSError(msg)
        return pull(leader_name, *args, **kwargs)

    sagas.pull_notifications = failing_once  # type: ignore[method-assign]
    runner.start()
    try:
        interface = runner.get(InterfaceApplication)
        account = runner.get(Accounts).create_account()
        commands = runner.get(Commands)
        with caplog.at_level(logging.ERROR):
            first = commands.deposit_funds(account, Decimal(1))
            # The failure is logged by the follower's thread after the pull raised.
            wait_for(
                lambda: "following Commands failed" in caplog.text,
                message="the failed pull was not logged",
            )
        assert not failures
        # The thread lives on: the next command's prompt processes both.
        second = commands.deposit_funds(account, Decimal(2))
        for transaction_id in (first, second):
            wait_for(
                lambda t=transaction_id: (
                    (view := interface.view.get_transaction(t)) is not None
                    and view.status == "succeeded"
                ),
                message="a deposit did not finish",
            )
        assert all(thread.is_alive() for thread in runner.threads.values())
    finally:
        runner.stop()
    assert not any(thread.is_alive() for thread in runner.threads.values())


def test_positions_are_remembered_and_read_again_after_a_failure(
    sqlite_env: dict[str, str],
) -> None:
    runner = PipelineRunner(BankAccountSystem(), env=sqlite_env)
    sagas = runner.get(Sagas)
    reads: list[str] = []
    max_tracking_id = sagas.recorder.max_tracking_id

    def counted(leader_name: str) -> int | None:
        reads.append(leader_name)
        return max_tracking_id(leader_name)

    sagas.recorder.max_tracking_id = counted  # type: ignore[method-assign]
    runner.start()
    try:
        account = runner.get(Accounts).create_account()
        commands = runner.get(Commands)
        interface = runner.get(InterfaceApplication)
        ids = [commands.deposit_funds(account, Decimal(1)) for _ in range(5)]

        def finished() -> bool:
            views = [interface.view.get_transaction(t) for t in ids]
            return all(v is not None and v.status == "succeeded" for v in views)

        wait_for(finished, message="the deposits did not finish")
        # Once per upstream, not once per pull.
        assert sorted(set(reads)) == sorted(reads)
        sagas.forget_position(Commands.name)
        more = commands.deposit_funds(account, Decimal(1))
        wait_for(
            lambda: (
                (view := interface.view.get_transaction(more)) is not None
                and view.status == "succeeded"
            ),
            message="the last deposit did not finish",
        )
        assert reads.count(Commands.name) == 2
        assert runner.get(Accounts).get_account(account).balance == Decimal(6)
    finally:
        runner.stop()


def test_bank_with_the_pipeline_runner_stops_cleanly(
    sqlite_env: dict[str, str],
) -> None:
    bank = Bank(sqlite_env, runner="pipeline", catch_up_interval=0.05)
    bank.start()
    threads = list(bank.runner.threads.values())  # type: ignore[attr-defined]
    try:
        account = bank.accounts.create_account()
        done = threading.Event()

        def listener(messages: Any) -> None:
            if any(m.type == "transaction_succeeded" for m in messages):
                done.set()

        bank.add_feed_listener(listener)
        bank.commands.deposit_funds(account, Decimal("5.00"))
        assert done.wait(10)
    finally:
        bank.stop()
    assert not any(thread.is_alive() for thread in threads)


def test_a_clean_stop_finishes_what_was_recorded(sqlite_env: dict[str, str]) -> None:
    """Stopped right after a burst of commands, every follower is up to date."""
    bank = Bank(sqlite_env, runner="pipeline", catch_up_interval=60)
    bank.start()
    try:
        account = bank.accounts.create_account()
        for _ in range(300):
            bank.commands.deposit_funds(account, Decimal("1.00"))
    finally:
        bank.stop()
    statuses = Bank(sqlite_env, runner="single").follower_statuses()
    assert [(s.follower, s.upstream, s.lag) for s in statuses if s.lag] == []
    reopened = Bank(sqlite_env, runner="single")
    shown = reopened.interface.view.get_account(account)
    assert shown is not None
    assert shown.balance == Decimal(300)


def test_the_feed_tells_each_transactions_steps_in_order(
    persistence_env: dict[str, str],
) -> None:
    """Pending, then the account's change, then the end: for every transaction.

    Four clients transfer between two accounts at once; the interface takes
    Accounts' and Sagas' events together, merged in the order they happened.
    """
    runner = PipelineRunner(BankAccountSystem(), env=persistence_env)
    runner.start()
    try:
        interface = runner.get(InterfaceApplication)
        steps: dict[Any, list[str]] = {}
        lock = threading.Lock()

        def listener(messages: Any) -> None:
            with lock:
                for message in messages:
                    if message.transaction_id is not None:
                        steps.setdefault(message.transaction_id, []).append(
                            message.type
                        )

        interface.add_feed_listener(listener)
        accounts = runner.get(Accounts)
        a, b = accounts.create_account("A"), accounts.create_account("B")
        commands = runner.get(Commands)
        funded = commands.deposit_funds(a, Decimal(1000))

        def client(count: int) -> None:
            for _ in range(count):
                commands.transfer_funds(a, b, Decimal("1.00"))

        wait_for(lambda: "transaction_succeeded" in steps.get(funded, []))
        clients = [threading.Thread(target=client, args=(25,)) for _ in range(4)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()

        def ended() -> int:
            with lock:
                return sum("transaction_succeeded" in s for s in steps.values())

        wait_for(lambda: ended() == 101, message="the transfers did not end")
        transfer = [
            "transaction_pending",
            "transaction_appended",
            "transaction_appended",
            "transaction_succeeded",
        ]
        deposit = [transfer[0], transfer[1], transfer[3]]
        with lock:
            assert steps.pop(funded) == deposit
            assert {tuple(s) for s in steps.values()} == {tuple(transfer)}
        assert accounts.get_account(b).balance == Decimal(100)
    finally:
        runner.stop()


def test_a_page_of_two_upstreams_records_both_positions(
    persistence_env: dict[str, str],
) -> None:
    """One commit holds each upstream's tracking record; a page that overlaps
    what is recorded is refused as a whole."""
    runner = PipelineRunner(BankAccountSystem(), env=persistence_env)
    runner.start()
    try:
        accounts = runner.get(Accounts)
        account = accounts.create_account("A")
        transaction = runner.get(Commands).deposit_funds(account, Decimal(5))
        interface = runner.get(InterfaceApplication)
        wait_for(
            lambda: (
                (view := interface.view.get_transaction(transaction)) is not None
                and view.status == "succeeded"
            ),
            message="the deposit did not end",
        )
        runner.drain()
        sagas = runner.get(Sagas)
        recorder = interface.recorder
        assert recorder.max_tracking_id(Accounts.name) == (
            accounts.recorder.max_notification_id()
        )
        assert recorder.max_tracking_id(Sagas.name) == (
            sagas.recorder.max_notification_id()
        )
    finally:
        runner.stop()

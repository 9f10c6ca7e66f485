"""The embedded bank's PipelineRunner: the system's scenarios, and its own promises."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from bankaccounts.deploy.bootstrap import DEFAULT_RUNNER, Bank
from bankaccounts.deploy.runner import PipelineRunner
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas
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


def test_the_embedded_default_reads_its_own_writes() -> None:
    assert DEFAULT_RUNNER == "single"


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

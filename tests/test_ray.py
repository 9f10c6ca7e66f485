"""The system on Ray actors: every scenario, errors, logs, the feed and the server.

One runner per store serves every scenario of a module (they open fresh accounts
each), as starting four actors takes about 2 s.
"""

from __future__ import annotations

import contextlib
import logging
import os
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from bankaccounts.deploy.bootstrap import Bank
from bankaccounts.exceptions import AccountNotFoundError, InsufficientFundsError
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas
from tests.raysession import STORES, ray, ray_session, store_env
from tests.serverprocess import ServerProcess
from tests.test_system import SystemScenarios
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from bankaccounts.deploy.ray import RayRunner
    from bankaccounts.readmodel import FeedMessage

__all__ = ["ray_session"]  # a fixture, used by name


@pytest.fixture(scope="module", params=STORES)
def ray_runner(request: pytest.FixtureRequest, ray_session: str) -> Iterator[RayRunner]:
    from bankaccounts.deploy.ray import RayRunner

    with store_env(request, request.param) as env:
        runner = RayRunner(BankAccountSystem(), env=env)
        runner.start()
        try:
            yield runner
        finally:
            runner.stop()


class TestRaySystem(SystemScenarios):
    """The system's scenarios with each application in a Ray actor."""

    @pytest.fixture
    def runner(self, ray_runner: RayRunner) -> Iterator[RayRunner]:
        yield ray_runner
        # A scenario may replace a policy to inject a fault; the runner goes on.
        for cls in (Sagas, Accounts):
            with contextlib.suppress(AttributeError):
                del ray_runner.get(cls).policy

    def test_each_application_runs_in_an_actor_process_of_its_own(self) -> None:
        pids = {
            name: ray.get(self.runner.actor(name).ready.remote())
            for name in BankAccountSystem().nodes
        }
        assert len(set(pids.values())) == len(pids) == 4
        assert os.getpid() not in pids.values()

    def test_errors_are_raised_with_their_types_and_attributes(self) -> None:
        account_id = self.open_account("10.00")
        unknown = uuid4()
        with pytest.raises(AccountNotFoundError) as not_found:
            self.accounts.get_account(unknown)
        assert not_found.value.account_id == unknown
        assert type(not_found.value) is AccountNotFoundError
        self.accounts.set_overdraft_limit(account_id, "0.00")
        transaction_id = self.commands.withdraw_funds(account_id, "10.01")
        saga = self.assert_errored(transaction_id, InsufficientFundsError(account_id))
        assert saga.errors[0].account_id == account_id

    def test_attributes_read_as_copies_or_proxies(self) -> None:
        assert self.sagas.name == "Sagas"
        assert "Created" in self.sagas.topics[0]
        recorder = self.commands.recorder
        assert recorder is self.commands.recorder  # a part is asked for once
        assert "Commands" in repr(recorder)

    def test_what_the_actors_log_is_logged_here(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        poisoned = self.commands.command_id_for("logged")
        self.poison(self.sagas, {poisoned})
        account_id = self.open_account()
        with caplog.at_level(logging.ERROR):
            self.commands.deposit_funds(account_id, "1.00", "logged")
            self.wait_for_failed_view(poisoned)

            def logged() -> bool:
                return any(
                    f"aggregate {poisoned}" in r.getMessage()
                    and getattr(r, "ray_actor", None) == "Sagas"
                    for r in caplog.records
                )

            wait_for(logged, 30, "the actor's error was not logged here")

    def test_feed_listeners_get_the_read_models_messages(self) -> None:
        received: list[FeedMessage] = []
        remove = self.runner.get(InterfaceApplication).add_feed_listener(
            received.extend
        )
        try:
            account_id = self.open_account("5.00")

            def delivered() -> bool:
                return any(str(account_id) in str(m.data) for m in received)

            wait_for(delivered, 30, "no feed message about the account")
        finally:
            remove()


def test_the_bank_runs_on_ray_without_its_catch_up_thread(ray_session: str) -> None:
    bank = Bank({"PERSISTENCE_MODULE": "eventsourcing.popo"}, runner="ray")
    assert not bank.catch_up.enabled
    bank.start()
    try:
        assert bank.catch_up._thread is None
        account_id = bank.accounts.create_account()
        transaction_id = bank.commands.deposit_funds(account_id, "3.00")

        def finished() -> bool:
            view = bank.interface.view.get_transaction(transaction_id)
            return view is not None and view.status == "succeeded"

        wait_for(finished, message="the deposit did not succeed")
        assert bank.accounts.get_balance(account_id) == Decimal("3.00")
        statuses = bank.follower_statuses()
        assert {(s.follower, s.upstream) for s in statuses} == {
            ("Sagas", "Commands"),
            ("Sagas", "Accounts"),
            ("Accounts", "Sagas"),
            ("Interface", "Accounts"),
            ("Interface", "Sagas"),
        }
        assert all(s.is_healthy for s in statuses)
    finally:
        bank.stop()


def test_sqlite_is_refused_as_a_ray_store(tmp_path: Path) -> None:
    from bankaccounts.deploy.bootstrap import system_env

    with pytest.raises(ValueError, match="SQLite files belong to one process"):
        Bank(system_env(tmp_path), runner="ray")


def test_serve_with_the_ray_runner_refuses_sqlite_files(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data",
        tmp_path,
        args=["--runner", "ray"],
        env={"PERSISTENCE_MODULE": ""},
    )
    server.launch()
    assert server.wait() == 2
    output = server.output()
    assert "SQLite files belong to one process" in output
    assert "Traceback" not in output


@pytest.mark.postgres
def test_serve_with_the_ray_runner_on_postgres(
    ray_session: str, postgres_env: dict[str, str], tmp_path: Path
) -> None:
    server = ServerProcess(
        tmp_path / "data",
        tmp_path,
        args=["--runner", "ray", "--log-level", "warning"],
        env={**postgres_env, "RAY_ADDRESS": ray_session},
    )
    server.start()
    try:
        status, account = server.request("POST", "/api/accounts", {"name": "Ray"})
        assert status == 201, account
        account_id = account["id"]
        status, deposit = server.request(
            "POST", f"/api/accounts/{account_id}/deposits", {"amount": "12.34"}
        )
        assert status in (200, 201, 202), deposit

        def balance() -> Any:
            _, answer = server.request("GET", f"/api/accounts/{account_id}")
            return answer.get("balance")

        wait_for(lambda: balance() == "12.34", 30, "the deposit was not applied")
    finally:
        assert server.stop() == 0, server.output()
    assert "Traceback" not in server.output()

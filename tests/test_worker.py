"""The worker in this process: recovery when processing a page fails, and stopping."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest

from bankaccounts.bootstrap import distributed_env
from bankaccounts.domainmodel import BankAccount
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.worker import PAGE_SIZE, Worker
from tests.waiting import wait_for

if TYPE_CHECKING:
    from bankaccounts.system.batching import Job

pytestmark = pytest.mark.postgres

BACKLOG = 6 * PAGE_SIZE  # a page, a full inbox, and more waiting


class FailingOnceInterface(InterfaceApplication):
    """Fails its first page, as if the database went away in the middle of it."""

    name = "Interface"
    failures: list[int] = []

    def process_events(self, jobs: list[Job]) -> None:
        if not self.failures:
            self.failures.append(len(jobs))
            msg = "the first page fails"
            raise RuntimeError(msg)
        super().process_events(jobs)


def test_a_page_that_fails_with_a_full_inbox_is_processed_again(
    postgres_env: dict[str, str],
) -> None:
    env = {**postgres_env, "CREATE_TABLE": "y"}
    for name in BankAccountSystem().nodes:
        BankAccountSystem().get_app_cls(name)(env=env).close()
    accounts = Accounts(env)
    try:
        accounts.save(*[BankAccount(name=f"Customer {n}") for n in range(BACKLOG)])
    finally:
        accounts.close()

    worker = Worker("Interface", distributed_env(postgres_env), first_retry_delay=0.1)
    worker.follower_class = FailingOnceInterface
    FailingOnceInterface.failures.clear()
    FailingOnceInterface.worker = worker
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        # The runners fill the inbox while the first page fails; the worker must
        # close it, stop them, and start again from the tracking position.
        wait_for(lambda: worker.reconnects == 1, 30, "no reconnect")
        view: Any = InterfaceApplication(distributed_env(postgres_env))
        try:
            wait_for(lambda: len(view.view.list_accounts()) == BACKLOG, 30, "backlog")
        finally:
            view.close()
        assert FailingOnceInterface.failures == [PAGE_SIZE]
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()

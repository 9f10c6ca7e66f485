"""Processing a page of events per commit: rebuilding the read model, catching up.

A second interface application follows the same Accounts and Sagas from scratch and
must end with the same accounts, transactions and feed as the one that followed them
live, event by event, in every store.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import Tracking
from eventsourcing.system import SingleThreadedRunner

from bankaccounts.infrastructure import PAGE_SIZE
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import DepositFundsSaga, Sagas

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from eventsourcing.persistence import Recording


class RebuiltInterface(InterfaceApplication):
    """The same read model, in tables (or a file) of its own."""

    name = "Rebuilt"


@pytest.fixture
def runner(persistence_env: dict[str, str]) -> Iterator[SingleThreadedRunner[Any]]:
    runner = SingleThreadedRunner(BankAccountSystem(), env=persistence_env)
    runner.start()
    yield runner
    runner.stop()


def rebuilt_env(persistence_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = dict(persistence_env)
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        env["REBUILT_SQLITE_DBNAME"] = str(tmp_path / "rebuilt.sqlite")
    return env


def test_a_rebuild_commits_a_page_at_a_time_and_ends_where_the_live_view_is(
    runner: SingleThreadedRunner[Any],
    persistence_env: dict[str, str],
    tmp_path: Path,
) -> None:
    commands = runner.get(Commands)
    accounts = runner.get(Accounts)
    names = ["Alice", "Bob", "Carol"]
    ids = [accounts.create_account(name) for name in names]
    for number in range(40):
        commands.deposit_funds(ids[number % 3], Decimal("10.00"))
        commands.transfer_funds(ids[number % 3], ids[(number + 1) % 3], Decimal("7"))
        commands.withdraw_funds(ids[number % 3], Decimal("4.50"))
    accounts.close_account(ids[2])
    commands.transfer_funds(ids[0], ids[2], Decimal("1.00"))  # refunded
    commands.withdraw_funds(ids[1], Decimal("1000.00"))  # insufficient funds
    live = runner.get(InterfaceApplication).view

    rebuilt = RebuiltInterface(rebuilt_env(persistence_env, tmp_path))
    commits: list[int] = []
    record = rebuilt._record

    def counting_record(processing_event: Any) -> list[Recording[Any]]:
        commits.append(len(processing_event.saved_kwargs["view_changes"].feed))
        return record(processing_event)

    rebuilt._record = counting_record  # type: ignore[method-assign]
    try:
        rebuilt.follow(accounts.name, accounts.notification_log)
        sagas = runner.get(Sagas)
        rebuilt.follow(sagas.name, sagas.notification_log)
        rebuilt.pull_and_process(accounts.name)
        rebuilt.pull_and_process(sagas.name)

        view = rebuilt.view
        assert view.list_accounts() == live.list_accounts()
        assert view.list_transactions(limit=500) == live.list_transactions(limit=500)
        assert len(view.list_transactions(limit=500)[0]) == 122
        for account_id in ids:
            assert view.select_statement(account_id, limit=500) == (
                live.select_statement(account_id, limit=500)
            )
        # The live feed's messages, in another order: Accounts' events first.
        live_feed = [m.to_json() for m in live.select_feed(0, limit=10_000)]
        rebuilt_feed = [m.to_json() for m in view.select_feed(0, limit=10_000)]
        assert without_positions(rebuilt_feed) == without_positions(live_feed)
        assert [m["position"] for m in rebuilt_feed] == list(
            range(1, len(rebuilt_feed) + 1)
        )
        # A page of up to 500 events is one commit; the live view took one each.
        accounts_events = accounts.recorder.max_notification_id()
        assert accounts_events is not None
        assert len(commits) <= 2 + accounts_events // 500 + 1
        assert max(commits) > 100
        # The error message names the account from the same page's Created event.
        errors = [m for m in rebuilt_feed if m["type"] == "error_recorded"]
        assert errors[-1]["error"] == "Insufficient funds in Bob's account"
        assert rebuilt.recorder.max_tracking_id(accounts.name) == accounts_events
    finally:
        rebuilt.close()


def without_positions(feed: list[dict[str, Any]]) -> list[str]:
    """The messages without their positions, sorted: what, not where."""
    return sorted(
        json.dumps({k: v for k, v in m.items() if k != "position"}, sort_keys=True)
        for m in feed
    )


def test_a_page_of_events_changing_one_account_again_and_again_is_one_commit(
    persistence_env: dict[str, str],
) -> None:
    """Accounts and Sagas read what earlier events of the same page changed."""
    commands = Commands(persistence_env)
    sagas = Sagas(persistence_env)
    accounts = Accounts(persistence_env)
    try:
        sagas.follow(commands.name, commands.notification_log)
        sagas.follow(accounts.name, accounts.notification_log)
        accounts.follow(sagas.name, sagas.notification_log)
        alice = accounts.create_account("Alice")
        deposits = [commands.deposit_funds(alice, Decimal("10.00")) for _ in range(30)]
        withdrawal = commands.withdraw_funds(alice, Decimal("301.00"))
        transfer = commands.transfer_funds(alice, uuid4(), Decimal("5.00"))
        commits = count_records(sagas), count_records(accounts)

        sagas.pull_and_process(commands.name)  # one page: 32 sagas started
        accounts.pull_and_process(sagas.name)  # one page: 32 requests
        sagas.pull_and_process(accounts.name)  # one page: 32 outcomes
        for _ in range(3):  # the transfer: credit (rejected), refund, end
            accounts.pull_and_process(sagas.name)
            sagas.pull_and_process(accounts.name)

        assert accounts.get_balance(alice) == Decimal("300.00")
        assert all(sagas.get_saga(d).has_succeeded for d in deposits)
        assert sagas.get_saga(withdrawal).has_errored
        assert sagas.get_saga(transfer).has_errored
        # A commit per page, not per event: sagas, outcomes, the refund, the end.
        assert len(commits[0]) == 4
        assert len(commits[1]) == 3  # requests, the credit, the refund
    finally:
        for app in (commands, sagas, accounts):
            app.close()


def count_records(app: Any) -> list[int]:
    """Counts the application's commits (calls of _record) in a list, one per page."""
    commits: list[int] = []
    record = app._record

    def counting(processing_event: Any) -> Any:
        commits.append(1)
        return record(processing_event)

    app._record = counting
    return commits


@pytest.mark.postgres
def test_pages_of_hundreds_of_transactions_and_their_feed_are_recorded(
    postgres_env: dict[str, str],
) -> None:
    """After a sagas restart, the interface gets full pages of new transactions.

    Their rows go in with executemany() and the feed after them with one INSERT
    ... RETURNING, in a pipeline. Reading the positions from the cursor that the
    executemany() used failed about every other page ("the last operation didn't
    produce records (command status: INSERT 0 1)"), in a loop, as a sagas restart
    showed.
    """
    env = {**postgres_env, "CREATE_TABLE": "y"}
    sagas, interface = Sagas(env), InterfaceApplication(env)
    try:
        position = 0
        for _ in range(10):
            sagas.save(
                *[
                    DepositFundsSaga(uuid4(), uuid4(), Decimal("1.00"))
                    for _ in range(PAGE_SIZE)
                ]
            )
            notifications = sagas.recorder.select_notifications(
                start=position, limit=PAGE_SIZE, inclusive_of_start=False
            )
            position = notifications[-1].id
            interface.process_events(
                [
                    (sagas.mapper.to_domain_event(n), Tracking(sagas.name, n.id))
                    for n in notifications
                ]
            )
        feed = interface.view.select_feed(0, limit=20 * PAGE_SIZE)
        assert [m.position for m in feed] == list(range(1, 10 * PAGE_SIZE + 1))
        page, cursor = interface.view.list_transactions(limit=PAGE_SIZE)
        assert len(page) == PAGE_SIZE
        assert cursor is not None
        assert interface.recorder.max_tracking_id(sagas.name) == position
    finally:
        sagas.close()
        interface.close()

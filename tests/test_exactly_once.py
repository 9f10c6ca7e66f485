"""Exactly once with two instances of a follower on one store.

Two instances of a follower happen in real life (a rolling deploy, a supervisor that
restarts a worker whose old session is still alive). Each pulls a page of events
after the position it read; a page whose first events the other instance has
committed since must be refused, not applied again. Reproduced as the issue did:
instance A commits [e1], instance B then commits [e1, e2].
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from bankaccounts.domainmodel import BankAccount
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import DepositFundsSaga, Sagas

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventsourcing.application import Application

    from bankaccounts.system.batching import Job


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def shared_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """One store that every instance of an application shares, tables made."""
    env: dict[str, str] = {
        **request.getfixturevalue(f"{request.param}_env"),
        "CREATE_TABLE": "y",
    }
    system = BankAccountSystem()
    for name in system.nodes:
        system.get_app_cls(name)(env=env).close()
    return env


def jobs_of(upstream: Application[Any], topics: tuple[str, ...]) -> list[Job]:
    """The upstream's events of these topics, as a runner hands them to a follower."""
    notifications = upstream.recorder.select_notifications(
        start=None, limit=100, topics=topics
    )
    return [
        (upstream.mapper.to_domain_event(n), Tracking(upstream.name, n.id))
        for n in notifications
    ]


def test_an_accounts_page_overlapping_another_instances_commit_is_refused(
    shared_env: dict[str, str],
) -> None:
    first, second, sagas = Accounts(shared_env), Accounts(shared_env), Sagas(shared_env)
    try:
        account_id = first.create_account("X")
        sagas.save(DepositFundsSaga(uuid4(), account_id, Decimal("10.00")))
        sagas.save(DepositFundsSaga(uuid4(), account_id, Decimal("5.00")))
        e1, e2 = jobs_of(sagas, first.topics)

        first.process_events([e1])
        with pytest.raises(IntegrityError):
            second.process_events([e1, e2])  # e1 is already applied
        first.process_events([e2])

        account = first.get_account(account_id)
        assert account.balance == Decimal("15.00")
        events = list(first.repository.event_store.get(account_id))
        applied = [e for e in events if isinstance(e, BankAccount.TransactionAppended)]
        assert [e.amount for e in applied] == [Decimal("10.00"), Decimal("5.00")]
        assert first.recorder.max_tracking_id("Sagas") == e2[1].notification_id
    finally:
        for app in (first, second, sagas):
            app.close()


def test_a_read_model_page_overlapping_another_instances_commit_is_refused(
    shared_env: dict[str, str],
) -> None:
    accounts = Accounts(shared_env)
    first = InterfaceApplication(shared_env)
    second = InterfaceApplication(shared_env)
    try:
        account = BankAccount(name="X")
        account.append_transaction(Decimal("10.00"), uuid4())
        accounts.save(account)  # opened (e0) and +10 (e1): one commit
        account.append_transaction(Decimal("5.00"), uuid4())
        accounts.save(account)  # +5 (e2)
        e0, e1, e2 = jobs_of(accounts, first.topics)

        first.process_events([e0, e1])
        with pytest.raises(IntegrityError):
            second.process_events([e1, e2])  # e1 is already in the view
        first.process_events([e2])

        shown = first.view.get_account(account.id)
        assert shown is not None
        assert shown.balance == Decimal("15.00")
        feed = first.view.select_feed(0)
        appended = ["transaction_appended"] * 2
        assert [m.type for m in feed] == ["account_opened", *appended]
    finally:
        for app in (accounts, first, second):
            app.close()


@pytest.fixture
def two_upstreams(
    shared_env: dict[str, str],
) -> Iterator[tuple[InterfaceApplication, InterfaceApplication, Job, Job]]:
    """Two interfaces on one store, an account's opening and a saga's start."""
    accounts, sagas = Accounts(shared_env), Sagas(shared_env)
    first = InterfaceApplication(shared_env)
    second = InterfaceApplication(shared_env)
    try:
        account_id = accounts.create_account("X")
        sagas.save(DepositFundsSaga(uuid4(), account_id, Decimal("10.00")))
        (a0,) = jobs_of(accounts, first.topics)
        (s0,) = jobs_of(sagas, first.topics)
        yield first, second, a0, s0
    finally:
        for app in (accounts, sagas, first, second):
            app.close()


def test_a_page_of_two_upstreams_is_recorded_or_refused_as_a_whole(
    two_upstreams: tuple[InterfaceApplication, InterfaceApplication, Job, Job],
) -> None:
    """The interface's page of Accounts' and Sagas' events (PipelineRunner) writes
    both positions in one commit; overlapping either refuses all of it."""
    first, second, a0, s0 = two_upstreams
    first.process_events([a0])
    with pytest.raises(IntegrityError):
        second.process_events([a0, s0])  # a0 is in the view already
    assert first.recorder.max_tracking_id(Sagas.name) is None  # none of it

    first.process_events([s0])
    assert first.recorder.max_tracking_id(Accounts.name) == a0[1].notification_id
    assert first.recorder.max_tracking_id(Sagas.name) == s0[1].notification_id
    assert [m.type for m in first.view.select_feed(0)] == [
        "account_opened",
        "transaction_pending",
    ]


def test_both_positions_of_a_page_of_two_upstreams_are_recorded(
    two_upstreams: tuple[InterfaceApplication, InterfaceApplication, Job, Job],
) -> None:
    first, second, a0, s0 = two_upstreams
    first.process_events([a0, s0])  # one commit, both upstreams
    for interface in (first, second):
        recorder = interface.recorder
        assert recorder.max_tracking_id(Accounts.name) == a0[1].notification_id
        assert recorder.max_tracking_id(Sagas.name) == s0[1].notification_id
    assert [m.type for m in first.view.select_feed(0)] == [
        "account_opened",
        "transaction_pending",
    ]


def test_a_page_together_leaves_what_happened_after_its_horizon_for_the_next(
    shared_env: dict[str, str],
) -> None:
    """Between reading Sagas' end and Accounts' end, a saga starts and the account
    changes: the change is left for the next page, which has the saga's start
    before it (never an account's change before what caused it)."""
    accounts, sagas = Accounts(shared_env), Sagas(shared_env)
    interface = InterfaceApplication(shared_env)
    try:
        interface.follow(accounts.name, accounts.notification_log)
        interface.follow(sagas.name, sagas.notification_log)
        account_id = accounts.create_account("X")
        read_end = interface.leader_position

        def sagas_move_on(name: str) -> int | None:
            end = read_end(name)
            if name == sagas.name and not sagas.recorder.max_notification_id():
                # Just after Sagas' end was read: a saga starts, the account changes.
                sagas.save(DepositFundsSaga(uuid4(), account_id, Decimal("5.00")))
                accounts.process_events(jobs_of(sagas, accounts.topics))
            return end

        interface.leader_position = sagas_move_on  # type: ignore[method-assign]
        assert interface.process_together()  # cut: more to do
        del interface.leader_position
        assert not interface.process_together()
        assert [m.type for m in interface.view.select_feed(0)] == [
            "account_opened",
            "transaction_pending",
            "transaction_appended",
        ]
        shown = interface.view.get_account(account_id)
        assert shown is not None
        assert shown.balance == Decimal("5.00")
    finally:
        for app in (accounts, sagas, interface):
            app.close()

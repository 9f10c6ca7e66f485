"""Accounts stored before Opened was renamed Created still load, project and explore.

Their events are written as they were then: the creation event under the topic
`bankaccounts.domainmodel:BankAccount.Opened`, straight through Accounts' recorder,
with a snapshot taken as the application takes one (every 100 events).
"""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from eventsourcing.domain import Snapshot

from bankaccounts.deploy.bootstrap import Bank
from bankaccounts.domainmodel import OPENED_TOPIC, BankAccount, UserRef
from bankaccounts.explorer import Explorer
from bankaccounts.rebuild import compare
from bankaccounts.usecases import Banking
from bankaccounts.users import Actor

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Events of the old account: Opened and this many deposits of 1.00.
DEPOSITS = 149
STAFF = Actor(uuid.uuid4(), "staff", "staff")


@pytest.fixture(
    params=[
        "popo",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def bank(request: pytest.FixtureRequest) -> Iterator[Bank]:
    env: dict[str, str] = (
        {}
        if request.param == "popo"
        else request.getfixturevalue(f"{request.param}_env")
    )
    bank = Bank(env)
    bank.start()
    try:
        yield bank
    finally:
        bank.stop()


def store_old_account(bank: Bank, owner: UserRef) -> uuid.UUID:
    """An account whose events are stored as before the rename, with a snapshot."""
    accounts = bank.accounts
    account = BankAccount(name="Old", owner=owner)
    for _ in range(DEPOSITS):
        account.append_transaction(Decimal("1.00"))
        if account.version == 100:
            snapshot = Snapshot.take(account)
    stored = [accounts.mapper.to_stored_event(e) for e in account.collect_events()]
    assert stored[0].topic == "bankaccounts.domainmodel:BankAccount.Created"
    stored[0] = dataclasses.replace(stored[0], topic=OPENED_TOPIC)
    accounts.recorder.insert_events(stored)
    assert accounts.snapshots is not None
    accounts.snapshots.recorder.insert_events(
        [accounts.mapper.to_stored_event(snapshot)]
    )
    return account.id


def test_an_account_stored_as_opened_loads_projects_and_explores(bank: Bank) -> None:
    owner = UserRef(uuid.uuid4(), "olduser")
    account_id = store_old_account(bank, owner)
    accounts = bank.accounts
    first = accounts.recorder.select_events(account_id, limit=1)[0]
    assert first.topic == OPENED_TOPIC

    account = accounts.get_account(account_id)
    assert (account.name, account.owner) == ("Old", owner)
    assert account.balance == Decimal(DEPOSITS)
    assert account.version == DEPOSITS + 1
    created = accounts.mapper.to_domain_event(first)
    assert isinstance(created, BankAccount.Created)

    # The interface follows the old topic too: the account is in the read model.
    bank.interface.pull_and_process(accounts.name)
    view = bank.interface.view.get_account(account_id)
    assert view is not None
    assert (view.name, view.owner, view.balance) == ("Old", owner, Decimal(DEPOSITS))
    assert compare(bank.interface.view, accounts, bank.sagas).differences == []

    # And the explorer shows it as Created, at any version (from the snapshot too).
    explorer = Explorer(bank, Banking(bank))
    events = explorer.account_events(STAFF, account_id, limit=2).items
    assert [e.type for e in events] == ["Created", "TransactionAppended"]
    assert events[0].data["name"] == "Old"
    for version in (1, 2, 100, 120, DEPOSITS + 1):
        past = explorer.account_at_version(STAFF, account_id, version)
        assert past.account.balance == Decimal(version - 1)
        assert past.account.name == "Old"
    snapshots = explorer.account_snapshots(STAFF, account_id).items
    assert [s.version for s in snapshots] == [100]
    log = explorer.notifications(STAFF, "Accounts", type="Created").items
    assert [(n.topic, n.type) for n in log] == [(OPENED_TOPIC, "Created")]

    # New events follow the old ones.
    accounts.set_overdraft_limit(account_id, Decimal(10))
    assert accounts.get_account(account_id).version == DEPOSITS + 2

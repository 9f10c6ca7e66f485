"""A follower that keeps failing on one event says so: in its store, for `status`.

The embedded bank's runners call pull_and_process (the workers have their own test
in test_worker.py). A poison event stops the follower there; the failure is recorded
with the upstream, position, event and error, counted on each attempt, shown by
`status` as failing, and forgotten once the follower gets past it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from bankaccounts.deploy.status import read_statuses
from bankaccounts.domainmodel import BankAccount
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas

if TYPE_CHECKING:
    from collections.abc import Iterator


class PoisonedInterface(InterfaceApplication):
    """Cannot show an account named Poison, as if a bug met an odd event."""

    name = "Interface"
    poisoned = True

    def policy(self, domain_event: Any, processing_event: Any) -> None:
        if (
            self.poisoned
            and isinstance(domain_event, BankAccount.Created)  # type: ignore[attr-defined]
            and domain_event.name == "Poison"
        ):
            msg = "cannot show this account"
            raise RuntimeError(msg)
        super().policy(domain_event, processing_event)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def apps(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The system's applications on one store, the interface poisoned."""
    env = {**request.getfixturevalue(f"{request.param}_env"), "CREATE_TABLE": "y"}
    apps: dict[str, Any] = {
        "Commands": Commands(env),
        "Sagas": Sagas(env),
        "Accounts": Accounts(env),
        "Interface": PoisonedInterface(env),
    }
    apps["Interface"].follow("Accounts", apps["Accounts"].notification_log)
    yield apps
    for app in apps.values():
        app.close()


def test_a_follower_stopped_by_an_event_records_it_until_it_gets_past(
    apps: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    accounts, interface = apps["Accounts"], apps["Interface"]
    for name in ("Before", "Poison", "After"):
        accounts.create_account(name)
    PoisonedInterface.poisoned = True
    try:
        for _ in range(3):  # the runner prompts it again and again
            interface.pull_and_process("Accounts")
    finally:
        PoisonedInterface.poisoned = False

    [failure] = interface.recorder.select_failures()
    assert (failure.upstream, failure.position, failure.attempts) == ("Accounts", 2, 3)
    assert failure.event == "BankAccount.Created"
    assert failure.error == "RuntimeError: cannot show this account"
    assert "cannot process BankAccount.Created from Accounts at position 2" in (
        caplog.text
    )
    status = {(s.follower, s.upstream): s for s in read_statuses(apps)}
    assert status["Interface", "Accounts"].state == "failing"
    assert not status["Interface", "Accounts"].is_healthy
    shown = json.loads(json.dumps(status["Interface", "Accounts"].to_json()))
    assert shown["failure"]["position"] == 2
    assert status["Interface", "Sagas"].state == "up to date"
    assert [a.name for a in interface.view.list_accounts()[0]] == ["Before"]

    interface.pull_and_process("Accounts")  # the fix is deployed
    assert [a.name for a in interface.view.list_accounts()[0]] == [
        "Before",
        "Poison",
        "After",
    ]
    assert interface.recorder.select_failures() == []
    status = {(s.follower, s.upstream): s for s in read_statuses(apps)}
    assert status["Interface", "Accounts"].state == "up to date"

"""Benchmark 12: a transaction's timeline costs the same whatever the stores' size.

A transfer is made by the running system (Commands, Sagas, Accounts and the
Interface, as in the bank), then its timeline (`Journeys.timeline`: the command,
the sagas, the accounts' events through the interface's index, the feed entries)
is read many times with small stores (about SMALL events in each application, and
as many index rows and feed messages), then again after the stores are filled to
100 times that. Target: the timeline in the large stores takes at most 1.5 times
as long as in the small ones (every read is by key or by index, never a scan).

The filler is written fast, not by the system: stored events of other aggregates
through each application's own recorder (`insert_events`), and index rows and
feed messages of other transactions through the interface's recorder's own write
path (`write_changes`), in batches of BATCH per transaction.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from eventsourcing.persistence import StoredEvent

from bankaccounts.deploy.bootstrap import APPLICATION_NAMES, Bank
from bankaccounts.journey import Journeys
from bankaccounts.readmodel import FeedMessage, TransactionEvent, ViewChanges
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas
from bankaccounts.usecases import Banking
from bankaccounts.users import Actor
from bench.common import STORE_LABELS, Chart, Options, Result, Row, ratio_row
from bench.limits import apps_env

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventsourcing.application import Application

KEY = "timeline"
TARGET = 1.5
SMALL = 1_000
GROWTH = 100
BATCH = 5_000
STORES = ("sqlite", "postgres")
STAFF = Actor(uuid4(), "bench", "staff")


class OpenedBank:
    """The system's applications, opened on a store the bank wrote, not running."""

    def __init__(self, env: Mapping[str, str]) -> None:
        """Opens each application (no followers run: the filler is never processed)."""
        self.apps: dict[str, Application[Any]] = {
            cls.name: cls(env=dict(env))
            for cls in (Commands, Sagas, Accounts, InterfaceApplication)
        }

    @property
    def commands(self) -> Commands:
        """Records client requests."""
        app: Commands = self.apps["Commands"]  # type: ignore[assignment]
        return app

    @property
    def accounts(self) -> Accounts:
        """Keeps the accounts."""
        app: Accounts = self.apps["Accounts"]  # type: ignore[assignment]
        return app

    @property
    def interface(self) -> InterfaceApplication:
        """Keeps the read model."""
        app: InterfaceApplication = self.apps["Interface"]  # type: ignore[assignment]
        return app

    def applications(self) -> dict[str, Application[Any]]:
        """The applications by name."""
        return dict(self.apps)

    def close(self) -> None:
        """Closes the applications' connections."""
        for app in self.apps.values():
            app.close()


def make_transfer(env: Mapping[str, str]) -> UUID:
    """A transfer carried out by the running system; its transaction id."""
    bank = Bank(env)
    bank.start()
    try:
        banking = Banking(bank)
        alice = banking.open_account(STAFF, "Alice").id
        bob = banking.open_account(STAFF, "Bob").id
        banking.deposit(STAFF, alice, Decimal("100.00"))
        transaction_id = banking.transfer(STAFF, alice, bob, Decimal("25.00"))
        deadline = time.monotonic() + 60
        while True:
            transaction = banking.transaction(STAFF, transaction_id)
            if transaction is not None and transaction.status != "pending":
                break
            if time.monotonic() > deadline:
                msg = "the transfer did not finish"
                raise RuntimeError(msg)
            time.sleep(0.01)
        return transaction_id
    finally:
        bank.stop()


def fill(bank: OpenedBank, events: int) -> float:
    """Adds `events` stored events to each application, and as many index rows
    and feed messages to the read model; the seconds taken."""
    started = time.perf_counter()
    for name in ("Commands", "Sagas", "Accounts"):
        recorder: Any = bank.apps[name].recorder
        for first in range(0, events, BATCH):
            recorder.insert_events(
                [
                    StoredEvent(
                        originator_id=uuid4(),
                        originator_version=1,
                        topic="bench.timeline:Filler",
                        state=b"{}",
                    )
                    for _ in range(first, min(first + BATCH, events))
                ]
            )
    view: Any = bank.interface.view
    now = datetime.now(UTC)
    for first in range(0, events, BATCH):
        count = min(BATCH, events - first)
        ids = [uuid4() for _ in range(count)]
        changes = ViewChanges(
            transaction_events=[
                TransactionEvent(
                    transaction_id=transaction_id,
                    application="Accounts",
                    originator_id=uuid4(),
                    originator_version=2,
                    position=10**9 + first + i,  # never read back
                    type="TransactionAppended",
                    timestamp=now,
                )
                for i, transaction_id in enumerate(ids)
            ],
            feed=[
                FeedMessage("transaction_succeeded", {"transaction": {"id": str(t)}})
                for t in ids
            ],
        )
        with view.datastore.transaction(commit=True) as cursor:
            view.write_changes(cursor, changes)
    return time.perf_counter() - started


def timeline_time(journeys: Journeys, transaction_id: UUID, rounds: int) -> float:
    """Median seconds of one timeline, after warm-up reads."""
    for _ in range(10):
        journeys.timeline(STAFF, transaction_id)
    times: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        timeline = journeys.timeline(STAFF, transaction_id)
        times.append(time.perf_counter() - started)
    assert timeline is not None
    return statistics.median(times)


def run(options: Options) -> Result:
    """A transfer's timeline with small stores and stores 100 times larger."""
    small = options.size(SMALL, 200)
    rounds = options.size(200, 40)
    stores = [s for s in STORES if s in options.stores]
    rows: list[Row] = []
    smalls: list[float] = []
    larges: list[float] = []
    for store in stores:
        label = STORE_LABELS[store]
        options.progress(f"timeline: {label}")
        with apps_env(store, options.workdir, APPLICATION_NAMES) as env:
            transaction_id = make_transfer(env)
            bank = OpenedBank(env)
            try:
                journeys = Journeys(bank, Banking(bank))
                steps = journeys.timeline(STAFF, transaction_id)
                assert steps is not None
                fill(bank, small)
                before = timeline_time(journeys, transaction_id, rounds)
                took = fill(bank, small * (GROWTH - 1))
                options.progress(
                    f"  filled to {small * GROWTH:,} events an application "
                    f"in {took:.1f} s"
                )
                after = timeline_time(journeys, transaction_id, rounds)
                again = journeys.timeline(STAFF, transaction_id)
                assert again is not None
                assert again.steps == steps.steps, "the filler changed the timeline"
            finally:
                bank.close()
        options.progress(
            f"  {len(steps.steps)} steps: {1000 * before:.3f} ms with {small:,} "
            f"events, {1000 * after:.3f} ms with {small * GROWTH:,}, "
            f"ratio {after / before:.2f}"
        )
        smalls.append(1000 * before)
        larges.append(1000 * after)
        rows.append(
            Row(f"{label}: {small:,} events an application", 1000 * before, "ms")
        )
        rows.append(
            ratio_row(
                f"{label}: {small * GROWTH:,} events an application",
                1000 * after,
                "ms",
                1000 * before,
                f"{small:,} events, ms",
                at_most=TARGET,
            )
        )
    return Result(
        key=KEY,
        title="14. A transaction's timeline in small and large stores",
        description=(
            "A transfer made by the running system; the median time of its "
            f"timeline (`Journeys.timeline`, {rounds} reads after 10 warm-up "
            f"reads) with {small:,} other events in each application (and as "
            "many index rows and feed messages in the read model), then with "
            f"{small * GROWTH:,}. Target: the large stores' timeline <= {TARGET} "
            "x the small stores'."
        ),
        rows=rows,
        chart=Chart(
            kind="bar",
            title="Timeline read time: small vs 100x larger stores",
            xlabel="store",
            ylabel="ms (median)",
            x=[STORE_LABELS[s] for s in stores],
            series={f"{small:,} events": smalls, f"{small * GROWTH:,} events": larges},
        ),
        notes=[
            "Filling: stored events of other aggregates through each application's "
            "recorder, and index rows and feed messages of other transactions "
            f"through the interface recorder's write path, {BATCH:,} per "
            "transaction, not by processing transactions through the system.",
            "Reads: the command and sagas by their (derived) ids on the events' "
            "primary key; the accounts' events through the interface's index "
            "(transaction id -> account, version, notification id); the feed "
            "through its index on transaction id.",
        ],
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)

"""Benchmark 2: does an operation's cost grow with an account's history?

Times one deposit (SimpleBankAccountApplication.deposit_funds) and one deposit
saga (Commands.deposit_funds through to the saga having succeeded, in the
BankAccountSystem under a SingleThreadedRunner) on accounts with 0, 10,000 and
100,000 prior transactions (quick: 0 and 10,000), interleaved round by round, and
reports the ratio of the longest history's median cost to the empty one's.
Target: <= 1.2.

History is seeded quickly, straight into the owning application's recorder, with
the latest snapshot taken after (see append_history and SagaDeposit.seed).

    python -m bench.history [--quick] [--stores popo,sqlite,postgres]
"""

from __future__ import annotations

import copy
import gc
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from eventsourcing.domain import Snapshot
from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.system import SingleThreadedRunner

from bankaccounts.deploy.bootstrap import APPLICATION_NAMES
from bankaccounts.domainmodel import BankAccount
from bankaccounts.simpleapplication import SimpleBankAccountApplication
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas
from bench.common import STORE_LABELS, Chart, Options, Result, Row, median, ratio_row

if TYPE_CHECKING:
    from uuid import UUID

    from bankaccounts.accountapplication import AccountApplication

KEY = "history"
AMOUNT = Decimal("1.00")
TARGET = 1.2
BATCH = 1000  # events per seeding save: a multiple of the snapshotting interval
APPS = {"simple": "deposit (simple app)", "system": "deposit saga (system)"}


class Subject(Protocol):
    """An application ready to run the measured operation."""

    accounts: AccountApplication
    account_id: UUID

    def operate(self) -> None: ...

    def seed(self, count: int) -> None: ...

    def close(self) -> None: ...


def append_history(app: AccountApplication, account_id: UUID, count: int) -> int:
    """Appends count transactions (alternately +1 and -1) straight to the recorder.

    BATCH TransactionAppended events are made once by the domain model and mapped;
    each batch inserts copies at the account's next versions (the stored state holds
    no version). The account's state after n of them is known without replaying
    them: the balance moves +1, -1, +1, ... and the time is that of the last event.
    So the latest snapshot (at the last multiple of 100, as the application takes
    them) and the cached account are written from that state, and the snapshot is
    checked by the repository: an account read back from it and the events after
    it must have the expected version and balance. Returns the last notification id.
    """
    if not count:
        return 0
    with app.writing():
        account = app.get_account(account_id)
        base = account.version
        scratch = BankAccount()
        for i in range(BATCH):
            scratch.append_transaction(AMOUNT if i % 2 == 0 else -AMOUNT)
        events = scratch.collect_events()[1:]
        template = [app.mapper.to_stored_event(e) for e in events]
        done = 0
        while done < count:
            size = min(BATCH, count - done)
            app.recorder.insert_events(
                [
                    StoredEvent(
                        originator_id=account_id,
                        originator_version=base + done + i + 1,
                        topic=template[i].topic,
                        state=template[i].state,
                    )
                    for i in range(size)
                ]
            )
            done += size

        def after(applied: int) -> BankAccount:
            state = copy.deepcopy(account)
            state._version = base + applied
            state._modified_on = events[(applied - 1) % BATCH].timestamp
            state.balance = account.balance + (AMOUNT if applied % 2 else 0)
            return state

        last = base + count
        snapshot_version = last - last % 100
        if app.snapshots is not None and snapshot_version > base:
            app.snapshots.put([Snapshot.take(after(snapshot_version - base))])
        final = after(count)
        app.repository.cache.put(account_id, final)
        replayed = app.repository.get(account_id, version=last)
        if (replayed.version, replayed.balance) != (final.version, final.balance):
            msg = f"seeded history does not replay: {replayed} != {final}"
            raise RuntimeError(msg)
    return app.recorder.max_notification_id() or 0


class SimpleDeposit:
    """One SimpleBankAccountApplication.deposit_funds on the account."""

    def __init__(self, env: dict[str, str]) -> None:
        self.app = SimpleBankAccountApplication(env=env)
        self.accounts: AccountApplication = self.app
        self.account_id = self.app.create_account()

    def operate(self) -> None:
        self.app.deposit_funds(self.account_id, AMOUNT)

    def seed(self, count: int) -> None:
        append_history(self.app, self.account_id, count)

    def close(self) -> None:
        self.app.close()


class SagaDeposit:
    """One Commands.deposit_funds, returning once its saga has succeeded."""

    def __init__(self, env: dict[str, str]) -> None:
        self.runner: SingleThreadedRunner[UUID] = SingleThreadedRunner(
            BankAccountSystem(), env=env
        )
        self.runner.start()
        self.commands = self.runner.get(Commands)
        self.sagas = self.runner.get(Sagas)
        self.accounts: Accounts = self.runner.get(Accounts)
        self.account_id = self.accounts.create_account()

    def operate(self) -> None:
        transaction_id = self.commands.deposit_funds(self.account_id, AMOUNT)
        # The single-threaded runner has run the whole saga by now.
        if not self.sagas.get_saga(transaction_id).has_succeeded:
            msg = f"deposit saga {transaction_id} has not succeeded"
            raise RuntimeError(msg)

    def seed(self, count: int) -> None:
        """Writes the account's events straight to Accounts' recorder (no prompts).

        The seeded transactions carry no transaction id (Sagas ignores them) and net
        to zero (the interface's balance stays right), so advancing the followers'
        tracking past them leaves every application as it would be had they
        processed them, bar the interface's feed and updated_at.
        """
        accounts = self.accounts
        last = append_history(accounts, self.account_id, count)
        if last:
            accounts.previous_max_notification_id = last
            tracking = Tracking(notification_id=last, application_name=accounts.name)
            for follower in (self.sagas, self.runner.get(InterfaceApplication)):
                follower.recorder.insert_events([], tracking=tracking)

    def close(self) -> None:
        self.runner.stop()


@dataclass
class Fixture:
    """An account with its history, and the samples timed on it."""

    subject: Subject
    history: int
    samples: list[float] = field(default_factory=list)


def build(app: str, env: dict[str, str], history: int) -> Fixture:
    """Opens the account and seeds its history."""
    subject: Subject = SimpleDeposit(env) if app == "simple" else SagaDeposit(env)
    subject.seed(history)
    return Fixture(subject, history)


def measure(fixtures: list[Fixture], warmup: int, repeat: int) -> None:
    """Times the operation on each fixture, interleaved, order flipped each round."""
    for i in range(warmup):
        for fixture in fixtures if i % 2 == 0 else fixtures[::-1]:
            fixture.subject.operate()
    gc.collect()
    for i in range(repeat):
        for fixture in fixtures if i % 2 == 0 else fixtures[::-1]:
            started = time.perf_counter()
            fixture.subject.operate()
            fixture.samples.append(time.perf_counter() - started)


def store_envs(
    stack: ExitStack, store: str, options: Options, app: str, count: int
) -> list[dict[str, str]]:
    """One fresh store per fixture."""
    from bench.limits import apps_env

    names = (
        [SimpleBankAccountApplication.name] if app == "simple" else APPLICATION_NAMES
    )
    return [
        stack.enter_context(apps_env(store, options.workdir, names))
        for _ in range(count)
    ]


def run(options: Options) -> Result:
    """Median cost per history length, per store and application."""
    histories = [0, 10_000] if options.quick else [0, 10_000, 100_000]
    warmup, repeat = (10, 60) if options.quick else (20, 150)
    rows: list[Row] = []
    series: dict[str, list[float]] = {}
    seeding: list[str] = []
    for app, app_label in APPS.items():
        for store in options.common_stores:
            label = f"{app_label}, {STORE_LABELS[store]}"
            options.progress(f"history: {label}")
            with ExitStack() as stack:
                envs = store_envs(stack, store, options, app, len(histories))
                fixtures = []
                for env, history in zip(envs, histories, strict=True):
                    started = time.perf_counter()
                    fixture = build(app, env, history)
                    stack.callback(fixture.subject.close)
                    fixtures.append(fixture)
                    if history:
                        took = time.perf_counter() - started
                        seeding.append(f"{label}: {history:,} in {took:.1f} s")
                        options.progress(f"  seeded {history:,} in {took:.1f} s")
                measure(fixtures, warmup, repeat)
            costs = [median(f.samples) * 1000 for f in fixtures]
            series[label] = costs
            options.progress(
                "  median ms: "
                + ", ".join(
                    f"{h:,}: {c:.3f}" for h, c in zip(histories, costs, strict=True)
                )
            )
            for history, cost in zip(histories[1:-1], costs[1:-1], strict=True):
                rows.append(
                    Row(
                        f"{label}, {history:,} prior",
                        cost,
                        "ms",
                        costs[0],
                        "ms with 0 prior",
                        cost / costs[0],
                    )
                )
            rows.append(
                ratio_row(
                    f"{label}, {histories[-1]:,} prior",
                    costs[-1],
                    "ms",
                    costs[0],
                    "ms with 0 prior",
                    at_most=TARGET,
                )
            )
    return Result(
        key=KEY,
        title="2. History: cost against an account's history",
        description=(
            "The median cost of one operation on an account with "
            + ", ".join(f"{h:,}" for h in histories)
            + " prior transactions: a deposit through "
            "`SimpleBankAccountApplication.deposit_funds`, and a deposit saga "
            "(`Commands.deposit_funds` until the saga has succeeded, through "
            "Commands -> Sagas -> Accounts -> Sagas and the interface, all in the "
            "calling thread under `SingleThreadedRunner`). Each history length has "
            "its own store and application instance; they are timed interleaved, "
            f"round by round, {warmup} warm-up then {repeat} timed operations each, "
            "with the aggregate cache warm. The limit is the same operation on the "
            f"account with no history, measured in the same run. Target: the "
            f"{histories[-1]:,} / 0 ratio <= {TARGET}."
        ),
        rows=rows,
        chart=Chart(
            kind="line",
            title="Cost of one operation against prior transactions",
            xlabel="prior transactions on the account",
            ylabel="median ms per operation (log scale)",
            x=histories,
            series=series,
            logx=True,
            logy=True,
        ),
        notes=[
            "Seeding: the account's own TransactionAppended events (alternately "
            f"+1.00 and -1.00, so they net to zero): {BATCH:,} events made once by "
            "the domain model and mapped, inserted at the account's next versions "
            f"straight into the owning application's recorder, {BATCH:,} per "
            "`insert_events`; then the latest snapshot (snapshots every 100 "
            "events; the intermediate ones are not written, and are never read) "
            "and the cached account are written from the state the history leads "
            "to, which is known without replaying it, and checked by reading the "
            "account back from that snapshot and the events after it. In the "
            "system, "
            "Accounts' followers (Sagas, the interface) get one tracking record "
            "each past the seeded events: Sagas ignores transactions without a "
            "transaction id, and a net-zero history leaves the interface's balance "
            "right, so every application is as it would be (bar the interface's "
            "feed and updated_at).",
            "Seeding took: " + "; ".join(seeding) + ".",
        ],
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)

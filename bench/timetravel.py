"""Benchmark 11: time travel to version N costs about the same for any N.

One account gets 100,000 events (Created and 99,999 deposits and withdrawals of
1.00), with a snapshot every 100 events as the Accounts application takes them;
then the account as it was at versions 10, 1,000, 50,000 and 99,999 (quick: an
account of 10,000 events, versions 10, 1,000, 5,000 and 9,999) is rebuilt many
times, interleaved, in the SQLite file and in PostgreSQL, the way
GET /api/accounts/{id}?version=N does (`repository.get(id, version=N)`: the nearest
snapshot at or below N and the events after it, at most 99, then the account's
JSON). And ?at= a time: the binary search for the version (single-event reads),
then the same rebuild. The work depends on N mod 100 (the events after the
snapshot), so each N is compared with the early version as far past its snapshot
(100 + N mod 100). Target: each ratio at most 1.5.

The history is written fast, not by the system: the events are made by the domain
model, mapped by the application's own mapper and inserted through its recorder,
1,000 per transaction, and each snapshot is taken from the account in memory at
its version (as BankApplication._take_snapshots does).
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.domain import Snapshot

from bankaccounts.domainmodel import BankAccount
from bankaccounts.explorer import Explorer
from bankaccounts.readmodel import AccountView
from bankaccounts.system.accounts import Accounts
from bench.common import STORE_LABELS, Chart, Options, Result, Row, ratio_row
from bench.limits import apps_env

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from eventsourcing.persistence import StoredEvent

KEY = "timetravel"
TARGET = 1.5
BATCH = 1000
AMOUNT = Decimal("1.00")
STORES = ("sqlite", "postgres")


@dataclass
class History:
    """An account with its long history, and the times of some of its events."""

    accounts: Accounts
    account_id: UUID
    times: dict[int, datetime]


def fill(accounts: Accounts, count: int) -> History:
    """Writes an account of count events and its snapshots (every 100)."""
    interval = accounts.snapshotting_intervals[BankAccount]
    account = BankAccount(name="Long")
    snapshots = []
    for i in range(count - 1):
        account.append_transaction(AMOUNT if i % 2 == 0 else -AMOUNT)
        if account.version % interval == 0:
            snapshots.append(Snapshot.take(account))
    events = account.collect_events()
    mapper = accounts.mapper
    for start in range(0, len(events), BATCH):
        stored = [mapper.to_stored_event(e) for e in events[start : start + BATCH]]
        accounts.recorder.insert_events(stored)
    assert accounts.snapshots is not None
    for start in range(0, len(snapshots), BATCH):
        part: list[StoredEvent] = [
            mapper.to_stored_event(s) for s in snapshots[start : start + BATCH]
        ]
        accounts.snapshots.recorder.insert_events(part)
    times = {e.originator_version: e.timestamp for e in events}
    return History(accounts, account.id, times)


class Bench:
    """The bank as the explorer needs it: the Accounts application."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def applications(self) -> dict[str, Any]:
        return {Accounts.name: self.accounts}


def at_version(history: History, version: int) -> dict[str, Any]:
    """What ?version=N does once access is checked: rebuild, then the JSON."""
    account = cast(
        "BankAccount",
        history.accounts.repository.get(history.account_id, version=version),
    )
    if account.version != version:
        msg = f"version {account.version}, not {version}"
        raise RuntimeError(msg)
    return {**AccountView.from_account(account).to_json(), "version": version}


def at_time(history: History, explorer: Explorer, version: int) -> dict[str, Any]:
    """What ?at= does: the binary search for the version, then the rebuild."""
    found = explorer.version_at(history.account_id, history.times[version])
    if found != version:
        msg = f"found version {found}, not {version}"
        raise RuntimeError(msg)
    return at_version(history, version)


def measure(
    history: History, versions: list[int], repeat: int
) -> tuple[dict[int, float], dict[int, float]]:
    """Median ms per version, of ?version= and of ?at=, interleaved round by round."""
    explorer = Explorer(cast("Any", Bench(history.accounts)), cast("Any", None))
    by_version: dict[int, list[float]] = {v: [] for v in versions}
    by_time: dict[int, list[float]] = {v: [] for v in versions}
    for version in versions:  # warm up
        at_version(history, version)
        at_time(history, explorer, version)
    gc.collect()
    for i in range(repeat):
        for version in versions if i % 2 == 0 else versions[::-1]:
            started = time.perf_counter()
            at_version(history, version)
            by_version[version].append(time.perf_counter() - started)
            started = time.perf_counter()
            at_time(history, explorer, version)
            by_time[version].append(time.perf_counter() - started)
    return (
        {v: statistics.median(s) * 1000 for v, s in by_version.items()},
        {v: statistics.median(s) * 1000 for v, s in by_time.items()},
    )


def baseline(version: int, interval: int = 100) -> int:
    """An early version as far past its nearest snapshot as version is past its own.

    The rebuild reads that snapshot and the events after it (version mod 100 of
    them), so this is the version to compare with: same work, near the start.
    """
    return interval + version % interval


def run(options: Options) -> Result:
    """Median cost of time travel per version, per store."""
    count = options.size(100_000, 10_000)
    versions = [10, 1_000, count // 2, count - 1]
    baselines = sorted({baseline(v) for v in versions})
    measured = sorted({*versions, *baselines})
    repeat = options.size(200, 50)
    rows: list[Row] = []
    series: dict[str, list[float]] = {}
    filling: list[str] = []
    for store in (s for s in options.stores if s in STORES):
        label = STORE_LABELS[store]
        options.progress(f"timetravel: {label}")
        with apps_env(store, options.workdir, [Accounts.name]) as env:
            accounts = Accounts(env=env)
            try:
                started = time.perf_counter()
                history = fill(accounts, count)
                took = time.perf_counter() - started
                filling.append(f"{label}: {count:,} events in {took:.1f} s")
                options.progress(f"  filled {count:,} events in {took:.1f} s")
                costs, timed = measure(history, measured, repeat)
            finally:
                accounts.close()
        for kind, figures in (("?version=N", costs), ("?at=", timed)):
            smallest = figures[versions[0]]
            series[f"{kind}, {label}"] = [figures[v] for v in versions]
            options.progress(
                f"  {kind} median ms: "
                + ", ".join(f"{v:,}: {figures[v]:.3f}" for v in measured)
                + "; ratio to N=10: "
                + ", ".join(f"{v:,}: {figures[v] / smallest:.2f}" for v in versions)
            )
            for version in versions:
                base = baseline(version)
                rows.append(
                    ratio_row(
                        f"{label}, {kind} to version {version:,} of {count:,}",
                        figures[version],
                        "ms",
                        figures[base],
                        f"ms at version {base} (as far past a snapshot)",
                        at_most=TARGET,
                    )
                )
    return Result(
        key=KEY,
        title="13. Time travel: the state at version N of a long history",
        description=(
            f"An account of {count:,} events with a snapshot every 100; the median "
            f"cost of rebuilding it as it was at versions "
            + ", ".join(f"{v:,}" for v in versions)
            + " (`repository.get(id, version=N)`, then the account's JSON, as "
            "`GET /api/accounts/{id}?version=N` does after its access check), and "
            "of finding the version at an event's time by binary search and "
            "rebuilding it (`?at=`). Timed interleaved, round by round, "
            f"{repeat} times each. A rebuild reads the nearest snapshot and the "
            "events after it (N mod 100 of them, at most 99), so its cost depends on "
            "N mod 100, not on N: each N is compared with the early version as far "
            "past its snapshot (100 + N mod 100), measured in the same run. Target: "
            f"each ratio <= {TARGET}."
        ),
        rows=rows,
        chart=Chart(
            kind="line",
            title="Time travel to version N",
            xlabel="version N",
            ylabel="median ms",
            x=versions,
            series=series,
            logx=True,
        ),
        notes=[
            "Filling: events made by the domain model, mapped by the application's "
            f"mapper and inserted through its recorder {BATCH:,} per transaction; "
            "the snapshots taken from the account in memory at each multiple of "
            "100. " + "; ".join(filling) + ".",
        ],
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)

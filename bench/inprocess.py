"""Benchmark 4: the system in one process, end to end, for each runner shipped.

A transfer is recorded by Commands.transfer_funds and counts as done when the
interface's read model says it is no longer pending (the interface's feed listener
wakes the waiting thread; the read model is then checked). Commits are counted by
wrapping every application's recorder.insert_events.
"""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bankaccounts.deploy.bootstrap import APPLICATION_NAMES, RUNNERS, Bank
from bench.common import (
    STORE_LABELS,
    Chart,
    Options,
    Result,
    Row,
    percentile,
    ratio_row,
)
from bench.limits import apps_env, measure_limits

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from bankaccounts.readmodel import FeedMessage

KEY = "inprocess"
ACCOUNTS = 50
TARGET = 0.5
WAIT = 30.0  # seconds a transfer may take before the benchmark gives up


class Waiter:
    """Wakes the thread waiting for a transaction when the interface finishes it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[str, threading.Event] = {}

    def expect(self, transaction_id: str) -> threading.Event:
        """An event set once the transaction is finished (may be set already)."""
        with self.lock:
            return self.events.setdefault(transaction_id, threading.Event())

    def __call__(self, messages: Sequence[FeedMessage]) -> None:
        for message in messages:
            if message.type in ("transaction_succeeded", "transaction_failed"):
                self.expect(message.data["transaction"]["id"]).set()


class CommitCounter:
    """Counts insert_events calls (one commit each) on every application."""

    def __init__(self, bank: Bank) -> None:
        self.count = 0
        self.lock = threading.Lock()
        for name in APPLICATION_NAMES:
            recorder = bank.runner.get(type(self._app(bank, name))).recorder
            recorder.insert_events = self._wrap(recorder.insert_events)  # type: ignore[method-assign]

    @staticmethod
    def _app(bank: Bank, name: str) -> Any:
        return {
            "Commands": bank.commands,
            "Sagas": bank.sagas,
            "Accounts": bank.accounts,
            "Interface": bank.interface,
        }[name]

    def _wrap(self, insert: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.count += 1
            return insert(*args, **kwargs)

        return counted


def transfer_and_wait(
    bank: Bank, waiter: Waiter, debit: UUID, credit: UUID, amount: Decimal
) -> float:
    """One transfer end to end; returns its latency in seconds."""
    started = time.perf_counter()
    transaction_id = bank.commands.transfer_funds(debit, credit, amount)
    if not waiter.expect(str(transaction_id)).wait(WAIT):
        msg = f"transfer {transaction_id} not finished after {WAIT} s"
        raise TimeoutError(msg)
    view = bank.interface.view.get_transaction(transaction_id)
    if view is None or view.status == "pending":
        msg = f"transfer {transaction_id} is not finished in the read model"
        raise RuntimeError(msg)
    return time.perf_counter() - started


def measure(
    env: dict[str, str], runner: str, threads: int, seconds: float
) -> dict[str, float]:
    """Transfers/s, latencies and commits per transfer for one configuration."""
    bank = Bank(env, runner=runner)
    bank.start()
    try:
        waiter = Waiter()
        remove = bank.interface.add_feed_listener(waiter)
        ids = [bank.accounts.create_account(f"a{i}") for i in range(ACCOUNTS)]
        for account_id in ids:
            transaction_id = bank.commands.deposit_funds(account_id, Decimal(10**6))
            waiter.expect(str(transaction_id)).wait(WAIT)
        # The actors' recorders are in other processes: their commits go uncounted.
        counter = None if runner == "ray" else CommitCounter(bank)
        busy = BusyCores()
        latencies: list[list[float]] = [[] for _ in range(threads)]
        errors: list[BaseException] = []
        deadline = time.perf_counter() + seconds

        def work(index: int) -> None:
            pick = random.Random(index).sample
            try:
                while time.perf_counter() < deadline:
                    debit, credit = pick(ids, 2)
                    latencies[index].append(
                        transfer_and_wait(bank, waiter, debit, credit, Decimal(1))
                    )
            except BaseException as error:
                errors.append(error)

        started = time.perf_counter()
        workers = [
            threading.Thread(target=work, args=(i,), daemon=True)
            for i in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(seconds + WAIT + 10)
        elapsed = time.perf_counter() - started
        cores = busy.cores()
        remove()
        if errors:
            raise errors[0]
        done = [x for per_thread in latencies for x in per_thread]
        return {
            "rate": len(done) / elapsed,
            "p50": percentile(done, 0.5) * 1000,
            "p99": percentile(done, 0.99) * 1000,
            "commits": counter.count / len(done) if done and counter else float("nan"),
            "count": len(done),
            "cores": cores,
        }
    finally:
        bank.stop()


class BusyCores:
    """CPU seconds per second of this process and its children (Ray's processes)."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.started = time.perf_counter()
        self.before = self._cpu_seconds()

    def _cpu_seconds(self) -> dict[int, float]:
        me = self.psutil.Process()
        seconds = {}
        for process in [me, *me.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except self.psutil.Error:
                continue  # ended in the meantime
            seconds[process.pid] = times.user + times.system
        return seconds

    def cores(self) -> float:
        """Busy CPU seconds per elapsed second (the database's own not included)."""
        after = self._cpu_seconds()
        busy = sum(t - self.before.get(pid, 0.0) for pid, t in after.items())
        elapsed = time.perf_counter() - self.started
        return busy / elapsed if elapsed > 0 else float("nan")


def configurations(options: Options) -> list[tuple[str, int]]:
    """(runner, threads) pairs: every runner, the multi and ray runners loaded."""
    pairs = [(runner, 1) for runner in RUNNERS]
    if "multi" in RUNNERS:
        pairs.append(("multi", 4))
    if "ray" in RUNNERS:
        pairs.append(("ray", 4))
    return pairs


def runs_on(store: str, runner: str) -> bool:
    """False for Ray on SQLite files (they belong to one process: refused)."""
    return not (runner == "ray" and store == "sqlite")


#: Commits of one transfer when nothing is batched: Commands 1, Sagas 3 (created,
#: debit recorded, succeeded), Accounts 2 (debit, credit), the interface 4.
UNBATCHED_COMMITS = 10


def run(options: Options) -> Result:
    """Transfers/s, p50/p99 and efficiency per store x runner."""
    seconds = 0.75 if options.quick else 4.0
    rows: list[Row] = []
    configs = configurations(options)
    labels = [
        f"{runner}, {threads} thread{'s' * (threads > 1)}"
        for runner, threads in configs
    ]
    series: dict[str, list[float]] = {}
    notes: list[str] = []
    for store in options.stores:
        label = STORE_LABELS[store]
        options.progress(f"inprocess: {label}")
        limit = measure_limits(store, options).save
        series[f"{label} transfers/s"] = []
        for (runner, threads), config in zip(configs, labels, strict=True):
            if not runs_on(store, runner):
                series[f"{label} transfers/s"].append(float("nan"))
                continue
            with apps_env(store, options.workdir, APPLICATION_NAMES) as env:
                found = measure(env, runner, threads, seconds)
            options.progress(
                f"  {config}: {found['rate']:,.1f} transfers/s, p50 "
                f"{found['p50']:.1f} ms, p99 {found['p99']:.1f} ms, "
                f"{found['commits']:.2f} commits/transfer, "
                f"{found['cores']:.2f} cores busy"
            )
            series[f"{label} transfers/s"].append(found["rate"])
            name = f"{label}, {config}"
            rows.append(
                Row(
                    f"{name}: cores busy (bench and Ray processes)",
                    found["cores"],
                    "cores",
                )
            )
            if runner == "ray":
                rows.append(
                    Row(f"{name}: transfers end to end", found["rate"], "transfers/s")
                )
                rows.append(Row(f"{name}: latency p50", found["p50"], "ms"))
                rows.append(Row(f"{name}: latency p99", found["p99"], "ms"))
                continue
            efficiency_row = ratio_row(
                f"{name}: efficiency ({found['rate']:,.1f} transfers/s x "
                f"{found['commits']:.2f} commits/transfer)",
                found["rate"] * found["commits"],
                "commits/s",
                limit,
                "Application.save()/s",
                at_least=TARGET,
            )
            rows.append(
                Row(f"{name}: transfers end to end", found["rate"], "transfers/s")
            )
            rows.append(Row(f"{name}: latency p50", found["p50"], "ms"))
            rows.append(Row(f"{name}: latency p99", found["p99"], "ms"))
            rows.append(efficiency_row)
            if found["commits"] < UNBATCHED_COMMITS - 0.5:
                rows.append(
                    ratio_row(
                        f"{name}: work efficiency ({found['rate']:,.1f} transfers/s "
                        f"x {UNBATCHED_COMMITS} commits/transfer unbatched)",
                        found["rate"] * UNBATCHED_COMMITS,
                        "commits/s",
                        limit,
                        "Application.save()/s",
                        at_least=TARGET,
                    )
                )
    notes.append(
        "`ray` runs each application in a Ray actor of its own "
        "(bankaccounts/deploy/ray.py; a local Ray, on POPO and PostgreSQL, not on "
        "SQLite files): every call and every read of an upstream's log crosses "
        "processes, and the actors' commits are not counted. 'cores busy' is the "
        "CPU time of the benchmark's process and its children (with `ray`: the "
        "actors and Ray's own processes; not PostgreSQL's) per second of the run; "
        "on a machine with two cores, a figure near 2 (or near 2 minus what the "
        "database takes) means the cores, not the design, are the limit."
    )
    notes.append(
        "A process application records a page of events in one commit when "
        "several are waiting (bankaccounts/system/batching.py), so under "
        "concurrent load (the multi runner with 4 client threads) a transfer "
        f"costs fewer than its {UNBATCHED_COMMITS} commits. The efficiency as "
        "defined then falls as throughput rises; the 'work efficiency' row counts "
        f"the {UNBATCHED_COMMITS} commits a transfer costs unbatched, i.e. "
        "transfers/s against what one commit per event would allow."
    )
    return Result(
        key=KEY,
        title="4. The system in one process",
        description=(
            "The whole system (Commands -> Sagas -> Accounts -> Sagas, and the "
            "interface following Accounts and Sagas) in one process, built with "
            "`bankaccounts.deploy.bootstrap.Bank(env, runner=...)` for each runner in "
            "`RUNNERS`. A transfer between random pairs of "
            f"{ACCOUNTS} funded accounts starts at `Commands.transfer_funds` and "
            "ends when the interface's read model no longer says `pending` (the "
            "interface's feed listener wakes the waiting thread, which then reads "
            "`view.get_transaction(id)`). Each configuration runs for "
            f"{seconds:g} s; `N threads` means N client threads each with one "
            "transfer in flight. Commits per transfer are counted by wrapping every "
            "application's `recorder.insert_events` (one transaction each: the "
            "events and tracking record a process application writes per event "
            "it receives, whether its policy did anything or not). Efficiency = "
            "transfers/s x commits per transfer / the single-save rate of "
            f"benchmark 1 measured again in this run. Target: >= {TARGET}."
        ),
        rows=rows,
        chart=Chart(
            kind="bar",
            title="System in one process: transfers/s end to end",
            xlabel="runner, client threads",
            ylabel="transfers/s",
            x=labels,
            series=series,
        ),
        notes=notes,
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)

"""Benchmark 12: the embedded pipeline end to end, before and after (issue 13).

N transfers of 1.00 from account A to account B by one client, on SQLite files
(WAL, full sync on every commit, as the server keeps them), each counted done when
the interface's read model says it is no longer pending. The old configuration
(`single`: the library's SingleThreadedRunner, the whole pipe in the caller's
thread) and the new default (`pipeline`: bankaccounts/deploy/runner.py) run in
alternating rounds in the same run, next to the single-save rate measured just
before. Commits are counted by wrapping every application's
`recorder.insert_events`, SQL statements with sqlite3's trace callback on every
connection the bank opens (in this benchmark only). With BENCH_SEED_COMMAND set,
the seed itself (its own system on eventsourcing 8.2.3) runs N transfers in each
round too, in a process of its own, and the ratios are to its measured rate.
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import subprocess
import threading
import time
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bankaccounts.deploy.bootstrap import APPLICATION_NAMES, Bank
from bench.common import STORE_LABELS, Chart, Options, Result, Row, median, ratio_row
from bench.inprocess import CommitCounter, Waiter
from bench.limits import apps_env, measure_limits

if TYPE_CHECKING:
    from collections.abc import Iterator
    from uuid import UUID

KEY = "pipeline"
STORE = "sqlite"
AMOUNT = Decimal("1.00")
WAIT = 120.0  # seconds the last transfer may take before the benchmark gives up
#: The seed (eventsourcing 8.2.3, SQLite) and this project's SingleThreadedRunner,
#: measured side by side by issue 13 (N=1000, one client): 14-17 and 102-132
#: transfers/s. Without a seed to run (SEED_COMMAND), its rate in this run is
#: estimated from the single runner's, in the same proportion (15.5 / 117).
SEED_PER_SINGLE = 15.5 / 117
#: A command that runs the seed's own system (not part of this repository: a
#: checkout of johnbywater/es-example-bank-accounts on eventsourcing 8.2.3) for
#: `--n N --rounds 1` and prints `... = <rate> transfers/s`; then the seed is
#: measured in the same run, in alternating rounds with the others.
SEED_COMMAND = "BENCH_SEED_COMMAND"
TARGET_SEED = 20.0
#: Client threads of the concurrent phase, and how long they record.
CLIENTS = 8


class StatementCounter:
    """Counts the SQL statements of every SQLite connection opened meanwhile."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def trace(self, _statement: str) -> None:
        with self.lock:
            self.count += 1

    @contextmanager
    def installed(self) -> Iterator[StatementCounter]:
        """While active, every sqlite3 connection made reports to this counter."""
        import eventsourcing.sqlite

        connect = sqlite3.connect

        def counted_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            connection = connect(*args, **kwargs)
            connection.set_trace_callback(self.trace)
            return connection

        eventsourcing.sqlite.sqlite3.connect = counted_connect  # type: ignore[assignment]
        try:
            yield self
        finally:
            eventsourcing.sqlite.sqlite3.connect = connect


def finish(waiter: Waiter, transaction_ids: list[UUID]) -> None:
    """Waits until every transaction is finished in the read model."""
    deadline = time.perf_counter() + WAIT
    for transaction_id in transaction_ids:
        left = deadline - time.perf_counter()
        if not waiter.expect(str(transaction_id)).wait(max(left, 0.0)):
            msg = f"transfer {transaction_id} not finished after {WAIT} s"
            raise TimeoutError(msg)


def one_client(
    env: dict[str, str], runner: str, count: int, *, wait_each: bool
) -> dict[str, float]:
    """count transfers A->B by one client; rate, commits and statements each."""
    statements = StatementCounter()
    with statements.installed():
        bank = Bank(env, runner=runner)
        bank.start()
        try:
            waiter = Waiter()
            remove = bank.interface.add_feed_listener(waiter)
            a = bank.accounts.create_account("A")
            b = bank.accounts.create_account("B")
            finish(waiter, [bank.commands.deposit_funds(a, Decimal(10**6))])
            commits = CommitCounter(bank)
            statements.count = 0
            started = time.perf_counter()
            ids = []
            for _ in range(count):
                ids.append(bank.commands.transfer_funds(a, b, AMOUNT))
                if wait_each:
                    finish(waiter, ids[-1:])
            recorded = time.perf_counter() - started
            finish(waiter, ids)
            elapsed = time.perf_counter() - started
            sql = statements.count
            remove()
            last = bank.interface.view.get_transaction(ids[-1])
            if last is None or last.status != "succeeded":
                msg = f"the last transfer is {last and last.status}, not succeeded"
                raise RuntimeError(msg)
            balance = bank.accounts.get_account(b).balance
            if balance != AMOUNT * count:
                msg = f"B has {balance}, not {AMOUNT * count}"
                raise RuntimeError(msg)
        finally:
            bank.stop()
    return {
        "rate": count / elapsed,
        "recorded": count / recorded,
        "commits": commits.count / count,
        "statements": sql / count,
    }


def seed_round(command: str, count: int) -> float:
    """The seed's rate: N transfers A->B by one client, in its own process."""
    result = subprocess.run(
        [*shlex.split(command), "--n", str(count), "--rounds", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    rates = re.findall(r"= ([0-9.]+) transfers/s", result.stdout)
    if not rates:
        msg = f"the seed printed no rate: {result.stdout[-500:]}"
        raise RuntimeError(msg)
    return float(rates[0])


def concurrent(env: dict[str, str], runner: str, seconds: float) -> dict[str, float]:
    """CLIENTS threads record transfers for a while: accepted vs processed rate."""
    bank = Bank(env, runner=runner)
    bank.start()
    try:
        waiter = Waiter()
        remove = bank.interface.add_feed_listener(waiter)
        accounts = [bank.accounts.create_account(f"a{i}") for i in range(CLIENTS)]
        finish(
            waiter,
            [bank.commands.deposit_funds(a, Decimal(10**6)) for a in accounts],
        )
        ids: list[list[UUID]] = [[] for _ in range(CLIENTS)]
        started = time.perf_counter()
        deadline = started + seconds

        def client(index: int) -> None:
            debit = accounts[index]
            credit = accounts[(index + 1) % CLIENTS]
            while time.perf_counter() < deadline:
                ids[index].append(bank.commands.transfer_funds(debit, credit, AMOUNT))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepting = time.perf_counter() - started
        every = [t for per_client in ids for t in per_client]
        finish(waiter, every)
        elapsed = time.perf_counter() - started
        remove()
    finally:
        bank.stop()
    return {
        "accepted": len(every) / accepting,
        "processed": len(every) / elapsed,
        "count": len(every),
        "drain": elapsed - accepting,
    }


def run(options: Options) -> Result:
    """Old and new configuration side by side, in alternating rounds."""
    count = options.size(1000, 200)
    rounds = options.size(3, 1)
    seconds = options.size(5.0, 1.5)
    label = STORE_LABELS[STORE]
    limit = measure_limits(STORE, options).save
    configs = {
        "single, 1 client (before)": ("single", False),
        "pipeline, 1 client back to back (after)": ("pipeline", False),
        "pipeline, 1 client waiting for each (after)": ("pipeline", True),
    }
    found: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    seed_command = os.environ.get(SEED_COMMAND, "")
    seed_rates: list[float] = []
    for round_number in range(rounds):
        if seed_command:
            seed_rates.append(seed_round(seed_command, count))
            options.progress(
                f"  round {round_number + 1}, the seed: {seed_rates[-1]:,.1f} "
                "transfers/s"
            )
        for name, (runner, wait_each) in configs.items():
            with apps_env(STORE, options.workdir, APPLICATION_NAMES) as env:
                result = one_client(env, runner, count, wait_each=wait_each)
            found[name].append(result)
            options.progress(
                f"  round {round_number + 1}, {name}: {result['rate']:,.1f} "
                f"transfers/s, {result['commits']:.2f} commits and "
                f"{result['statements']:.1f} statements per transfer"
            )
    rows: list[Row] = []
    rates = {name: median([r["rate"] for r in runs]) for name, runs in found.items()}
    before = rates["single, 1 client (before)"]
    if seed_rates:
        seed = median(seed_rates)
        seed_label = "measured in this run"
        rows.append(
            ratio_row(
                f"{label}, the seed (eventsourcing 8.2.3, its SingleThreadedRunner), "
                f"1 client: transfers end to end, N={count}",
                seed,
                "transfers/s",
                limit,
                "Application.save()/s",
            )
        )
    else:
        seed = before * SEED_PER_SINGLE
        seed_label = "estimated from the single runner's rate"
    for name, runs in found.items():
        rate = rates[name]
        rows.append(
            ratio_row(
                f"{label}, {name}: transfers end to end, N={count}",
                rate,
                "transfers/s",
                limit,
                "Application.save()/s",
            )
        )
        rows.append(
            Row(
                f"{label}, {name}: commits per transfer",
                median([r["commits"] for r in runs]),
                "commits",
            )
        )
        rows.append(
            Row(
                f"{label}, {name}: SQL statements per transfer",
                median([r["statements"] for r in runs]),
                "statements",
            )
        )
        rows.append(
            ratio_row(
                f"{label}, {name}: against the seed ({seed_label})",
                rate,
                "transfers/s",
                seed,
                "seed transfers/s",
                at_least=TARGET_SEED if "back to back" in name else None,
            )
        )
    loads = {}
    for runner in ("single", "pipeline"):
        with apps_env(STORE, options.workdir, APPLICATION_NAMES) as env:
            load = concurrent(env, runner, seconds)
        loads[runner] = load
        options.progress(
            f"  {runner}, {CLIENTS} clients: accepted {load['accepted']:,.1f}/s, "
            f"processed {load['processed']:,.1f}/s ({load['count']:.0f} transfers, "
            f"{load['drain']:.2f} s to finish after the last was accepted)"
        )
        rows.append(
            ratio_row(
                f"{label}, {runner}, {CLIENTS} clients for {seconds:g} s: transfers "
                "processed end to end vs accepted",
                load["processed"],
                "transfers/s",
                load["accepted"],
                "transfers/s accepted",
                at_least=0.9 if runner == "pipeline" else None,
            )
        )
    names = list(configs)
    return Result(
        key=KEY,
        title="12. The embedded pipeline, before and after",
        description=(
            f"N={count} transfers of 1.00 from A to B by one client on SQLite files "
            "(WAL, full sync on every commit), each done when the interface's read "
            "model says it is no longer pending: command recorded, saga finished, "
            "both accounts and the read model updated. `single` is the old "
            "configuration (the library's SingleThreadedRunner: the whole pipe in "
            "the caller's thread); `pipeline` is the new default of "
            "`python bankaccounts/main.py` (bankaccounts/deploy/runner.py: the "
            "caller only records the command, a thread per follower processes "
            "pages). 'Back to back': the client records its transfers one after "
            "another (the call returns once the command is committed, as a POST "
            "answers 202) and the time runs until the last is finished; 'waiting "
            "for each': the next transfer starts only when the previous one is "
            f"finished. Median of {rounds} alternating round(s), next to the "
            "single-save rate measured in this run. Commits: every application's "
            "`recorder.insert_events` call; SQL statements: sqlite3's trace "
            "callback on every connection (BEGIN, COMMIT and ROLLBACK included). "
            f"Then {CLIENTS} client threads record transfers for {seconds:g} s and "
            "the rate processed end to end (until the last is finished) is "
            "compared with the rate accepted (recorded). Target: >= "
            f"{TARGET_SEED:g}x the seed back to back; processed >= 0.9x accepted."
        ),
        rows=rows,
        chart=Chart(
            kind="bar",
            title="One client, N transfers A->B: transfers/s end to end",
            xlabel="configuration",
            ylabel="transfers/s",
            x=["single (before)", "pipeline back to back", "pipeline waiting each"],
            series={f"{label} transfers/s": [rates[name] for name in names]},
        ),
        notes=[
            (
                f"The seed: its own BankAccountSystem on eventsourcing 8.2.3 "
                "(SQLAlchemy 1.3 on an SQLite file, its defaults: rollback journal, "
                "full sync, a connection per transaction), N transfers by its "
                f"commands, run by `{SEED_COMMAND}` in alternating rounds with the "
                f"others: median {seed:,.1f} transfers/s."
                if seed_rates
                else "The seed (eventsourcing 8.2.3 on SQLite) was not run (set "
                f"{SEED_COMMAND}); issue 13 measured it side by side with this "
                "project's SingleThreadedRunner (N=1000, one client: 14-17 vs "
                "102-132 transfers/s), so its rate here is estimated as the single "
                f"runner's rate in this run x {SEED_PER_SINGLE:.3f} (15.5 / 117): "
                f"{seed:,.1f} transfers/s."
            ),
            "Under the SingleThreadedRunner a call returns only when its transfer "
            "is finished, so 'back to back' and 'waiting for each' are the same "
            "there; the pipeline runner batches: while a follower commits, the "
            "events that arrive wait, and its next page carries them all in one "
            "commit.",
        ],
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)

"""Does an operation's cost grow with an account's history?

Times one deposit (SimpleBankAccountApplication.deposit_funds) and one deposit
saga (Commands.deposit_funds through to the saga having succeeded, in the
BankAccountSystem under a SingleThreadedRunner) on an account with no prior
transactions and on one with N, in memory (POPO) and in SQLite files, and prints
the ratio of the two costs. The target is a ratio of at most 1.2.

    python bench/history.py              # N = 100,000
    python bench/history.py --quick      # N = 10,000
    python bench/history.py --help

Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import platform
import pstats
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from eventsourcing.system import SingleThreadedRunner

from bankaccounts.infrastructure import sqlite_env
from bankaccounts.simpleapplication import SimpleBankAccountApplication
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.sagas import Sagas

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from bankaccounts.accountapplication import AccountApplication

AMOUNT = Decimal("1.00")
TARGET = 1.2
BATCH = 1000  # a multiple of the snapshotting interval (100)
DEFAULT_HISTORY = 100_000
QUICK_HISTORY = 10_000
STORES = ("popo", "sqlite")
OPERATIONS = ("simple", "system")
OPERATION_LABELS = {"simple": "deposit (simple app)", "system": "deposit saga (system)"}
STORE_LABELS = {"popo": "POPO", "sqlite": "SQLite"}

T = TypeVar("T")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Subject(Protocol):
    """An application instance, ready to run the measured operation."""

    def operate(self) -> None: ...

    def close(self) -> None: ...


class SimpleDeposit:
    """One SimpleBankAccountApplication.deposit_funds on the account."""

    def __init__(self, env: dict[str, str], account_id: UUID | None = None) -> None:
        self.app = SimpleBankAccountApplication(env=env)
        self.accounts: AccountApplication = self.app
        self.account_id = account_id or self.app.create_account()

    def operate(self) -> None:
        self.app.deposit_funds(self.account_id, AMOUNT)

    def close(self) -> None:
        self.app.close()


class SagaDeposit:
    """One Commands.deposit_funds, returning once its saga has succeeded."""

    def __init__(self, env: dict[str, str], account_id: UUID | None = None) -> None:
        self.runner: SingleThreadedRunner[UUID] = SingleThreadedRunner(
            BankAccountSystem(), env=env
        )
        self.runner.start()
        self.commands = self.runner.get(Commands)
        self.sagas = self.runner.get(Sagas)
        self.accounts: AccountApplication = self.runner.get(Accounts)
        self.account_id = account_id or self.accounts.create_account()

    def operate(self) -> None:
        transaction_id = self.commands.deposit_funds(self.account_id, AMOUNT)
        # The single-threaded runner has run the whole saga by now.
        if not self.sagas.get_saga(transaction_id).has_succeeded:
            msg = f"deposit saga {transaction_id} has not succeeded"
            raise RuntimeError(msg)

    def close(self) -> None:
        self.runner.stop()


@dataclass
class Fixture:
    """An account with its history in one store, and how to operate on it."""

    operation: str
    store: str
    history: int
    env: dict[str, str]
    account_id: UUID
    live: Subject | None = None  # POPO: the data lives in this instance only
    cold: list[int] = field(default_factory=list)
    warm: list[int] = field(default_factory=list)

    @property
    def reopens(self) -> bool:
        """Whether a new application instance can be opened on the stored data."""
        return self.live is None

    def open(self) -> Subject:
        """A new instance on the stored data (or the live one, in memory)."""
        if self.live is not None:
            return self.live
        if self.operation == "simple":
            return SimpleDeposit(self.env, self.account_id)
        return SagaDeposit(self.env, self.account_id)

    def close(self) -> None:
        if self.live is not None:
            self.live.close()


def store_env(store: str, data_dir: Path, names: list[str]) -> dict[str, str]:
    if store == "popo":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    return sqlite_env(data_dir, names)


def append_history(
    app: AccountApplication, account_id: UUID, count: int, label: str
) -> None:
    """Appends count transactions to the account, BATCH events per write."""
    started = time.perf_counter()
    done = 0
    while done < count:
        size = min(BATCH, count - done)
        with app.writing():
            account = app.get_account(account_id)
            for _ in range(size):
                account.append_transaction(AMOUNT)
            app.save(account)
        done += size
        if done % (10 * BATCH) == 0 or done == count:
            elapsed = time.perf_counter() - started
            progress(f"  {label}: {done:,}/{count:,} ({elapsed:.1f}s)")


def operate_history(subject: Subject, count: int, label: str) -> None:
    """Runs the measured operation itself count times (slow, but the real path)."""
    started = time.perf_counter()
    for done in range(1, count + 1):
        subject.operate()
        if done % 1000 == 0 or done == count:
            elapsed = time.perf_counter() - started
            progress(f"  {label}: {done:,}/{count:,} ({elapsed:.1f}s)")


def build(
    operation: str, store: str, history: int, workdir: Path, *, real: bool
) -> Fixture:
    """Opens an account and gives it its history, then closes what can reopen."""
    label = f"{OPERATION_LABELS[operation]}, {STORE_LABELS[store]}, {history:,}"
    progress(f"building {label}")
    data_dir = workdir / f"{operation}-{store}-{history}"
    subject: SimpleDeposit | SagaDeposit
    if operation == "simple":
        env = store_env(store, data_dir, [SimpleBankAccountApplication.name])
        subject = SimpleDeposit(env)
    else:
        env = store_env(store, data_dir, list(BankAccountSystem().nodes))
        subject = SagaDeposit(env)
    account_id = subject.account_id
    if history and real:
        operate_history(subject, history, label)
    elif history:
        # The account's events as deposits (or sagas, through Accounts) write
        # them; in the system, Sagas and the interface process each as usual.
        append_history(subject.accounts, account_id, history, label)
    fixture = Fixture(operation, store, history, env, account_id)
    if store == "popo":
        fixture.live = subject
    else:
        subject.close()
    return fixture


def timed(subject: Subject, profiler: cProfile.Profile | None = None) -> int:
    if profiler is not None:
        profiler.enable()
    started = time.perf_counter_ns()
    subject.operate()
    elapsed = time.perf_counter_ns() - started
    if profiler is not None:
        profiler.disable()
    return elapsed


def alternate(items: list[T], i: int) -> list[T]:
    """The items in turn, the order flipped every round so neither always goes first."""
    return items if i % 2 == 0 else items[::-1]


def measure(
    fixtures: list[Fixture],
    args: argparse.Namespace,
    profiler: cProfile.Profile | None,
) -> None:
    """Times the operation on each fixture, interleaved round by round."""
    label = f"{OPERATION_LABELS[fixtures[0].operation]}, "
    label += STORE_LABELS[fixtures[0].store]
    longest = max(f.history for f in fixtures)
    if all(f.reopens for f in fixtures) and args.cold:
        progress(f"timing {label}: {args.cold} cold starts each")
        for i in range(args.cold):
            for fixture in alternate(fixtures, i):
                subject = fixture.open()
                try:
                    fixture.cold.append(timed(subject))
                finally:
                    subject.close()
    subjects = [fixture.open() for fixture in fixtures]
    try:
        progress(f"timing {label}: {args.warmup} warm-up + {args.repeat} timed each")
        pairs = list(zip(fixtures, subjects, strict=True))
        for i in range(args.warmup):
            for _fixture, subject in alternate(pairs, i):
                subject.operate()
        gc.collect()
        for i in range(args.repeat):
            for fixture, subject in alternate(pairs, i):
                use = profiler if fixture.history == longest else None
                fixture.warm.append(timed(subject, use))
    finally:
        for fixture, subject in zip(fixtures, subjects, strict=True):
            if fixture.reopens:
                subject.close()


def ms(samples: list[int], how: Callable[[list[int]], float]) -> float | None:
    return how(samples) / 1e6 if samples else None


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b


def report(results: list[list[Fixture]], args: argparse.Namespace) -> bool:
    """Prints the table; returns whether every median ratio meets the target."""
    n = max(f.history for pair in results for f in pair)
    print()
    print(f"Cost of one operation on an account with 0 and {n:,} prior transactions")
    print(
        f"python {platform.python_version()}, eventsourcing {version('eventsourcing')}"
        f", {platform.machine()}; {args.repeat} timed operations per case after "
        f"{args.warmup} warm-up ones; 0 and {n:,} interleaved"
    )
    print()
    header = (
        f"{'operation':<23} {'store':<7} {'history':>9} {'cold ms':>9} "
        f"{'median ms':>10} {'mean ms':>9} {'p90 ms':>8}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for pair in results:
        rows = []
        for f in pair:
            rows.append(
                (
                    ms(f.cold, statistics.median),
                    ms(f.warm, statistics.median),
                    ms(f.warm, statistics.fmean),
                    ms(f.warm, lambda s: statistics.quantiles(s, n=10)[-1]),
                )
            )
        for f, (cold, median, mean, p90) in zip(pair, rows, strict=True):
            print(
                f"{OPERATION_LABELS[f.operation]:<23} {STORE_LABELS[f.store]:<7} "
                f"{f.history:>9,} {fmt(cold):>9} {fmt(median):>10} {fmt(mean):>9} "
                f"{fmt(p90):>8}"
            )
        ratios = [ratio(b, a) for a, b in zip(rows[0], rows[1], strict=True)]
        median_ratio = ratios[1]
        met = median_ratio is not None and median_ratio <= TARGET
        verdict = "ok" if met else "MISS"
        ok = ok and verdict == "ok"
        print(
            f"{'':<23} {'':<7} {'ratio':>9} {fmt(ratios[0], 2):>9} "
            f"{fmt(median_ratio, 2) + ' ' + verdict:>10} {fmt(ratios[2], 2):>9} "
            f"{fmt(ratios[3], 2):>8}"
        )
        print()
    how = (
        "the measured operation itself"
        if args.build == "operation"
        else f"append_transaction on the account, {BATCH:,} events saved per write "
        "(system: through Accounts, with Sagas and the interface processing every "
        "event as usual)"
    )
    notes = [
        f"ratio: cost at {n:,} / cost at 0; target: median ratio <= {TARGET}.",
        f"median, mean, p90: {args.repeat} warm operations on one application "
        "instance with its aggregate cache populated (SQLite: a new instance opened "
        "on the stored files; POPO: the instance that built the history, since its "
        "data lives only there).",
        "cold: the first operation on a new instance opened on the stored files "
        "(empty cache: the account is loaded from its latest snapshot and the "
        f"events after it), median over {args.cold} instances; POPO has none.",
        "deposit saga: Commands.deposit_funds until the saga has succeeded, through "
        "Commands -> Sagas -> Accounts -> Sagas and the interface, all in the "
        "calling thread (SingleThreadedRunner).",
        f"history built with {how}; a snapshot every 100 events as in normal use.",
    ]
    for note in notes:
        print(textwrap.fill(note, width=88, subsequent_indent="  "))
    return ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--history",
        type=int,
        help=f"prior transactions on the long account (default {DEFAULT_HISTORY:,})",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"history of {QUICK_HISTORY:,}"
    )
    parser.add_argument("--repeat", type=int, default=200, help="timed operations")
    parser.add_argument("--warmup", type=int, default=20, help="untimed operations")
    parser.add_argument("--cold", type=int, default=10, help="new instances timed")
    parser.add_argument("--stores", default=",".join(STORES), help="popo,sqlite")
    parser.add_argument(
        "--operations", default=",".join(OPERATIONS), help="simple,system"
    )
    parser.add_argument(
        "--build",
        choices=("batch", "operation"),
        default="batch",
        help="build history in batches of events (fast) or by the operation itself",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the timed operations on the long account (to stderr)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a median ratio misses"
    )
    args = parser.parse_args(argv)
    if args.history is None:
        args.history = QUICK_HISTORY if args.quick else DEFAULT_HISTORY
    args.stores = [s for s in args.stores.split(",") if s]
    args.operations = [o for o in args.operations.split(",") if o]
    for name, allowed in (("stores", STORES), ("operations", OPERATIONS)):
        unknown = set(getattr(args, name)) - set(allowed)
        if unknown:
            parser.error(f"unknown {name}: {', '.join(sorted(unknown))}")
    if args.repeat < 2 or args.history < 1:
        parser.error("need --repeat >= 2 and --history >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profiler = cProfile.Profile() if args.profile else None
    results: list[list[Fixture]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        for operation in args.operations:
            for store in args.stores:
                real = args.build == "operation"
                pair = [
                    build(operation, store, history, Path(tmp), real=real)
                    for history in (0, args.history)
                ]
                try:
                    measure(pair, args, profiler)
                finally:
                    for fixture in pair:
                        fixture.close()
                results.append(pair)
    progress(f"done in {time.perf_counter() - started:.0f}s")
    ok = report(results, args)
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark 1: the limits every other figure is compared with.

Two rates per store, each a time-boxed loop:

- raw commits/s: one-row insert transactions through the store's own driver
  (sqlite3 on a WAL file as the library opens it, psycopg with one commit per
  insert, a list append under a lock for POPO);
- Application.save() rate: the library's own save of one event on a cached
  aggregate (a trivial aggregate with one command method, a plain
  eventsourcing Application with AGGREGATE_CACHE_MAXSIZE).

Other benchmarks call measure_limits() to measure them again in their own run.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import uuid4

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.common import (
    STORE_LABELS,
    Chart,
    Options,
    Result,
    Row,
    mariadb_connect,
    mariadb_env,
    postgres_env,
    postgres_settings,
    rate,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

KEY = "limits"


class Counter(Aggregate):
    """A trivial aggregate with one command method."""

    @event("Created")
    def __init__(self) -> None:
        """Starts at zero."""
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        """Adds one."""
        self.count += 1


def loop_rate(operation: Callable[[], object], seconds: float) -> float:
    """Calls operation repeatedly for about the given seconds; returns calls/s."""
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(20):
            operation()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return rate(count, now - started)


@contextmanager
def store_env(store: str, workdir: Path, name: str) -> Iterator[dict[str, str]]:
    """Library settings for one application in a fresh store."""
    if store == "popo":
        yield {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    elif store == "sqlite":
        path = workdir / f"{name}-{uuid4().hex[:8]}.sqlite"
        try:
            yield {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(path),
            }
        finally:
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
    elif store == "mariadb":
        with mariadb_env() as env:
            yield env
    else:
        with postgres_env() as env:
            yield env


@contextmanager
def apps_env(
    store: str, workdir: Path, names: Iterable[str]
) -> Iterator[dict[str, str]]:
    """Settings for the named bank applications in a fresh store (own SQLite files)."""
    if store == "popo":
        yield {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    elif store == "sqlite":
        from bankaccounts.infrastructure import sqlite_env

        yield sqlite_env(workdir / f"data-{uuid4().hex[:8]}", names)
    elif store == "mariadb":
        with mariadb_env() as env:
            yield env
    else:
        with postgres_env() as env:
            yield env


def raw_commit_rate(store: str, seconds: float, workdir: Path) -> float:
    """One-row insert transactions per second through the store's own driver."""
    payload = b"x" * 200
    if store == "popo":
        rows: list[bytes] = []
        lock = threading.Lock()

        def append() -> None:
            with lock:
                rows.append(payload)

        return loop_rate(append, seconds)
    if store == "sqlite":
        path = workdir / f"raw-{uuid4().hex[:8]}.sqlite"
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL;")
            connection.execute(
                "CREATE TABLE rows (id INTEGER PRIMARY KEY, data BLOB NOT NULL)"
            )
            cursor = connection.cursor()

            def insert() -> None:
                cursor.execute("BEGIN")
                cursor.execute("INSERT INTO rows (data) VALUES (?)", (payload,))
                cursor.execute("COMMIT")

            return loop_rate(insert, seconds)
        finally:
            connection.close()
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
    if store == "mariadb":
        return raw_mariadb_rate(payload, seconds)
    import psycopg

    settings = postgres_settings()
    with (
        postgres_env() as env,
        psycopg.connect(
            dbname=settings["POSTGRES_DBNAME"],
            host=settings["POSTGRES_HOST"],
            port=settings["POSTGRES_PORT"],
            user=settings["POSTGRES_USER"],
            password=settings["POSTGRES_PASSWORD"],
        ) as connection,
    ):
        table = f'"{env["POSTGRES_SCHEMA"]}".rows'
        connection.execute(
            f"CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, data BYTEA)"
        )
        connection.commit()
        statement = f"INSERT INTO {table} (data) VALUES (%s)"

        def insert_pg() -> None:
            connection.execute(statement, (payload,), prepare=True)
            connection.commit()

        return loop_rate(insert_pg, seconds)


def raw_mariadb_rate(payload: bytes, seconds: float) -> float:
    """One-row InnoDB insert transactions per second through PyMySQL."""
    with mariadb_env() as env:
        database = env["SQLALCHEMY_URL"].rsplit("/", 1)[1]
        connection = mariadb_connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "CREATE TABLE raw_rows (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                    "data BLOB NOT NULL) ENGINE=InnoDB"
                )
            connection.autocommit(False)
            cursor = connection.cursor()

            def insert() -> None:
                cursor.execute("INSERT INTO raw_rows (data) VALUES (%s)", (payload,))
                connection.commit()

            return loop_rate(insert, seconds)
        finally:
            connection.close()


def save_rate(store: str, seconds: float, workdir: Path) -> float:
    """The library's Application.save() of one new event on an aggregate in hand, per s.

    The aggregate stays in memory (as in the aggregate cache), so this is the cost
    of save() alone: no repository read.
    """
    with store_env(store, workdir, "save") as env:
        app: Application = Application(env={**env, "AGGREGATE_CACHE_MAXSIZE": "1000"})
        try:
            counter = Counter()
            app.save(counter)

            def save_one() -> None:
                counter.increment()
                app.save(counter)

            return loop_rate(save_one, seconds)
        finally:
            app.close()


def save_pair_rate(store: str, seconds: float, workdir: Path) -> float:
    """Application.save() of two new events on two aggregates in one call, per s.

    What an atomic transfer must write at the least, with nothing else around it.
    """
    with store_env(store, workdir, "save2") as env:
        app: Application = Application(env={**env, "AGGREGATE_CACHE_MAXSIZE": "1000"})
        try:
            first, second = Counter(), Counter()
            app.save(first, second)

            def save_two() -> None:
                first.increment()
                second.increment()
                app.save(first, second)

            return loop_rate(save_two, seconds)
        finally:
            app.close()


@dataclass
class Limits:
    """The two limits of one store, measured now."""

    store: str
    raw: float  # one-row commits/s through the driver
    save: float  # Application.save() of one event/s


def measure_limits(
    store: str, options: Options, seconds: float | None = None
) -> Limits:
    """Measures both limits of a store again (quickly) for another benchmark."""
    if seconds is None:
        seconds = 0.5 if options.quick else 1.0
    raw = raw_commit_rate(store, seconds, options.workdir)
    save = save_rate(store, seconds, options.workdir)
    options.progress(
        f"  limits {STORE_LABELS[store]}: raw {raw:,.0f} commits/s, save {save:,.0f}/s"
    )
    return Limits(store, raw, save)


def run(options: Options) -> Result:
    """Measures the raw commit rate and the single-save rate of every store."""
    seconds = 0.5 if options.quick else 3.0
    rows: list[Row] = []
    raws: list[float] = []
    saves: list[float] = []
    for store in options.stores:
        options.progress(f"limits: {STORE_LABELS[store]}")
        limits = measure_limits(store, options, seconds)
        raws.append(limits.raw)
        saves.append(limits.save)
        label = STORE_LABELS[store]
        rows.append(Row(f"{label}: raw one-row commits", limits.raw, "commits/s"))
        rows.append(
            Row(
                f"{label}: Application.save() of one event",
                limits.save,
                "saves/s",
                limits.raw,
                "raw commits/s",
                limits.save / limits.raw if limits.raw else None,
            )
        )
    return Result(
        key=KEY,
        title="1. Limits: raw commits and the library's single save",
        description=(
            "Every other figure is compared with one of these two, measured again "
            "in the benchmark's own run. **Raw commits/s**: one-row insert "
            "transactions of a 200-byte blob through the store's own driver "
            "(sqlite3 on a WAL-mode file, as the library opens it; psycopg with a "
            "prepared INSERT and a commit each; a list append under a lock for "
            "POPO). **Application.save()**: the library's `Application.save()` of "
            "one new event on an aggregate held in memory, as the cache holds it "
            "(a trivial `Aggregate` subclass with one command method, a plain "
            "`eventsourcing.application."
            f"Application` with `AGGREGATE_CACHE_MAXSIZE`). Each rate is a "
            f"{seconds:g}-second loop."
        ),
        rows=rows,
        chart=Chart(
            kind="bar",
            title="Limits per store",
            xlabel="store",
            ylabel="per second (log scale)",
            x=[STORE_LABELS[s] for s in options.stores],
            series={
                "raw one-row commits/s": raws,
                "Application.save()/s": saves,
            },
            logy=True,
        ),
        notes=[
            "These rows have no target: they are the limits. The ratio shows how "
            "much of the store's raw commit rate the library's save keeps (mapping, "
            "transcoding, the aggregate cache, the notification log).",
            "POPO's raw figure is a Python list append: the library's in-memory "
            "recorder does far more per save, so that ratio is small by nature.",
        ],
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)

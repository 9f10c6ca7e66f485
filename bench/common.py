"""What every benchmark shares: options, result rows, charts, stores, timing."""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

STORES = ("popo", "sqlite", "postgres")
#: With MariaDB (through eventsourcing_sqlalchemy), which the limits and the system in
#: one process measure; the other benchmarks keep to STORES (common_stores).
SYSTEM_STORES = (*STORES, "mariadb")
#: Every benchmark, in the order they run and the report shows them.
BENCHMARKS = (
    "limits",
    "history",
    "simple",
    "inprocess",
    "scaleout",
    "http",
    "fanout",
    "rebuild",
    "memory",
    "statement",
    "load",
    "pipeline",
    "timetravel",
    "timeline",
)
STORE_LABELS = {
    "popo": "POPO",
    "sqlite": "SQLite file",
    "postgres": "PostgreSQL",
    "mariadb": "MariaDB",
}


@dataclass
class Options:
    """How a benchmark runs: size, stores, where to put files, where to report."""

    quick: bool = False
    stores: tuple[str, ...] = SYSTEM_STORES
    workdir: Path = field(default_factory=lambda: Path("/tmp"))
    progress: Callable[[str], None] = lambda text: print(text, file=sys.stderr)

    @property
    def common_stores(self) -> tuple[str, ...]:
        """The stores of this run that every benchmark measures (not MariaDB)."""
        return tuple(store for store in self.stores if store in STORES)

    def size(self, full: int, quick: int) -> int:
        """The full size, or the quick one."""
        return quick if self.quick else full


@dataclass
class Row:
    """One measured figure next to the limit it is compared with."""

    configuration: str  # e.g. "PostgreSQL, 4 web workers"
    figure: float
    unit: str  # e.g. "transfers/s", "ms"
    limit: float | None = None  # the limit, measured in the same run
    limit_name: str = ""  # what the limit is, e.g. "Application.save() rate"
    ratio: float | None = None  # as the target defines it (usually figure / limit)
    target: str = ""  # e.g. ">= 0.5", "<= 1.2"
    met: bool | None = None  # None: no target for this row


@dataclass
class Chart:
    """Data for one PNG chart."""

    kind: str  # "bar" or "line"
    title: str
    xlabel: str
    ylabel: str
    x: Sequence[str] | Sequence[float]
    series: dict[str, list[float]]
    logx: bool = False
    logy: bool = False


@dataclass
class Result:
    """What one benchmark found."""

    key: str  # short name, also the PNG's name: docs/bench/<key>.png
    title: str
    description: str  # what was measured and how (a markdown paragraph)
    rows: list[Row]
    chart: Chart | None = None
    notes: list[str] = field(default_factory=list)


def ratio_row(
    configuration: str,
    figure: float,
    unit: str,
    limit: float,
    limit_name: str,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
) -> Row:
    """A row whose ratio is figure / limit, checked against at_least or at_most."""
    ratio = figure / limit if limit else float("nan")
    if at_least is not None:
        return Row(
            configuration,
            figure,
            unit,
            limit,
            limit_name,
            ratio,
            f">= {at_least:g}",
            ratio >= at_least,
        )
    if at_most is not None:
        return Row(
            configuration,
            figure,
            unit,
            limit,
            limit_name,
            ratio,
            f"<= {at_most:g}",
            ratio <= at_most,
        )
    return Row(configuration, figure, unit, limit, limit_name, ratio)


def postgres_settings() -> dict[str, str]:
    """The POSTGRES_* settings (the tests' defaults: database test on 127.0.0.1)."""
    return {
        "POSTGRES_DBNAME": os.environ.get("POSTGRES_DBNAME", "test"),
        "POSTGRES_HOST": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
        "POSTGRES_PORT": os.environ.get("POSTGRES_PORT", "5432"),
        "POSTGRES_USER": os.environ.get("POSTGRES_USER", "postgres"),
        "POSTGRES_PASSWORD": os.environ.get("POSTGRES_PASSWORD", ""),
    }


@contextmanager
def postgres_env() -> Iterator[dict[str, str]]:
    """Library settings for a fresh PostgreSQL schema of its own, dropped after."""
    import psycopg
    from psycopg import sql

    settings = postgres_settings()
    schema = f"bench_{uuid4().hex[:12]}"

    def execute(statement: sql.Composed) -> None:
        with psycopg.connect(
            dbname=settings["POSTGRES_DBNAME"],
            host=settings["POSTGRES_HOST"],
            port=settings["POSTGRES_PORT"],
            user=settings["POSTGRES_USER"],
            password=settings["POSTGRES_PASSWORD"],
            autocommit=True,
        ) as connection:
            connection.execute(statement)

    execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            **settings,
            "POSTGRES_SCHEMA": schema,
        }
    finally:
        execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def mariadb_settings() -> dict[str, str]:
    """Where MariaDB is (the tests' MARIADB_* variables and defaults)."""
    return {
        "host": os.environ.get("MARIADB_HOST", "127.0.0.1"),
        "port": os.environ.get("MARIADB_PORT", "3306"),
        "user": os.environ.get("MARIADB_USER", "root"),
        "password": os.environ.get("MARIADB_PASSWORD", ""),
    }


def mariadb_connect(database: str | None = None) -> Any:
    """An autocommit PyMySQL connection (to the database, if one is named)."""
    import pymysql

    settings = mariadb_settings()
    return pymysql.connect(
        host=settings["host"],
        port=int(settings["port"]),
        user=settings["user"],
        password=settings["password"],
        database=database,
        autocommit=True,
    )


@contextmanager
def mariadb_env() -> Iterator[dict[str, str]]:
    """Library settings for a fresh MariaDB database of its own, dropped after."""
    settings = mariadb_settings()
    database = f"bench_{uuid4().hex[:12]}"
    connection = mariadb_connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{database}`")
        yield {
            "PERSISTENCE_MODULE": "eventsourcing_sqlalchemy",
            "SQLALCHEMY_URL": (
                f"mysql+pymysql://{settings['user']}:{settings['password']}@"
                f"{settings['host']}:{settings['port']}/{database}"
            ),
        }
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        connection.close()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which the given fraction of values fall (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def rate(count: int, seconds: float) -> float:
    """Operations per second."""
    return count / seconds if seconds > 0 else float("nan")


def timed(function: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [float(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def cpu_busy_since(before: tuple[float, float]) -> float:
    """The fraction of the machine's cores busy since before (0 to 1)."""
    busy, total = cpu_times()
    return (busy - before[0]) / max(total - before[1], 1.0)

"""Fixtures shared by the test suite: where the applications keep their events."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import psycopg
import pymysql
import pytest
from psycopg import sql

from bankaccounts.infrastructure import sqlite_env as make_sqlite_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.cluster import Cluster

#: Every application that may be constructed in a test, by its name.
APPLICATION_NAMES = ("Commands", "Sagas", "Accounts", "SimpleBankAccountApplication")

POPO_ENV = {"PERSISTENCE_MODULE": "eventsourcing.popo"}

TRUE_VALUES = {"1", "y", "yes", "t", "true", "on"}


def postgres_settings() -> dict[str, str]:
    """Where the test database is: the usual POSTGRES_* variables, or the defaults."""
    return {
        "POSTGRES_DBNAME": os.environ.get("POSTGRES_DBNAME", "test"),
        "POSTGRES_HOST": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
        "POSTGRES_PORT": os.environ.get("POSTGRES_PORT", "5432"),
        "POSTGRES_USER": os.environ.get("POSTGRES_USER", "postgres"),
        "POSTGRES_PASSWORD": os.environ.get("POSTGRES_PASSWORD", ""),
    }


def postgres_is_required() -> bool:
    """CI sets BANKACCOUNTS_REQUIRE_POSTGRES, so an absent server fails the run."""
    value = os.environ.get("BANKACCOUNTS_REQUIRE_POSTGRES", "")
    return value.strip().lower() in TRUE_VALUES


def connect(settings: dict[str, str]) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the test database."""
    return psycopg.connect(
        dbname=settings["POSTGRES_DBNAME"],
        host=settings["POSTGRES_HOST"],
        port=settings["POSTGRES_PORT"],
        user=settings["POSTGRES_USER"],
        password=settings["POSTGRES_PASSWORD"],
        connect_timeout=3,
        autocommit=True,
    )


@pytest.fixture(scope="session")
def postgres_server() -> dict[str, str]:
    """The connection settings, once the server has answered (checked once a run)."""
    settings = postgres_settings()
    try:
        connect(settings).close()
    except psycopg.Error as error:
        where = (
            f"{settings['POSTGRES_USER']}@{settings['POSTGRES_HOST']}:"
            f"{settings['POSTGRES_PORT']}/{settings['POSTGRES_DBNAME']}"
        )
        msg = f"PostgreSQL is not reachable at {where}: {error}".strip()
        if postgres_is_required():
            pytest.fail(f"{msg} (BANKACCOUNTS_REQUIRE_POSTGRES is set)")
        pytest.skip(msg)
    return settings


@pytest.fixture
def postgres_env(postgres_server: dict[str, str]) -> Iterator[dict[str, str]]:
    """Environment for the applications, in a fresh schema of its own, dropped after."""
    schema = f"test_{uuid4().hex[:16]}"
    with connect(postgres_server) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        **postgres_server,
        "POSTGRES_SCHEMA": schema,
    }
    with connect(postgres_server) as connection:
        # Don't hang the run behind a connection a failed test left open.
        connection.execute("SET lock_timeout = '10s'")
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def mariadb_settings() -> dict[str, str]:
    """Where the MariaDB (or MySQL) server is: MARIADB_* variables, or the defaults."""
    return {
        "host": os.environ.get("MARIADB_HOST", "127.0.0.1"),
        "port": os.environ.get("MARIADB_PORT", "3306"),
        "user": os.environ.get("MARIADB_USER", "root"),
        "password": os.environ.get("MARIADB_PASSWORD", ""),
    }


def mariadb_is_required() -> bool:
    """CI sets BANKACCOUNTS_REQUIRE_MARIADB, so an absent server fails the run."""
    value = os.environ.get("BANKACCOUNTS_REQUIRE_MARIADB", "")
    return value.strip().lower() in TRUE_VALUES


def mariadb_url(settings: dict[str, str], database: str) -> str:
    """The plugin's SQLALCHEMY_URL for a database on the server."""
    return (
        f"mysql+pymysql://{settings['user']}:{settings['password']}@"
        f"{settings['host']}:{settings['port']}/{database}"
    )


def mariadb_connect(settings: dict[str, str]) -> pymysql.connections.Connection[Any]:
    """An autocommit connection to the server, in no database."""
    return pymysql.connect(
        host=settings["host"],
        port=int(settings["port"]),
        user=settings["user"],
        password=settings["password"],
        connect_timeout=3,
        autocommit=True,
    )


@pytest.fixture(scope="session")
def mariadb_server() -> dict[str, str]:
    """The server's settings, once it has answered (checked once a run)."""
    settings = mariadb_settings()
    try:
        mariadb_connect(settings).close()
    except pymysql.Error as error:
        where = f"{settings['user']}@{settings['host']}:{settings['port']}"
        msg = f"MariaDB is not reachable at {where}: {error}"
        if mariadb_is_required():
            pytest.fail(f"{msg} (BANKACCOUNTS_REQUIRE_MARIADB is set)")
        pytest.skip(msg)
    return settings


@pytest.fixture
def mariadb_env(mariadb_server: dict[str, str]) -> Iterator[dict[str, str]]:
    """Environment for the applications, in a fresh database of its own, dropped after.

    Every application in the one database, as the plugin prefixes its tables with
    the application's name.
    """
    database = f"test_{uuid4().hex[:16]}"
    connection = mariadb_connect(mariadb_server)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        yield {
            "PERSISTENCE_MODULE": "eventsourcing_sqlalchemy",
            "SQLALCHEMY_URL": mariadb_url(mariadb_server, database),
        }
        with connection.cursor() as cursor:
            # Pools of applications the test left open would hold the database
            # (and the server's connections): end them, then drop it.
            cursor.execute(
                "SELECT id FROM information_schema.processlist WHERE db=%s "
                "AND id<>CONNECTION_ID()",
                (database,),
            )
            for (thread_id,) in cursor.fetchall():
                with contextlib.suppress(pymysql.Error):
                    cursor.execute(f"KILL {int(thread_id)}")
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        connection.close()


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    """Environment that gives each application its own SQLite file under tmp_path."""
    return make_sqlite_env(tmp_path / "data", system_application_names())


def system_application_names() -> list[str]:
    """The known applications and every application of the system's definition."""
    from bankaccounts.system.definition import BankAccountSystem

    names = list(APPLICATION_NAMES)
    names.extend(name for name in BankAccountSystem().nodes if name not in names)
    return names


@pytest.fixture(
    params=[
        "popo",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def persistence_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment for each store in turn: POPO, SQLite, PostgreSQL, MariaDB."""
    if request.param == "popo":
        return dict(POPO_ENV)
    env: dict[str, str] = request.getfixturevalue(f"{request.param}_env")
    return env


@pytest.fixture
def cluster(postgres_env: dict[str, str], tmp_path: Path) -> Iterator[Cluster]:
    """A distributed bank in OS processes: tables made by init-db, workers running."""
    from tests.cluster import WORKERS, Cluster

    cluster = Cluster(postgres_env, tmp_path)
    cluster.init_db()
    try:
        for name in WORKERS:
            cluster.add_worker(name)
        yield cluster
    finally:
        cluster.stop_all()

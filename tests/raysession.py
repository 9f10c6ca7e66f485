"""One local Ray for the test session, and stores that live as long as a module.

A local Ray takes about 4 s to start, so the Ray tests share one (two CPUs, as on
these machines), shut down at the end of the session. Their runners are shared by
the tests of a module, each store in a database or schema of its own.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING
from uuid import uuid4

import pytest
from psycopg import sql

from tests.conftest import POPO_ENV, connect, mariadb_connect, mariadb_url

if TYPE_CHECKING:
    from collections.abc import Iterator

ray = pytest.importorskip("ray")

STORES = [
    "popo",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """A local Ray (started once); its address, for processes that join it."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, namespace="bankaccounts")
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


@contextlib.contextmanager
def postgres_schema(settings: dict[str, str]) -> Iterator[dict[str, str]]:
    """The applications' settings in a fresh PostgreSQL schema, dropped after."""
    schema = f"test_ray_{uuid4().hex[:12]}"
    with connect(settings) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            **settings,
            "POSTGRES_SCHEMA": schema,
        }
    finally:
        with connect(settings) as connection:
            connection.execute("SET lock_timeout = '10s'")
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )


@contextlib.contextmanager
def mariadb_database(settings: dict[str, str]) -> Iterator[dict[str, str]]:
    """The applications' settings in a fresh MariaDB database, dropped after."""
    database = f"test_ray_{uuid4().hex[:12]}"
    connection = mariadb_connect(settings)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        yield {
            "PERSISTENCE_MODULE": "eventsourcing_sqlalchemy",
            "SQLALCHEMY_URL": mariadb_url(settings, database),
        }
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        connection.close()


@contextlib.contextmanager
def store_env(request: pytest.FixtureRequest, store: str) -> Iterator[dict[str, str]]:
    """The settings of a fresh store of this kind: popo, postgres or mariadb."""
    if store == "popo":
        yield dict(POPO_ENV)
    elif store == "postgres":
        with postgres_schema(request.getfixturevalue("postgres_server")) as env:
            yield env
    else:
        with mariadb_database(request.getfixturevalue("mariadb_server")) as env:
            yield env

"""Configuration that fails fast and says why, run as an operator would.

A wrong database name, user or port stops each PostgreSQL command within seconds
with libpq's own reason; a bad BANKACCOUNTS_* value is refused in the option's
words (exit 2, no traceback); a misspelled variable is named in a warning; a
password never reaches the log.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from bankaccounts.deploy.preflight import Budget, ServerRoom, pool_limit, process_budget
from bankaccounts.settings import (
    ConfigurationError,
    check_environment,
    unknown_variables,
)
from tests.cluster import free_port
from tests.serverprocess import ROOT

if TYPE_CHECKING:
    from pathlib import Path

#: The issue's bound: a wrong setting is reported within 5 s, not after 30.
FAIL_FAST_SECONDS = 5.0

POSTGRES_COMMANDS = [
    ["worker", "sagas"],
    ["init-db"],
    ["status"],
    ["serve", "--distributed", "--port", "0"],
    ["rebuild-read-model", "--dry-run"],
]


def run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`python -m bankaccounts ARGS` with only env; the result and its seconds."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bankaccounts", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    return result, time.monotonic() - started


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("wrong", "cause"),
    [
        ({"POSTGRES_DBNAME": "no_such_database"}, 'database "no_such_database"'),
        ({"POSTGRES_USER": "no_such_user"}, 'role "no_such_user" does not exist'),
        ({"POSTGRES_PORT": "{free_port}"}, "Connection refused"),
    ],
    ids=["database", "user", "port"],
)
@pytest.mark.parametrize("args", POSTGRES_COMMANDS, ids=lambda args: args[0])
def test_a_wrong_connection_setting_fails_within_seconds_with_its_cause(
    postgres_env: dict[str, str], wrong: dict[str, str], cause: str, args: list[str]
) -> None:
    env = {
        **postgres_env,
        **{k: v.format(free_port=free_port()) for k, v in wrong.items()},
    }
    result, seconds = run(args, env)
    assert result.returncode != 0
    assert seconds < FAIL_FAST_SECONDS, result.stderr
    assert cause in result.stderr
    assert "cannot connect to PostgreSQL at" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "Serving" not in result.stdout


@pytest.mark.postgres
def test_a_password_is_never_logged(postgres_env: dict[str, str]) -> None:
    env = {
        **postgres_env,
        "POSTGRES_PASSWORD": "s3cret-Passw0rd",
        "POSTGRES_DBNAME": "no_such_database",
    }
    result, _ = run(["worker", "sagas", "--log-level", "debug"], env)
    assert result.returncode != 0
    assert "no_such_database" in result.stderr
    assert "s3cret-Passw0rd" not in result.stderr + result.stdout


@pytest.mark.postgres
def test_a_worker_before_init_db_says_to_run_it(postgres_env: dict[str, str]) -> None:
    result, seconds = run(["worker", "interface"], postgres_env)
    assert result.returncode == 1
    assert seconds < FAIL_FAST_SECONDS
    assert "run `bankaccounts init-db` first" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        (
            "BANKACCOUNTS_LOG_LEVEL",
            "verbose",
            "BANKACCOUNTS_LOG_LEVEL (the default of --log-level) must be one of "
            "critical, error, warning, info, debug, not 'verbose'",
        ),
        (
            "BANKACCOUNTS_PORT",
            "eighty",
            "BANKACCOUNTS_PORT (the default of --port) must be a port number from "
            "0 to 65535, not 'eighty'",
        ),
        ("BANKACCOUNTS_PORT", "70000", "not '70000'"),
        ("BANKACCOUNTS_WORKERS", "0", "must be a number of web processes, 1 or more"),
        ("BANKACCOUNTS_DISTRIBUTED", "maybe", "must be yes or no"),
        ("BANKACCOUNTS_LOG_FORMAT", "xml", "must be one of text, json, not 'xml'"),
        ("BANKACCOUNTS_HEALTH_PORT", "-1", "BANKACCOUNTS_HEALTH_PORT"),
        ("POSTGRES_POOL_SIZE", "many", "POSTGRES_POOL_SIZE must be a number"),
    ],
)
def test_a_bad_value_in_the_environment_is_refused_in_the_options_words(
    tmp_path: Path, variable: str, value: str, words: str
) -> None:
    result, _ = run(
        ["serve"], {"BANKACCOUNTS_DATA_DIR": str(tmp_path), variable: value}
    )
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert "Serving" not in result.stdout


def test_a_bad_port_on_the_command_line_is_refused_by_argparse(tmp_path: Path) -> None:
    result, _ = run(
        ["serve", "--port", "http"], {"BANKACCOUNTS_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 2
    assert "must be a port number from 0 to 65535, not 'http'" in result.stderr


def test_a_misspelled_variable_is_named_with_the_nearest_known_one(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result, _ = run(
        ["status"],
        {
            "BANKACCOUNTS_DATA_DIR": str(data),
            "POSTGRES_HOTS": "db.example",
            "BANKACCOUNTS_LOGLEVEL": "debug",
        },
    )
    assert (
        "unknown variable POSTGRES_HOTS (did you mean POSTGRES_HOST?)" in result.stderr
    )
    assert (
        "unknown variable BANKACCOUNTS_LOGLEVEL (did you mean BANKACCOUNTS_LOG_LEVEL?)"
        in result.stderr
    )


def test_postgres_needs_its_settings() -> None:
    with pytest.raises(ConfigurationError) as raised:
        check_environment({"PERSISTENCE_MODULE": "eventsourcing.postgres"})
    assert "set POSTGRES_DBNAME, POSTGRES_HOST, POSTGRES_USER, POSTGRES_PASSWORD" in (
        str(raised.value)
    )


def test_the_environments_values_are_parsed() -> None:
    values = check_environment(
        {
            "BANKACCOUNTS_PORT": "8080",
            "BANKACCOUNTS_LOG_LEVEL": "DEBUG",
            "BANKACCOUNTS_DISTRIBUTED": "yes",
            "HOME": "/root",
        }
    )
    assert values == {
        "BANKACCOUNTS_PORT": 8080,
        "BANKACCOUNTS_LOG_LEVEL": "debug",
        "BANKACCOUNTS_DISTRIBUTED": True,
    }


def test_an_applications_own_postgres_setting_is_checked_too() -> None:
    """The library reads ACCOUNTS_POSTGRES_POOL_SIZE before POSTGRES_POOL_SIZE."""
    assert check_environment({"ACCOUNTS_POSTGRES_POOL_SIZE": "3"}) == {
        "ACCOUNTS_POSTGRES_POOL_SIZE": 3
    }
    with pytest.raises(ConfigurationError) as raised:
        check_environment({"INTERFACE_POSTGRES_MAX_OVERFLOW": "lots"})
    assert str(raised.value) == (
        "INTERFACE_POSTGRES_MAX_OVERFLOW must be a number of connections, 0 or more, "
        "not 'lots'"
    )


def test_only_the_two_families_are_checked_for_spelling() -> None:
    assert (
        unknown_variables({"HOME": "/", "PGAPPNAME": "x", "POSTGRES_HOST": "h"}) == []
    )
    assert unknown_variables({"BANKACCOUNTS_ZZZ": "1"}) == [
        "unknown variable BANKACCOUNTS_ZZZ; it is ignored"
    ]


def test_the_budget_counts_each_pool_at_its_largest() -> None:
    env = {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "4"}
    assert pool_limit(env, "Commands") == 5
    assert pool_limit({**env, "COMMANDS_POSTGRES_MAX_OVERFLOW": "9"}, "Commands") == 10
    assert pool_limit({}, "Commands") == 15  # the library's defaults: 5 + 10
    budget = process_budget(
        env, ["Sagas", "Commands"], own_connections=[("lock", 1)], processes=2
    )
    assert budget.total == 22
    assert budget.describe() == "Sagas pool 10 + Commands pool 10 + lock 2 = 22"
    assert ServerRoom(max_connections=100, reserved=3, in_use=10).free == 87
    assert Budget().total == 0


@pytest.mark.postgres
def test_a_process_warns_when_its_connections_may_not_fit(
    postgres_env: dict[str, str],
) -> None:
    """Ninety uvicorn workers of 20 connections each cannot fit in any test server."""
    from bankaccounts.deploy.preflight import check_database

    budget = process_budget(
        {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "4"},
        ["Commands", "Accounts", "Interface", "Sagas"],
        processes=90,
    )
    with pytest.MonkeyPatch.context() as patch:
        warnings: list[str] = []
        patch.setattr(
            "bankaccounts.deploy.preflight.logger.warning",
            lambda message, *args: warnings.append(message % args),
        )
        room = check_database(postgres_env, budget=budget)
    assert room.max_connections > 0
    assert len(warnings) == 1
    assert "this process may open up to 1800 connections" in warnings[0]
    assert f"max_connections ({room.max_connections})" in warnings[0]


def test_an_empty_value_counts_as_unset() -> None:
    assert check_environment({"BANKACCOUNTS_PORT": "", "POSTGRES_PORT": " "}) == {}

"""The environment's settings, checked before a command does anything.

Each BANKACCOUNTS_* variable is the default of a command-line option; a bad value is
refused in the option's own words (exit 2), not by a traceback. POSTGRES_* variables
are the library's (eventsourcing.postgres): those it reads as numbers are checked
here too, and the ones it needs must be set. A variable of either family that nobody
reads is most likely misspelled, so it is named in a warning, with the nearest known
name.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bankaccounts.deploy.bootstrap import APPLICATION_NAMES, RUNNERS, USERS_NAME
from bankaccounts.logs import LOG_FORMATS, LOG_LEVELS
from bankaccounts.users import MAX_TOKEN_DAYS, TOKEN_DAYS_VARIABLE, token_days

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

PREFIXES = ("BANKACCOUNTS_", "POSTGRES_")
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "t", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "n", "f", "off"})


class ConfigurationError(ValueError):
    """A setting that cannot be used; the message says which and why."""


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError
    return value


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        word = text.strip().lower()
        if word not in choices:
            raise ValueError
        return word

    return parse


def _text(text: str) -> str:
    return text


@dataclass(frozen=True)
class Setting:
    """An environment variable: what it sets, and what values it takes."""

    variable: str
    expected: str  # "a port number from 0 to 65535"
    parse: Callable[[str], object] = _text
    option: str | None = None  # the option whose default it is


#: Every variable the program reads, BANKACCOUNTS_* first.
SETTINGS: tuple[Setting, ...] = (
    Setting("BANKACCOUNTS_HOST", "a host name or address", option="--host"),
    Setting(
        "BANKACCOUNTS_PORT", "a port number from 0 to 65535", _port, option="--port"
    ),
    Setting("BANKACCOUNTS_DATA_DIR", "a directory", option="--data-dir"),
    Setting(
        "BANKACCOUNTS_RUNNER",
        f"one of {', '.join(RUNNERS)}",
        _choice(*RUNNERS),
        "--runner",
    ),
    Setting(
        "BANKACCOUNTS_ALLOWED_HOSTS",
        "comma-separated host names",
        option="--allowed-hosts",
    ),
    Setting(
        "BANKACCOUNTS_LOG_LEVEL",
        f"one of {', '.join(LOG_LEVELS)}",
        _choice(*LOG_LEVELS),
        "--log-level",
    ),
    Setting(
        "BANKACCOUNTS_LOG_FORMAT",
        f"one of {', '.join(LOG_FORMATS)}",
        _choice(*LOG_FORMATS),
        "--log-format",
    ),
    Setting(
        "BANKACCOUNTS_DISTRIBUTED",
        "yes or no (1, true, on / 0, false, off)",
        _boolean,
        "--distributed",
    ),
    Setting(
        "BANKACCOUNTS_WORKERS",
        "a number of web processes, 1 or more",
        _positive_int,
        "--workers",
    ),
    Setting(
        "BANKACCOUNTS_HEALTH_PORT",
        "a port number from 0 to 65535",
        _port,
        "--health-port",
    ),
    Setting(
        "BANKACCOUNTS_HEALTH_HOST",
        "a host name or address to listen on",
        option="--health-host",
    ),
    Setting(
        "BANKACCOUNTS_MAX_BACKLOG",
        "a number of commands, 0 or more (0: no bound)",
        _non_negative_int,
        "--max-backlog",
    ),
    Setting(
        "BANKACCOUNTS_CATCH_UP_INTERVAL",
        "seconds above 0",
        _positive_float,
    ),
    Setting(
        "BANKACCOUNTS_REGISTRATION",
        "open or closed",
        _choice("open", "closed"),
        "--registration",
    ),
    Setting(
        TOKEN_DAYS_VARIABLE,
        f"a number of days above 0 and at most {MAX_TOKEN_DAYS}",
        token_days,
    ),
    # The test suite's own switches (see DEVELOPERS.md).
    *(
        Setting(f"BANKACCOUNTS_{name}", "anything")
        for name in (
            "CHROMIUM",
            "FAULT_OPERATIONS",
            "FAULT_SEED",
            "FUZZ_SECONDS",
            "FUZZ_SEED",
            "REQUIRE_BROWSER",
            "REQUIRE_MARIADB",
            "REQUIRE_POSTGRES",
            "UPDATE_SCREENSHOT",
        )
    ),
    # The library's (eventsourcing.postgres.PostgresFactory).
    Setting("POSTGRES_DBNAME", "a database name"),
    Setting("POSTGRES_HOST", "a host name, address or socket directory"),
    Setting("POSTGRES_PORT", "a port number from 0 to 65535", _port),
    Setting("POSTGRES_USER", "a user name"),
    Setting("POSTGRES_PASSWORD", "a password"),
    Setting("POSTGRES_GET_PASSWORD_TOPIC", "a function's topic (module:name)"),
    Setting("POSTGRES_CONNECT_TIMEOUT", "whole seconds above 0", _positive_int),
    Setting("POSTGRES_CONN_MAX_AGE", "seconds, 0 or more", _non_negative_float),
    Setting("POSTGRES_PRE_PING", "yes or no", _boolean),
    Setting("POSTGRES_MAX_WAITING", "a number, 0 or more", _non_negative_int),
    Setting("POSTGRES_LOCK_TIMEOUT", "whole seconds, 0 or more", _non_negative_int),
    Setting(
        "POSTGRES_POOL_SIZE", "a number of connections, 0 or more", _non_negative_int
    ),
    Setting(
        "POSTGRES_MAX_OVERFLOW", "a number of connections, 0 or more", _non_negative_int
    ),
    Setting(
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
        "seconds, 0 or more",
        _non_negative_float,
    ),
    Setting("POSTGRES_SCHEMA", "a schema name"),
    Setting("POSTGRES_ENABLE_DB_FUNCTIONS", "yes or no", _boolean),
)

BY_VARIABLE = {setting.variable: setting for setting in SETTINGS}


def setting_of(name: str) -> Setting | None:
    """The setting a variable sets, also an application's own POSTGRES_* one.

    The library reads ACCOUNTS_POSTGRES_POOL_SIZE before POSTGRES_POOL_SIZE.
    """
    setting = BY_VARIABLE.get(name)
    if setting is not None:
        return setting
    application, _, rest = name.partition("_")
    names = (*APPLICATION_NAMES, USERS_NAME)
    if application.capitalize() in names and rest.startswith("POSTGRES_"):
        return BY_VARIABLE.get(rest)
    return None


#: What a PostgreSQL deployment must set (the library refuses to start without).
REQUIRED_POSTGRES = ("POSTGRES_DBNAME", "POSTGRES_HOST", "POSTGRES_USER")


def check_environment(environ: Mapping[str, str]) -> dict[str, object]:
    """The values of the known variables that are set, parsed.

    Raises ConfigurationError naming every bad one. An empty value counts as unset
    (`export BANKACCOUNTS_PORT=` leaves the default), as the library does.
    """
    values: dict[str, object] = {}
    errors: list[str] = []
    for name, text in environ.items():
        setting = setting_of(name)
        if setting is None or not text.strip():
            continue
        try:
            values[name] = setting.parse(text.strip())
        except ValueError:
            default_of = (
                f" (the default of {setting.option})"
                if setting.option and name == setting.variable
                else ""
            )
            errors.append(
                f"{name}{default_of} must be {setting.expected}, not {text!r}"
            )
    if environ.get("PERSISTENCE_MODULE") == "eventsourcing.postgres":
        missing = [name for name in REQUIRED_POSTGRES if not environ.get(name)]
        if "POSTGRES_PASSWORD" not in environ and not environ.get(
            "POSTGRES_GET_PASSWORD_TOPIC"
        ):
            missing.append("POSTGRES_PASSWORD (empty if the server needs none)")
        if missing:
            errors.append(
                "PERSISTENCE_MODULE is eventsourcing.postgres, so set "
                + ", ".join(missing)
            )
    if errors:
        raise ConfigurationError("; ".join(errors))
    return values


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each BANKACCOUNTS_* or POSTGRES_* variable nobody reads."""
    warnings = []
    for name in sorted(environ):
        if not name.startswith(PREFIXES) or name in BY_VARIABLE:
            continue
        nearest = nearest_variable(name)
        hint = f" (did you mean {nearest}?)" if nearest else ""
        warnings.append(f"unknown variable {name}{hint}; it is ignored")
    return warnings


def nearest_variable(name: str) -> str | None:
    """The known variable of the same family most like name, if one is close."""
    prefix, _, rest = name.partition("_")
    family = {
        known.partition("_")[2]: known
        for known in BY_VARIABLE
        if known.startswith(f"{prefix}_")
    }
    # The part after the prefix: every name of a family shares the prefix.
    close = difflib.get_close_matches(rest, family, n=1, cutoff=0.6)
    if close:
        return family[close[0]]
    longer = [suffix for suffix in family if rest and suffix.startswith(rest)]
    return family[longer[0]] if len(longer) == 1 else None

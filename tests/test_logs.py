"""Logs an operator can use: a line per event with a timestamp, in text or JSON.

The formatters are tested on their own; then real processes (the embedded server,
a worker) write nothing but JSON lines when told to, uvicorn's own lines included.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
from typing import TYPE_CHECKING, Any

import pytest

from bankaccounts import logs
from bankaccounts.logs import JSONFormatter, TextFormatter, redact
from tests.cluster import Cluster, Process
from tests.serverprocess import ServerProcess
from tests.waiting import wait_for

if TYPE_CHECKING:
    from pathlib import Path

ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def record(message: str, *args: object, **extra: Any) -> logging.LogRecord:
    """A log record as a logger would make it."""
    made = logging.getLogger("bankaccounts.test").makeRecord(
        "bankaccounts.test", logging.INFO, __file__, 1, message, args, None
    )
    made.__dict__.update(extra)
    return made


def failed_record() -> logging.LogRecord:
    """An ERROR record with the exception being handled."""
    try:
        raise KeyError("missing")
    except KeyError:
        made = logging.getLogger("bankaccounts.test").makeRecord(
            "bankaccounts.test",
            logging.ERROR,
            __file__,
            1,
            "it failed",
            (),
            sys.exc_info(),
        )
    return made


def test_a_json_line_holds_the_time_level_logger_process_and_message() -> None:
    logs.set_role("worker sagas")
    line = JSONFormatter().format(record("at %d", 12, positions={"Commands": 12}))
    data = json.loads(line)
    assert "\n" not in line
    assert ISO_TIME.match(data["time"])
    assert data["level"] == "info"
    assert data["logger"] == "bankaccounts.test"
    assert data["process"]["role"] == "worker sagas"
    assert isinstance(data["process"]["pid"], int)
    assert data["message"] == "at 12"
    assert data["positions"] == {"Commands": 12}
    assert "request_id" not in data


def test_the_request_id_and_bound_fields_are_in_each_line_while_set() -> None:
    token = logs.request_id.set("abc123")
    logs.bind(application="Sagas")
    try:
        data = json.loads(JSONFormatter().format(record("hello")))
        text = TextFormatter().format(record("hello"))
    finally:
        logs.request_id.reset(token)
        logs.unbind("application")
    assert data["request_id"] == "abc123"
    assert data["application"] == "Sagas"
    assert text.endswith("hello application=Sagas request_id=abc123")
    assert "request_id" not in json.loads(JSONFormatter().format(record("later")))


def test_a_traceback_is_a_field_of_the_json_line() -> None:
    line = JSONFormatter().format(failed_record())
    data = json.loads(line)
    assert line.count("\n") == 0
    assert data["level"] == "error"
    assert data["exception"].startswith("Traceback (most recent call last):")
    assert data["exception"].endswith("KeyError: 'missing'")


def test_a_text_line_starts_with_the_time_and_says_who_logged() -> None:
    logs.set_role("web")
    line = TextFormatter().format(record("listening", client="127.0.0.1:5"))
    assert ISO_TIME.match(line)
    assert " INFO bankaccounts.test [web " in line
    assert line.endswith("] listening client=127.0.0.1:5")
    # The traceback follows its line, indented.
    lines = TextFormatter().format(failed_record()).splitlines()
    assert lines[0].endswith("it failed")
    assert all(later.startswith("    ") for later in lines[1:])
    assert lines[-1] == "    KeyError: 'missing'"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("host=db password=hunter22 user=x", "host=db password=*** user=x"),
        ("password='a b c' dbname=x", "password=*** dbname=x"),
        (
            "postgresql://bank:hunter22@db:5432/bank",
            "postgresql://bank:***@db:5432/bank",
        ),
    ],
)
def test_passwords_are_redacted(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_the_password_of_the_environment_is_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTGRES_PASSWORD", "Tr0ub4dor")
    line = JSONFormatter().format(record("could not log in as %s", "Tr0ub4dor"))
    assert "Tr0ub4dor" not in line


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of text as JSON (failing on a line that is not)."""
    parsed = []
    for line in text.splitlines():
        if line.startswith("----- run"):  # the test cluster's own marker
            continue
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    return parsed


def test_the_server_writes_only_json_lines_uvicorns_included(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data",
        tmp_path,
        args=["--log-format", "json", "--log-level", "info"],
    )
    server.start()
    try:
        status, _ = server.request("POST", "/api/accounts", {"name": "Alice"})
        assert status == 201
        wait_for(lambda: "POST /api/accounts" in server.output(), 10, "access line")
    finally:
        assert server.stop() == 0
    lines = json_lines(server.output())
    loggers = {line["logger"] for line in lines}
    assert {"bankaccounts", "uvicorn.error", "bankaccounts.access"} <= loggers
    assert all(ISO_TIME.match(line["time"]) for line in lines)
    assert all(line["process"]["role"] == "server" for line in lines)
    access = next(line for line in lines if "POST /api/accounts" in line["message"])
    assert access["request_id"]
    assert any(line["message"].startswith("Serving http://") for line in lines)


@pytest.mark.postgres
def test_a_worker_writes_json_lines_naming_its_application(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    cluster = Cluster(postgres_env, tmp_path)
    cluster.init_db()
    worker = Process(
        "interface",
        ["worker", "interface", "--log-format", "json"],
        {**cluster.env, "PGAPPNAME": f"{cluster.tag}-interface"},
        tmp_path / "interface.log",
    )
    worker.start()
    try:
        wait_for(lambda: "Interface: started" in worker.text(), 30, "started")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
    finally:
        worker.stop()
    lines = json_lines(worker.text())
    assert lines
    for line in lines:
        assert line["process"]["role"] == "worker interface"
        assert line["application"] == "Interface"
    assert any(line["message"] == "Interface: stopped" for line in lines)


def test_a_text_line_leaves_to_json_what_its_message_says_already() -> None:
    line = TextFormatter().format(
        record(
            "processed %d events; Commands at 12",
            40,
            events=40,
            positions={"Commands": 12},
            client="10.0.0.7:5000",
        )
    )
    assert line.endswith("processed 40 events; Commands at 12 client=10.0.0.7:5000")
    data = json.loads(
        JSONFormatter().format(record("processed", events=40, positions={"C": 12}))
    )
    assert data["events"] == 40
    assert data["positions"] == {"C": 12}

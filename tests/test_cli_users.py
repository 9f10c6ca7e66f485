"""`bankaccounts users create|list|set-role|revoke-tokens`, and init-db's users tables.

Most commands run in this process through cli.main (the same parser and code as
the console script); one runs as the real console entry point, with the password
piped to its stdin.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from bankaccounts import cli
from bankaccounts.deploy.bootstrap import system_env, users_env
from bankaccounts.users import Users

if TYPE_CHECKING:
    from pathlib import Path

PASSWORD = "correct horse battery staple"


class Terminal(io.StringIO):
    """A stdin that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_store_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The data directory decides, whatever the caller's environment says."""
    for name in list(os.environ):
        if name == "PERSISTENCE_MODULE" or name.startswith(
            ("BANKACCOUNTS_", "POSTGRES_", "SQLALCHEMY_")
        ):
            monkeypatch.delenv(name)


def run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    """cli.main(argv) with stdin; the exit status, stdout and stderr."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_users_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    status, out, _ = run(
        monkeypatch,
        capsys,
        "users",
        "create",
        "Boss",
        "--role",
        "staff",
        *data,
        stdin=f"{PASSWORD}\n",
    )
    assert status == 0
    assert out.startswith("created staff boss (")
    status, out, _ = run(
        monkeypatch, capsys, "users", "create", "carol", *data, stdin=f"{PASSWORD}\r\n"
    )
    assert (status, out.split()[:3]) == (0, ["created", "customer", "carol"])

    status, _, err = run(
        monkeypatch, capsys, "users", "create", "BOSS", *data, stdin=f"{PASSWORD}\n"
    )
    assert status == 1
    assert "'boss' is taken" in err
    status, _, err = run(
        monkeypatch, capsys, "users", "create", "no!", *data, stdin=f"{PASSWORD}\n"
    )
    assert status == 2
    assert "Username must be 3 to 32 characters" in err
    status, _, err = run(
        monkeypatch, capsys, "users", "create", "dave", *data, stdin="short\n"
    )
    assert status == 2
    assert "Password must be 8 to 1024 characters" in err
    status, _, err = run(monkeypatch, capsys, "users", "create", "dave", *data)
    assert status == 2
    assert "no password" in err

    status, out, _ = run(monkeypatch, capsys, "users", "list", *data)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["USERNAME", "ROLE", "ID"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["boss", "staff"],
        ["carol", "customer"],
    ]
    status, out, _ = run(monkeypatch, capsys, "users", "list", "--json", *data)
    listed = json.loads(out)
    assert [(u["username"], u["role"]) for u in listed] == [
        ("boss", "staff"),
        ("carol", "customer"),
    ]

    status, out, _ = run(
        monkeypatch, capsys, "users", "set-role", "Carol", "staff", *data
    )
    assert (status, out) == (0, "carol is staff\n")
    status, _, err = run(
        monkeypatch, capsys, "users", "set-role", "nobody", "staff", *data
    )
    assert status == 1
    assert "No user is called 'nobody'" in err
    with pytest.raises(SystemExit) as exited:
        run(monkeypatch, capsys, "users", "set-role", "carol", "admin", *data)
    assert exited.value.code == 2

    # The server's Users, running while the operator revokes.
    server = Users(env=users_env(system_env(tmp_path / "data")))
    try:
        issued = server.sign_in("carol", PASSWORD, "127.0.0.1")
        assert server.authenticate(issued.token) is not None
        status, out, _ = run(
            monkeypatch, capsys, "users", "revoke-tokens", "carol", *data
        )
        assert (status, out) == (0, "revoked 1 token of carol\n")
        assert server.authenticate(issued.token) is None
    finally:
        server.close()
    status, out, _ = run(monkeypatch, capsys, "users", "revoke-tokens", "carol", *data)
    assert (status, out) == (0, "revoked 0 tokens of carol\n")
    status, _, err = run(monkeypatch, capsys, "users", "revoke-tokens", "nobody", *data)
    assert status == 1


def test_password_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import getpass

    typed: list[str] = []

    def prompt(text: str = "Password: ") -> str:
        typed.append(text)
        return answers.pop(0)

    monkeypatch.setattr(getpass, "getpass", prompt)
    monkeypatch.setattr(sys, "stdin", Terminal())
    data = ["--data-dir", str(tmp_path / "data")]
    answers = [PASSWORD, "something else"]
    assert cli.main(["users", "create", "erin", *data]) == 2
    assert "the passwords typed differ" in capsys.readouterr().err
    answers = [PASSWORD, PASSWORD]
    assert cli.main(["users", "create", "erin", *data]) == 0
    assert typed == ["Password: ", "Repeat the password: "] * 2


def test_console_script_reads_the_password_from_stdin(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PERSISTENCE_MODULE" and not k.startswith("BANKACCOUNTS_")
    }
    env["BANKACCOUNTS_DATA_DIR"] = str(tmp_path / "data")
    created = subprocess.run(
        [sys.executable, "-m", "bankaccounts", "users", "create", "frank"],
        input=f"{PASSWORD}\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    assert PASSWORD not in created.stdout + created.stderr
    assert (tmp_path / "data" / "users.sqlite").exists()


@pytest.mark.postgres
def test_users_and_init_db_on_postgres(
    postgres_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in postgres_env.items():
        monkeypatch.setenv(name, value)
    status, out, err = run(monkeypatch, capsys, "init-db")
    assert status == 0, err
    assert "Users: tables ready" in out
    from tests.conftest import connect

    with connect(postgres_env) as connection:
        for table in ("users_events", "users_snapshots"):
            row = connection.execute(
                "SELECT to_regclass(%s)",
                (f"{postgres_env['POSTGRES_SCHEMA']}.{table}",),
            ).fetchone()
            assert row is not None
            assert row[0] is not None, table
    status, out, err = run(
        monkeypatch,
        capsys,
        "users",
        "create",
        "grace",
        "--role",
        "staff",
        stdin=f"{PASSWORD}\n",
    )
    assert status == 0, err
    status, out, _ = run(monkeypatch, capsys, "users", "list")
    assert out.splitlines()[1].split()[:2] == ["grace", "staff"]


@pytest.mark.postgres
def test_users_on_an_unreachable_postgres(
    postgres_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in postgres_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POSTGRES_DBNAME", "no_such_database_here")
    status, _, err = run(monkeypatch, capsys, "users", "list")
    assert status == 1
    assert "no_such_database_here" in err


def test_serve_options(monkeypatch: pytest.MonkeyPatch) -> None:
    args = cli.build_parser().parse_args(["serve"])
    assert args.registration == "open"
    args = cli.build_parser().parse_args(["serve", "--registration", "closed"])
    assert args.registration == "closed"
    args = cli.build_parser({"BANKACCOUNTS_REGISTRATION": "closed"}).parse_args(
        ["run-all"]
    )
    assert args.registration == "closed"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["serve", "--registration", "ajar"])

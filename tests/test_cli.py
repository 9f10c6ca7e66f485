"""The server's command line, run as a user would: `python bankaccounts/main.py ...`.

One server per data directory (a lock the kernel releases even on SIGKILL), a busy
port refused before anything says "Serving", and the host names the server answers.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.cluster import Cluster, free_port
from tests.serverprocess import ROOT, ServerProcess
from tests.waiting import wait_for

if TYPE_CHECKING:
    from pathlib import Path

EXIT_TIMEOUT = 30.0


def status_for_host(port: int, host_header: str) -> int:
    """GET /openapi.json (open, behind the host guard) with this Host; the status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/openapi.json", headers={"Host": host_header})
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_second_server_on_the_same_data_dir_refuses_to_start(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    first = ServerProcess(data_dir, tmp_path / "first", args=["--log-level", "warning"])
    second = ServerProcess(
        data_dir, tmp_path / "second", args=["--log-level", "warning"]
    )
    for server in (first, second):
        server.logs_dir.mkdir()
    first.start()
    try:
        second.launch()
        assert second.wait(EXIT_TIMEOUT) != 0
        output = second.output()
        assert f"the data directory {data_dir} is in use" in output
        assert f"pid {first.popen.pid if first.popen else '?'}" in output
        assert "Serving" not in output
        assert "Traceback" not in output
        assert first.is_running()

        # The kernel lets go of a killed server's lock: the next one starts.
        first.kill()
        second.start()
        assert f"Serving {second.url}" in second.output()
        assert second.stop() == 0
        assert "Traceback" not in second.output()
    finally:
        first.stop()
        second.stop()


def test_a_busy_port_is_refused_before_serving(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerProcess(tmp_path / "data", tmp_path, port=port)
        server.launch()
        status = server.wait(EXIT_TIMEOUT)
    output = server.output()
    assert status != 0
    assert f"cannot listen on 127.0.0.1:{port}" in output
    assert "Address already in use" in output
    assert "Serving" not in output
    assert "Traceback" not in output


def test_the_server_answers_the_allowed_hosts_only(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data",
        tmp_path,
        args=["--log-level", "warning", "--allowed-hosts", "bank.example, *.bank.test"],
        env={"BANKACCOUNTS_ALLOWED_HOSTS": "ignored.example"},
    )
    server.start()
    try:
        port = server.port
        for allowed in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            "bank.example",
            f"bank.example:{port}",
            "eu.bank.test",
        ):
            assert status_for_host(port, allowed) == 200, allowed
        for refused in ("rebind.evil.example", "ignored.example", "bank.test.evil"):
            assert status_for_host(port, refused) == 400, refused
    finally:
        server.stop()


def test_the_allowed_hosts_default_to_the_environment(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data",
        tmp_path,
        args=["--log-level", "warning"],
        env={"BANKACCOUNTS_ALLOWED_HOSTS": "bank.example"},
    )
    server.start()
    try:
        assert status_for_host(server.port, "bank.example") == 200
        assert status_for_host(server.port, "rebind.evil.example") == 400
    finally:
        server.stop()


def test_a_bad_catch_up_interval_is_a_clear_error(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data", tmp_path, env={"BANKACCOUNTS_CATCH_UP_INTERVAL": "soon"}
    )
    server.launch()
    assert server.wait(EXIT_TIMEOUT) == 2
    output = server.output()
    assert "BANKACCOUNTS_CATCH_UP_INTERVAL must be seconds above 0" in output
    assert "Serving" not in output
    assert "Traceback" not in output


@pytest.mark.postgres
def test_distributed_web_workers_answer_the_allowed_hosts(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    cluster = Cluster(postgres_env, tmp_path)
    cluster.init_db()
    port = free_port()
    env = {**cluster.env, "PGAPPNAME": f"{cluster.tag}-web"}
    env.pop("BANKACCOUNTS_ALLOWED_HOSTS", None)
    with (tmp_path / "web.log").open("wb") as log:
        web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bankaccounts",
                "serve",
                "--distributed",
                "--workers",
                "2",
                "--port",
                str(port),
                "--allowed-hosts",
                "bank.example",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def answers() -> bool:
            assert web.poll() is None, (tmp_path / "web.log").read_text()
            try:
                return status_for_host(port, "bank.example") == 200
            except OSError:
                return False

        wait_for(answers, 30, "the web process did not answer for bank.example")
        assert status_for_host(port, f"127.0.0.1:{port}") == 200
        assert status_for_host(port, "rebind.evil.example") == 400
    finally:
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(30)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait(10)


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["run-all"],
        ["init-db"],
        ["worker", "sagas"],
        ["status"],
        ["rebuild-read-model"],
    ],
)
def test_every_command_takes_the_log_options_with_the_environments_defaults(
    command: list[str],
) -> None:
    from bankaccounts.cli import build_parser

    parser = build_parser(
        {"BANKACCOUNTS_LOG_FORMAT": "json", "BANKACCOUNTS_LOG_LEVEL": "debug"}
    )
    args = parser.parse_args(command)
    assert (args.log_format, args.log_level) == ("json", "debug")
    args = parser.parse_args([*command, "--log-format", "text"])
    assert args.log_format == "text"


def test_the_worker_takes_its_health_port_and_host_from_the_environment() -> None:
    from bankaccounts.cli import build_parser

    parser = build_parser(
        {"BANKACCOUNTS_HEALTH_PORT": 9101, "BANKACCOUNTS_HEALTH_HOST": "0.0.0.0"}
    )
    args = parser.parse_args(["worker", "interface"])
    assert (args.health_port, args.health_host) == (9101, "0.0.0.0")
    assert build_parser().parse_args(["worker", "sagas"]).health_port is None

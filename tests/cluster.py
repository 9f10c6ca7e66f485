"""A distributed bank in real OS processes, for the scale-out tests.

Workers and web processes are `python -m bankaccounts ...` subprocesses on one
PostgreSQL schema. Each process's connections carry an application name starting with
the cluster's tag (libpq's PGAPPNAME), so a test can terminate exactly their
connections with pg_terminate_backend.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import psycopg

from bankaccounts.deploy.worker import WORKER_NAMES
from tests.signin import STAFF, Session, sign_in
from tests.waiting import wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from tests.tcpproxy import TCPProxy

START_TIMEOUT = 30.0
WORKERS = ("sagas", "accounts", "interface")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """One `python -m bankaccounts ...` subprocess, its log in a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name = name
        self.args = args
        # A worker's kind (sagas, accounts, interface), or None for a web process.
        self.worker = args[1] if args[0] == "worker" else None
        self.env = env
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.url = ""  # a web process's address

    def start(self) -> None:
        """Starts the process (appending to its log)."""
        self.runs += 1
        with self.log.open("ab") as out:
            out.write(f"----- run {self.runs}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "bankaccounts", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        """Everything the process has logged."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def last_run(self) -> str:
        """What the current run has logged."""
        return self.text().rsplit(f"----- run {self.runs}\n", 1)[-1]

    def is_running(self) -> bool:
        """True while the process lives."""
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Sends a signal."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout: float = 20.0) -> int:
        """Waits for the process to end; returns its exit status."""
        assert self.popen is not None
        return self.popen.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end in time."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


class Cluster:
    """Workers and web processes of one bank on one PostgreSQL schema.

    With a proxy, the workers and web processes reach PostgreSQL through it (the
    command-line runs and the test's own reads do not), so it can cut them off.
    """

    def __init__(
        self, env: dict[str, str], logs_dir: Path, proxy: TCPProxy | None = None
    ) -> None:
        self.tag = f"bankaccounts-test-{uuid4().hex[:8]}"
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.process_env = dict(self.env)
        if proxy is not None:
            self.process_env["POSTGRES_PORT"] = str(proxy.port)
        self.proxy = proxy
        self.logs_dir = logs_dir
        self.processes: dict[str, Process] = {}
        self.terminated = 0
        self._staff: Session | None = None

    def cli(
        self, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Runs `python -m bankaccounts ARGS` to the end."""
        return subprocess.run(
            [sys.executable, "-m", "bankaccounts", *args],
            env={**self.env, "PGAPPNAME": f"{self.tag}-cli"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def init_db(self) -> None:
        """Creates the tables."""
        result = self.cli("init-db")
        assert result.returncode == 0, result.stderr

    def add_worker(
        self, name: str, instance: int = 1, options: tuple[str, ...] = ()
    ) -> Process:
        """Starts a worker; waits until it follows its upstreams or waits its turn.

        Instance 1 is named after its kind ("sagas"), a second one "sagas-2".
        """
        key = name if instance == 1 else f"{name}-{instance}"
        process = Process(
            key,
            ["worker", name, "--log-level", "info", *options],
            {**self.process_env, "PGAPPNAME": f"{self.tag}-{key}"},
            self.logs_dir / f"{key}.log",
        )
        self.processes[key] = process
        self.start(key)
        return process

    def add_web(self, name: str, workers: int = 1) -> str:
        """Starts a distributed web process; returns its URL once it answers."""
        port = free_port()
        process = Process(
            name,
            [
                "serve",
                "--distributed",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "info" if workers > 1 else "warning",
            ],
            {**self.process_env, "PGAPPNAME": f"{self.tag}-{name}"},
            self.logs_dir / f"{name}.log",
        )
        process.url = f"http://127.0.0.1:{port}"
        self.processes[name] = process
        self.start(name)
        return process.url

    def signed_in(self, url: str) -> Session:
        """The staff user at a web process (signed up on the first one asked)."""
        if self._staff is None:
            self._staff = sign_in(url, STAFF)
            assert self._staff.user["role"] == "staff", self._staff.user
        return self._staff.at(url)

    def sign_in(self, username: str, url: str | None = None) -> Session:
        """Another user (a customer, once the staff user exists) at a web process."""
        if url is None:
            url = next(p.url for p in self.processes.values() if p.url)
        return sign_in(url, username)

    def start(self, name: str) -> None:
        """Starts (or restarts) a process and waits until it is ready."""
        process = self.processes[name]
        process.start()
        if process.worker is not None:
            label = WORKER_NAMES[process.worker]
            # It follows, or waits while another worker of its kind holds the lock.
            ready = (f"{label}: started", f"{label}: waiting for the other")
            try:
                wait_for(
                    lambda: (
                        any(text in process.last_run() for text in ready)
                        or not process.is_running()
                    ),
                    START_TIMEOUT,
                    f"{name} did not start",
                )
            except AssertionError as error:
                raise AssertionError(f"{error}:\n{process.last_run()}") from None
        else:
            url = process.url
            wait_for(
                lambda: answers(f"{url}/readyz") or not process.is_running(),
                START_TIMEOUT,
                f"{name} did not answer",
            )
        assert process.is_running(), process.last_run()

    def kill(self, name: str) -> None:
        """SIGKILL: the process dies at once, whatever it was doing."""
        process = self.processes[name]
        process.signal(signal.SIGKILL)
        process.wait()

    def terminate_connections(self, names: tuple[str, ...] = WORKERS) -> int:
        """pg_terminate_backend on the named processes' connections; counts them."""
        patterns = [f"{self.tag}-{name}" for name in names]
        with connect(self.env) as connection:
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = ANY(%s)",
                (patterns,),
            ).fetchall()
        self.terminated += 1
        return len(rows)

    def stop_all(self) -> None:
        """Stops every process."""
        for process in self.processes.values():
            process.stop()


def connect(env: dict[str, str]) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to the cluster's database."""
    return psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env.get("POSTGRES_PASSWORD", ""),
        autocommit=True,
        application_name="bankaccounts-test-observer",
    )


def answers(url: str) -> bool:
    """True if GET url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def request(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """An HTTP request with a JSON body; returns the status and the JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class FeedRecorder:
    """A websocket client of one web process that records every feed message.

    Like the page, it reconnects with ?after=<last position> when the connection
    drops, so the positions it has seen must end up exactly those in the feed table
    (those of the feed its user may see). It signs each handshake with the user's
    token; a handshake refused with a 5xx (the database cut off) is tried again, one
    refused otherwise ends the recorder, its answer kept in `refused`.
    """

    def __init__(self, session: Session) -> None:
        self.url = session.ws_url
        self.headers = session.headers
        self.refused: str | None = None
        self.messages: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.connections = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Connects (in a thread of its own) and waits for the first ready message."""
        self._thread.start()
        assert self.ready.wait(START_TIMEOUT), f"no ready message from {self.url}"
        assert self.refused is None, f"{self.url}: {self.refused}"

    def stop(self) -> None:
        """Disconnects."""
        self._stopping.set()
        self._thread.join(10)

    @property
    def positions(self) -> list[int]:
        """The positions received, in the order received."""
        return [m["position"] for m in list(self.messages)]

    def _run(self) -> None:
        asyncio.run(self._follow())

    async def _follow(self) -> None:
        import websockets
        from websockets.exceptions import InvalidStatus

        while not self._stopping.is_set():
            after = self.messages[-1]["position"] if self.messages else 0
            try:
                async with websockets.connect(
                    f"{self.url}?after={after}", additional_headers=self.headers
                ) as ws:
                    self.connections += 1
                    while not self._stopping.is_set():
                        try:
                            text = await asyncio.wait_for(ws.recv(), 0.2)
                        except TimeoutError:
                            continue
                        message = json.loads(text)
                        if message["type"] == "ready":
                            self.ready.set()
                        elif "position" in message:
                            self.messages.append(message)
            except InvalidStatus as error:
                if error.response.status_code < 500:
                    self.refused = str(error)
                    self.ready.set()  # start() says why
                    return
                await asyncio.sleep(0.2)
            except (OSError, websockets.ConnectionClosed):
                await asyncio.sleep(0.2)  # then reconnect from the last position


def feed_positions(env: dict[str, str]) -> list[int]:
    """Every position in the interface's feed table, in order."""
    with connect(env) as connection:
        rows = connection.execute(
            f'SELECT position FROM "{env["POSTGRES_SCHEMA"]}".interface_feed '
            "ORDER BY position"
        ).fetchall()
    return [int(row[0]) for row in rows]


def wait_until_quiet(cluster: Cluster, timeout: float = 120.0) -> str:
    """Waits until `status` shows every follower up to date; returns its table.

    A second worker of a kind may run (the follower shows `duplicate`): its lag must
    be zero all the same.
    """
    answer = ""

    def up_to_date() -> bool:
        nonlocal answer
        result = cluster.cli("status", "--json", "--stuck-after", "0")
        answer = result.stdout + result.stderr
        if result.returncode not in (0, 1) or not result.stdout.strip():
            return False
        rows = json.loads(result.stdout)
        return all(
            row["lag"] == 0 and row["state"] in ("up to date", "duplicate")
            for row in rows
        )

    deadline = time.monotonic() + timeout
    while not up_to_date():
        assert time.monotonic() < deadline, f"followers still behind:\n{answer}"
        time.sleep(0.2)
    return cluster.cli("status", "--stuck-after", "0").stdout


def follower_states(cluster: Cluster) -> tuple[int, dict[str, str], list[Any]]:
    """`status --json`: its exit status, each follower's state, and the workers."""
    result = cluster.cli("status", "--json", "--stuck-after", "0")
    assert result.stdout.strip(), result.stderr
    rows = json.loads(result.stdout)
    states = {row["follower"]: row["state"] for row in rows}
    workers = {w["id"]: w for row in rows for w in row["workers"] or ()}
    return result.returncode, states, list(workers.values())


class SilentServer:
    """A port that takes connections and never answers, as a server gone dark.

    The kernel completes each handshake (up to the backlog); nothing reads.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.address: tuple[str, int] = self.listener.getsockname()[:2]

    def close(self) -> None:
        """Closes the port (the connections waiting in it are reset)."""
        self.listener.close()

"""Servers and load in OS processes of their own, for benchmarks 5, 6 and 7.

A server is `python -m bankaccounts serve ...` (or the bare broadcast app) on a free
port, logging to a file, stopped with SIGTERM (then SIGKILL) whatever happens. Load
generators and websocket clients are `python -m bench._netload` and
`python -m bench._netclients`, which answer in JSON lines on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

REPOSITORY = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on now (bind port 0 and ask)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, the repository importable, plus the given settings."""
    env = dict(os.environ)
    extra = dict(extra or {})
    if "PERSISTENCE_MODULE" not in extra:  # the SQLite default, whatever we run in
        for name in list(env):
            if name == "PERSISTENCE_MODULE" or name.startswith("POSTGRES_"):
                del env[name]
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.update(extra)
    return env


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL: the process is gone when this returns."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def http_json(
    method: str,
    url: str,
    body: Any = None,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """One request with the standard library; the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


#: The benchmarks' user: the first to sign up on a loopback server, so staff.
BENCH_USER = {"username": "bench", "password": "bench-password"}


def sign_in(base: str) -> dict[str, str]:
    """Signs the benchmark's user up (once a bank) and in; the Authorization header."""
    try:
        http_json("POST", f"{base}/api/users", BENCH_USER)
    except urllib.error.HTTPError as error:
        if error.code != 409:  # taken: signed up before, on this bank
            raise
    token = http_json("POST", f"{base}/api/tokens", BENCH_USER)["token"]
    return {"Authorization": f"Bearer {token}"}


def wait_until_serving(
    url: str, process: subprocess.Popen[Any], log: Path, timeout: float = 60.0
) -> None:
    """Polls url until it answers; fails early if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            msg = f"server exited with {process.returncode}:\n{tail(log)}"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            msg = f"server did not answer {url} within {timeout:.0f}s:\n{tail(log)}"
            raise RuntimeError(msg)
        time.sleep(0.05)  # polling interval, not a wait for a fixed time


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def server_process(
    args: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    ready_url: str,
    timeout: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Starts a server, yields it once ready_url answers, always stops it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, *args],
            env=child_env(env),
            cwd=REPOSITORY,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_until_serving(ready_url, process, log, timeout)
            yield process
        finally:
            stop_process(process)


@contextmanager
def bank_server(
    workdir: Path,
    store_env: Mapping[str, str],
    *,
    extra_args: Sequence[str] = (),
    name: str = "serve",
    data_dir: Path | None = None,
) -> Iterator[str]:
    """`python -m bankaccounts serve` on a free port; yields its base URL."""
    port = free_port()
    data_dir = data_dir or workdir / f"{name}-{port}-data"
    args = [
        "-m",
        "bankaccounts",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
        *extra_args,
    ]
    base = f"http://{HOST}:{port}"
    log = workdir / f"{name}-{port}.log"
    with server_process(args, store_env, log, f"{base}/readyz"):
        yield base


@contextmanager
def bare_server(workdir: Path) -> Iterator[str]:
    """The bare broadcast app on uvicorn (same websocket stack); yields its URL."""
    port = free_port()
    args = [
        "-m",
        "uvicorn",
        "bench._netbare:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--ws",
        "websockets-sansio",
        "--log-level",
        "warning",
    ]
    base = f"http://{HOST}:{port}"
    log = workdir / f"bare-{port}.log"
    with server_process(args, {}, log, f"{base}/state"):
        yield base


def run_load(config: Mapping[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Runs the load generator in a process of its own; returns its JSON answer."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench._netload", json.dumps(config)],
        env=child_env(),
        cwd=REPOSITORY,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        msg = f"load generator failed:\n{completed.stderr.decode(errors='replace')}"
        raise RuntimeError(msg)
    answer: dict[str, Any] = json.loads(completed.stdout.decode().splitlines()[-1])
    return answer


class Clients:
    """A process of websocket clients, driven by JSON lines on stdin and stdout."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        """Starts the process; call ready() to wait until every client is in."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench._netclients", json.dumps(config)],
            env=child_env(),
            cwd=REPOSITORY,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def _read(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            msg = f"websocket clients exited ({self.process.wait()}):\n{stderr}"
            raise RuntimeError(msg)
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"websocket clients: {answer['error']}")
        return answer

    def ask(self, command: Mapping[str, Any]) -> dict[str, Any]:
        """Sends one command; returns the answer."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        return self._read()

    def ready(self) -> dict[str, Any]:
        """Waits until every client is connected and has its backlog."""
        return self._read()

    def close(self) -> None:
        """Ends the process."""
        with contextlib.suppress(OSError, ValueError):
            self.ask({"cmd": "quit"})
        stop_process(self.process, timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@contextmanager
def clients(config: Mapping[str, Any]) -> Iterator[Clients]:
    """Websocket clients in a process of their own, ended after use."""
    group = Clients(config)
    try:
        yield group
    finally:
        group.close()


def bankaccounts_cli(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Runs `python -m bankaccounts ARGS` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "bankaccounts", *args],
        env=child_env(env),
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def distributed_available() -> bool:
    """Whether the CLI has init-db, worker, status and serve --distributed."""
    for args in (["worker", "--help"], ["init-db", "--help"], ["status", "--help"]):
        if bankaccounts_cli(args).returncode != 0:
            return False
    return "--distributed" in bankaccounts_cli(["serve", "--help"]).stdout


def lags(value: Any) -> list[float]:
    """Every number under a key named "lag", anywhere in `status --json`'s answer."""
    found: list[float] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "lag" and isinstance(item, int | float):
                found.append(item)
            else:
                found += lags(item)
    elif isinstance(value, list):
        for item in value:
            found += lags(item)
    return found


def wait_for_no_lag(env: Mapping[str, str], timeout: float = 120.0) -> Any:
    """Polls `bankaccounts status --json` until every follower's lag is zero."""
    deadline = time.monotonic() + timeout
    while True:
        completed = bankaccounts_cli(["status", "--json"], env)
        answer: Any = None
        if completed.returncode in (0, 1):  # 1: a follower looks stuck (for now)
            answer = json.loads(completed.stdout)
            found = lags(answer)
            if found and not any(found):
                return answer
        if time.monotonic() > deadline:
            msg = f"status never showed zero lag: {completed.stdout}{completed.stderr}"
            raise RuntimeError(msg)
        time.sleep(0.2)  # polling interval


@contextmanager
def distributed_system(
    workdir: Path,
    env: Mapping[str, str],
    *,
    web_workers: int = 1,
    web_processes: int = 1,
) -> Iterator[list[str]]:
    """The scale-out deployment on PostgreSQL; yields the web processes' URLs.

    `bankaccounts init-db`, then `worker sagas|accounts|interface`, each its own
    process, then `web_processes` times `serve --distributed [--workers N]`.
    """
    created = bankaccounts_cli(["init-db"], env)
    if created.returncode != 0:
        msg = f"init-db failed:\n{created.stdout}{created.stderr}"
        raise RuntimeError(msg)
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []
    try:
        for name in ("sagas", "accounts", "interface"):
            log = (workdir / f"worker-{name}.log").open("wb")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bankaccounts",
                        "worker",
                        name,
                        "--log-level",
                        "warning",
                    ],
                    env=child_env(env),
                    cwd=REPOSITORY,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        bases = []
        for index in range(web_processes):
            port = free_port()
            args = [
                "serve",
                "--distributed",
                "--host",
                HOST,
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
            if web_workers > 1:
                args += ["--workers", str(web_workers)]
            path = workdir / f"web-{index}-{port}.log"
            log = path.open("wb")
            logs.append(log)
            process = subprocess.Popen(
                [sys.executable, "-m", "bankaccounts", *args],
                env=child_env(env),
                cwd=REPOSITORY,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            processes.append(process)
            base = f"http://{HOST}:{port}"
            wait_until_serving(f"{base}/readyz", process, path)
            bases.append(base)
        for process, name in zip(
            processes, ("sagas", "accounts", "interface"), strict=False
        ):
            if process.poll() is not None:
                msg = f"worker {name} exited:\n{tail(workdir / f'worker-{name}.log')}"
                raise RuntimeError(msg)
        yield bases
    finally:
        for process in reversed(processes):
            stop_process(process)
        for log in logs:
            log.close()

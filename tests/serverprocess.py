"""The embedded server (`python bankaccounts/main.py`) in a subprocess, for tests.

Started on a free port and a data directory of the test's own, its output kept in
files; stopped with SIGTERM or killed with SIGKILL, and started again. Its REST
calls are made as the bank's staff user, signed up on the first call (the token
outlives a restart, as the bank keeps it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.cluster import answers, free_port
from tests.signin import STAFF, Session, call, sign_in
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Sequence

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


class ServerProcess:
    """`python bankaccounts/main.py --data-dir ... --port ...`, run again and again."""

    def __init__(
        self,
        data_dir: Path,
        logs_dir: Path,
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.logs_dir = logs_dir
        self.args = list(args)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.popen: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self._staff: Session | None = None
        self._signing_in = threading.Lock()

    @property
    def log(self) -> Path:
        """The current (or last) run's stdout and stderr."""
        return self.logs_dir / f"server-{self.port}-{self.runs}.log"

    def launch(self) -> None:
        """Starts the process without waiting for it to answer."""
        self.runs += 1
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "bankaccounts/main.py",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    *self.args,
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def start(self) -> None:
        """Starts the process and waits until GET /readyz answers 200."""
        self.launch()
        wait_for(
            lambda: answers(f"{self.url}/readyz") or not self.is_running(),
            START_TIMEOUT,
            "the server did not answer",
        )
        assert self.is_running(), self.output()

    def output(self) -> str:
        """What the current (or last) run has written."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def is_running(self) -> bool:
        """True while the process lives."""
        return self.popen is not None and self.popen.poll() is None

    def wait(self, timeout: float = 20.0) -> int:
        """Waits for the process to end; returns its exit status."""
        assert self.popen is not None
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, whatever it was doing."""
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not end in time; the exit status."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(10)

    @property
    def staff(self) -> Session:
        """The bank's staff user (the first to sign up), signed in on first use."""
        with self._signing_in:  # once, whichever client thread asks first
            if self._staff is None:
                self._staff = sign_in(self.url, STAFF)
                assert self._staff.user["role"] == "staff", self._staff.user
            return self._staff

    def sign_in(self, username: str) -> Session:
        """Another user of the bank (a customer, once the staff user exists)."""
        return sign_in(self.url, username)

    def request(
        self, method: str, path: str, body: object = None, *, signed_in: bool = True
    ) -> tuple[int, Any]:
        """Calls the REST API (as the staff user); the status and the JSON answer."""
        headers = self.staff.headers if signed_in else {}
        return call(method, f"{self.url}{path}", body, headers)

"""The app in a real uvicorn server, in a thread of the test process.

For what only a real server shows: bodies read off a socket, handshake answers.
"""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING

import uvicorn

from tests.cluster import free_port
from tests.waiting import wait_for

if TYPE_CHECKING:
    from fastapi import FastAPI

START_TIMEOUT = 30.0


class LiveServer:
    """The app in a real uvicorn server, in a thread of the test process."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, START_TIMEOUT, "uvicorn did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT)
        assert not self.thread.is_alive()

    def exchange(self, data: bytes) -> bytes:
        """Sends raw bytes on a new connection; returns the answer up to its head."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(data)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                head += chunk
            return head

"""A small HTTP server for a process without a web server: probes and metrics.

A worker's --health-port serves GET (or HEAD, as the web's probes) /healthz (200
while the process runs), /readyz (200 while ready() says so, else 503) and /metrics
(the Prometheus text), each on a thread of its own, so a slow scrape does not hold up
a probe. It answers any Host: it serves nothing but these three, to whoever reaches
the port.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from bankaccounts.metrics import render_metrics

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"


class HealthServer:
    """Serves /healthz, /readyz and /metrics on host:port in a thread of its own."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        """Binds nothing yet; port 0 takes a free port (see `port` after start)."""
        self.host = host
        self.port = port
        self.ready = ready
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Binds the port (OSError if taken) and serves in a daemon thread."""
        server = ThreadingHTTPServer((self.host, self.port), _handler(self.ready))
        server.daemon_threads = True
        self.server = server
        self.port = server.server_address[1]
        self.thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="health-server",
            daemon=True,
        )
        self.thread.start()
        logger.info(
            "health: serving /healthz, /readyz and /metrics on %s:%d",
            self.host,
            self.port,
        )

    def stop(self) -> None:
        """Stops serving and closes the port."""
        server, self.server = self.server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self.thread is not None:
            self.thread.join(5)


def _handler(ready: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class HealthHandler(BaseHTTPRequestHandler):
        """Answers the three paths; 404 otherwise."""

        server_version = "bankaccounts-health"

        def do_GET(self) -> None:
            """GET /healthz, /readyz or /metrics."""
            path = self.path.partition("?")[0]
            if path == "/healthz":
                self._json(HTTPStatus.OK, {"status": "ok"})
            elif path == "/readyz":
                self._readyz()
            elif path == "/metrics":
                body, content_type = render_metrics()
                self._send(HTTPStatus.OK, body, content_type)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})

        def do_HEAD(self) -> None:
            """As GET, without the body (a load balancer's probe may use HEAD)."""
            self.do_GET()

        def _readyz(self) -> None:
            try:
                is_ready = ready()
            except Exception:
                logger.exception("health: the readiness check failed")
                is_ready = False
            if is_ready:
                self._json(HTTPStatus.OK, {"status": "ready"})
            else:
                self._json(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    {"status": "not ready", "failed": ["worker"]},
                )

        def _json(self, status: HTTPStatus, data: dict[str, Any]) -> None:
            self._send(status, json.dumps(data).encode(), JSON_TYPE)

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Probes come every few seconds: their lines only at DEBUG."""
            logger.debug("health: %s %s", self.address_string(), format % args)

    return HealthHandler

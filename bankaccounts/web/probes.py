"""Probes and metrics: GET /healthz, /readyz and /metrics.

/healthz says the process serves (200, without touching the database); /readyz
says it can serve requests: its database answers a cheap question within a couple
of seconds and, in a distributed web process, its feed subscription follows (else
503, naming the check that failed). Both are answered by a middleware outside the
web edge's guards, so they answer whatever Host a load balancer or Kubernetes
sends (a pod's IP address): they reveal nothing and change nothing. /metrics is an
ordinary route, behind the guards: a scraper's Host must be an allowed one.
None of the three is in the OpenAPI schema; all are open, like the rest of the API
until authentication exists.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from bankaccounts.metrics import render_metrics
from bankaccounts.web.requestlog import ROUTE_SCOPE_KEY

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

PROBE_PATHS = frozenset({"/healthz", "/readyz"})
PROBE_METHODS = frozenset({"GET", "HEAD"})

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """The process's metrics in the Prometheus text format."""
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)


class ProbesMiddleware:
    """Answers GET /healthz and /readyz before the guards; passes the rest on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A probe is answered here, for any Host; anything else goes on."""
        if scope["type"] != "http" or scope["path"] not in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        scope[ROUTE_SCOPE_KEY] = scope["path"]
        if scope["method"] not in PROBE_METHODS:
            await _answer(send, 405, {"detail": "Method Not Allowed"}, scope)
            return
        if scope["path"] == "/healthz":
            await _answer(send, 200, {"status": "ok"}, scope)
            return
        checks = await run_in_threadpool(_readiness, scope)
        failed = [name for name, state in checks.items() if state != "ok"]
        if failed:
            body = {"status": "not ready", "checks": checks, "failed": failed}
            await _answer(send, 503, body, scope)
        else:
            await _answer(send, 200, {"status": "ready", "checks": checks}, scope)


def _readiness(scope: Scope) -> dict[str, str]:
    """The bank's readiness checks, or "not started" before the app's startup."""
    bank = getattr(scope["app"].state, "bank", None)
    if bank is None:
        return {"bank": "not started"}
    checks: dict[str, str] = bank.readiness()
    return checks


async def _answer(send: Send, status: int, data: dict[str, Any], scope: Scope) -> None:
    body = json.dumps(data).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if scope["method"] == "HEAD":
        body = b""
    await send({"type": "http.response.body", "body": body})

"""Each HTTP request's id, metrics and access-log line: one outermost ASGI middleware.

The id is the client's X-Request-ID when it is a sane short token (a proxy's, a
load balancer's), else a new one; it is answered in X-Request-ID, set in
bankaccounts.logs.request_id for every line logged while the request is served
(the API's "recorded transaction ..." line names it), and written in the access
line. Metrics are labelled with the route's path template
(/api/accounts/{account_id}), never the raw path, so that ids do not grow the label
set; a request that matched no route is counted as "unmatched".
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING
from uuid import uuid4

from bankaccounts import logs
from bankaccounts.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_logger = logging.getLogger("bankaccounts.access")

REQUEST_ID_HEADER = b"x-request-id"
#: A client's request id is kept if it is 1 to 64 of these characters.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,64}")
#: A scope key in which a handler outside the router names its route template.
ROUTE_SCOPE_KEY = "bankaccounts.route"
UNMATCHED_ROUTE = "unmatched"
#: Other methods are counted as "other": a client may send any token as a method.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_LOGGED_PATH = 300


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-ID if it is a sane short token, else a new id."""
    for key, value in scope["headers"]:
        if key == REQUEST_ID_HEADER:
            text: str = value.decode("latin-1").strip()
            if SANE_REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid4().hex


def route_template(scope: Scope) -> str:
    """The path template of the route that answered, or "unmatched"."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    named: str | None = scope.get(ROUTE_SCOPE_KEY)
    if named is not None:
        return named
    if scope.get("root_path", "") and scope.get("endpoint") is not None:
        return f"{scope['root_path']}/{{path}}"  # a mounted app: /static/{path}
    return UNMATCHED_ROUTE


def logged_path(scope: Scope) -> str:
    """The path and query as the client sent them, printable and shortened."""
    raw = scope.get("raw_path")
    path: str = raw.decode("latin-1") if raw else scope.get("path", "")
    query = scope.get("query_string", b"")
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    if not path.isprintable():  # no line breaks in the log, whatever was sent
        path = path.encode("unicode_escape").decode("ascii")
    if len(path) > MAX_LOGGED_PATH:
        path = f"{path[:MAX_LOGGED_PATH]}..."
    return path


def client_of(scope: Scope) -> str:
    """host:port of the client (as the server, or its proxy headers, say)."""
    client = scope.get("client")
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"{host}:{port}"


class RequestLogMiddleware:
    """Gives each HTTP request an id, counts and times it, and logs one line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serves the request with its id set; records it once it is answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = request_id_of(scope)
        token = logs.request_id.set(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        status = 500  # unless an answer starts: the server answers 500 to a crash

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), id_header],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            route = route_template(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_REQUEST_DURATION.labels(method, route).observe(seconds)
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    "%s %s %d %.1f ms",
                    scope["method"][:16],
                    logged_path(scope),
                    status,
                    seconds * 1000,
                    extra={
                        "duration_ms": round(seconds * 1000, 3),
                        "client": client_of(scope),
                    },
                )
            logs.request_id.reset(token)

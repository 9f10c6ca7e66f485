"""The web edge's guards: allowed hosts, same-origin JSON writes, body size, headers.

Plain ASGI middlewares rather than BaseHTTPMiddleware: a body is counted as it
streams in and refused at the limit, never read whole first.

- Hosts: a DNS-rebinding page (evil.example resolving to 127.0.0.1) sends its own
  name as Host, so only the names the server is reached by are served (400).
- Writes: a cross-site HTML form can send only urlencoded, multipart or text/plain
  bodies without a CORS preflight (which this server never grants), so every
  POST/PUT/PATCH/DELETE must say Content-Type: application/json (415), and one that
  a browser marks as coming from another site or origin is refused (403). A DELETE
  without a body (sign-out) needs no Content-Type: no form sends DELETE, and a
  page's fetch of one from another origin needs the preflight.
- Size: a body over MAX_BODY_BYTES is answered 413 as soon as it is seen to be.
- Headers: a Content-Security-Policy that the pages satisfy, and no framing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The names that reach a server bound to the loopback interface.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: The largest request body accepted (the largest real one is a transfer, ~150 bytes).
MAX_BODY_BYTES = 64 * 1024
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_MEDIA_TYPE = "application/json"


def content_security_policy(*style_sources: str) -> str:
    """The pages' policy; style sources (a nonce, hashes) allow given <style>s.

    connect-src 'self' also allows ws: and wss: to the page's own host (CSP level 3,
    checked in Chromium by the browser tests).
    """
    style = " ".join(["'self'", *style_sources])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            f"style-src {style}",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "worker-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


CONTENT_SECURITY_POLICY = content_security_policy()
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
#: A handshake refused before it is accepted; uvicorn answers it with HTTP 403.
WEBSOCKET_POLICY_VIOLATION = 1008


def normalize_host(name: str) -> str:
    """A host name as compared: lower case, an IPv6 address without its brackets."""
    return name.strip().lower().removeprefix("[").removesuffix("]")


def host_name(netloc: str) -> str:
    """The name in a Host header or an origin's netloc, without the port."""
    netloc = netloc.strip()
    if netloc.startswith("["):  # [::1]:8000
        return normalize_host(netloc.partition("]")[0])
    if netloc.count(":") > 1:  # a bare IPv6 address, no port
        return normalize_host(netloc)
    return normalize_host(netloc.partition(":")[0])


class AllowedHosts:
    """The host names served: exact names, `*.domain`, or `*` for any."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(dict.fromkeys(normalize_host(n) for n in names if n.strip()))
        self.any = "*" in self.names
        self.suffixes = tuple(n[1:] for n in self.names if n.startswith("*."))

    @classmethod
    def of(cls, names: Sequence[str] | None) -> AllowedHosts:
        """The given names, or the loopback ones when None."""
        return cls(LOOPBACK_HOSTS if names is None else names)

    def allows(self, name: str) -> bool:
        """True if the host name (without a port) is one of the allowed ones."""
        name = normalize_host(name)
        if not name:
            return False
        return (
            self.any
            or name in self.names
            or any(name.endswith(suffix) for suffix in self.suffixes)
        )

    def allows_netloc(self, netloc: str | None) -> bool:
        """True if the Host header's value (host and optional port) is allowed."""
        return netloc is not None and self.allows(host_name(netloc))


def origin_matches_host(origin: str, host: str | None, allowed: AllowedHosts) -> bool:
    """True if a browser's Origin header names this server as the request reached it."""
    if host is None or origin == "null":  # "null": a sandboxed frame, a file, ...
        return False
    netloc = urlsplit(origin).netloc
    return netloc.lower() == host.strip().lower() and allowed.allows_netloc(netloc)


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header, decoded as latin-1 (as HTTP says)."""
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


async def send_error(send: Send, status: int, detail: str) -> None:
    """Answers a refused request with the API's usual {"detail": ...} body."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response that does not set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Passes the request on; adds the headers to the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {key.lower() for key, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AllowedHostsMiddleware:
    """Refuses a request whose Host is not allowed: 400, or a refused handshake."""

    def __init__(self, app: ASGIApp, allowed: AllowedHosts) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Passes the request on if its Host header names an allowed host."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = header(scope, b"host")
        if self.allowed.allows_netloc(host):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION})
            return
        shown = "none" if host is None else repr(host[:100])
        await send_error(
            send,
            400,
            f"Host {shown} is not allowed: this server answers to "
            f"{', '.join(self.allowed.names)} (see --allowed-hosts)",
        )


class SameOriginJsonMiddleware:
    """Refuses writes a cross-site page could send: not JSON (415), cross-site (403)."""

    def __init__(self, app: ASGIApp, allowed: AllowedHosts) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Passes reads on; checks where a write comes from and what it carries."""
        if scope["type"] != "http" or scope["method"] not in STATE_CHANGING_METHODS:
            await self.app(scope, receive, send)
            return
        if self.is_cross_site(scope):
            await send_error(
                send, 403, "Cross-site requests may not change anything here"
            )
            return
        content_type = header(scope, b"content-type")
        media_type = (content_type or "").partition(";")[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE and not (
            content_type is None and is_bodyless_delete(scope)
        ):
            await send_error(
                send,
                415,
                "Send a JSON body with Content-Type: application/json "
                "(also for requests without data: an empty body or {})",
            )
            return
        await self.app(scope, receive, send)

    def is_cross_site(self, scope: Scope) -> bool:
        """True if the browser says the request comes from another site or origin."""
        fetch_site = header(scope, b"sec-fetch-site")
        if fetch_site is not None and fetch_site.strip().lower() in (
            "cross-site",
            "same-site",  # another port or subdomain: another origin all the same
        ):
            return True
        origin = header(scope, b"origin")
        if origin is None:  # not a browser, or a browser that says so elsewhere
            return False
        return not origin_matches_host(origin, header(scope, b"host"), self.allowed)


def is_bodyless_delete(scope: Scope) -> bool:
    """True for a DELETE that declares no body (no length, or 0; not chunked)."""
    if scope["method"] != "DELETE" or header(scope, b"transfer-encoding") is not None:
        return False
    return (header(scope, b"content-length") or "0").strip() == "0"


class BodySizeLimitMiddleware:
    """Answers 413 to a body over the limit, counted as it arrives (chunked too)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Reads the body up to the limit, then gives it to the application whole."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if (
            declared is not None
            and declared.strip().isascii()
            and declared.strip().isdigit()
            and int(declared) > self.max_bytes
        ):
            await self.refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # the disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def refuse(self, send: Send) -> None:
        """The 413 answer; the server closes the connection on the unread rest."""
        await send_error(
            send,
            413,
            f"The request body is larger than {self.max_bytes // 1024} KiB",
        )


def add_security(app: FastAPI, allowed: AllowedHosts) -> None:
    """Puts the guards around the application, the headers outermost."""
    # Starlette runs the middleware added last first.
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(SameOriginJsonMiddleware, allowed=allowed)
    app.add_middleware(AllowedHostsMiddleware, allowed=allowed)
    app.add_middleware(SecurityHeadersMiddleware)

"""Signing in to a real server, for the tests that talk to one over HTTP or /ws.

Every /api/* route but sign-up and sign-in, and the /ws handshake, need a token. A
test signs up a user (the first one on a server listening on a loopback address is
staff, later ones customers), gets a token and sends it as `Authorization: Bearer`
with each request and in each websocket handshake.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

#: Every test user's password (8 characters at least).
PASSWORD = "correct horse battery staple"
#: The user a test signs in as when it does not care who: the bank's founder.
STAFF = "staff"


def call(
    method: str,
    url: str,
    body: object = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """An HTTP request with a JSON body; the status and the JSON answer (or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, decode(response.read())
    except urllib.error.HTTPError as error:
        return error.code, decode(error.read())


def decode(body: bytes) -> Any:
    """The JSON of an answer; None for an empty body (204)."""
    return json.loads(body) if body else None


@dataclass(frozen=True)
class Session:
    """A signed-in user of one server: its token, sent with every request."""

    url: str
    token: str
    user: dict[str, str]  # {"id", "username", "role"}

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header, for HTTP requests and websocket handshakes."""
        return bearer(self.token)

    @property
    def id(self) -> str:
        """The user's id."""
        return self.user["id"]

    @property
    def username(self) -> str:
        """The user's name."""
        return self.user["username"]

    @property
    def ws_url(self) -> str:
        """The server's websocket address."""
        return self.url.replace("http://", "ws://", 1) + "/ws"

    def at(self, url: str) -> Session:
        """The same user at another web process of the same bank."""
        return Session(url, self.token, self.user)

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Calls the REST API as this user; the status and the JSON answer."""
        return call(
            method, f"{self.url}{path}", body, {**self.headers, **(headers or {})}
        )


def sign_up(url: str, username: str, password: str = PASSWORD) -> tuple[int, Any]:
    """POST /api/users: 201 and the user, or 409 if the name is taken."""
    return call(
        "POST", f"{url}/api/users", {"username": username, "password": password}
    )


def sign_in(url: str, username: str = STAFF, password: str = PASSWORD) -> Session:
    """Signs up (a name already taken is fine: the same user again) and signs in."""
    status, user = sign_up(url, username, password)
    assert status in (201, 409), (status, user)
    status, answer = call(
        "POST", f"{url}/api/tokens", {"username": username, "password": password}
    )
    assert status == 201, (status, answer)
    token = answer["token"]
    if not (isinstance(user, dict) and "id" in user):
        status, user = call("GET", f"{url}/api/me", None, bearer(token))
        assert status == 200, (status, user)
    return Session(url, token, user)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}

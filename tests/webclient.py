"""Helpers for the web tests: a signed-in TestClient around a real bank, users, feeds.

Every /api route but sign-up and sign-in, and the /ws handshake, need a token.
`bank_client` signs up the bank's first user, who is staff (the app is built with
founder_may_sign_up=True, as `serve` does on a loopback address: a TestClient's
peer is "testclient", not an address), and sends that token with every request.
`sign_up` adds customers; their `headers` go with a request or a handshake instead.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi.testclient import TestClient

from bankaccounts.deploy.bootstrap import Bank
from bankaccounts.web.app import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from starlette.testclient import WebSocketTestSession


#: The names a TestClient reaches the app by ("testserver" is its default Host).
TEST_HOSTS = ("localhost", "testserver")
#: Every test user's password.
PASSWORD = "correct horse battery staple"
#: The username of the bank's first user, staff, as whom bank_client signs in.
STAFF = "staff"


@dataclass(frozen=True)
class User:
    """A signed-up, signed-in user: who, and the header that says so."""

    id: str
    username: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header (a request's or a websocket handshake's)."""
        return {"Authorization": f"Bearer {self.token}"}


def bank_client(env: Mapping[str, str], **options: Any) -> Iterator[TestClient]:
    """A TestClient whose lifespan runs a bank on env, signed in as its staff.

    options go to create_app. The staff user is `client.staff` (a User).
    """
    app = create_app(
        Bank(env), allowed_hosts=TEST_HOSTS, founder_may_sign_up=True, **options
    )
    with TestClient(app) as client:
        staff = sign_up(client, STAFF)
        assert staff.role == "staff", staff
        client.headers["Authorization"] = f"Bearer {staff.token}"
        client.staff = staff  # type: ignore[attr-defined]
        yield client


def sign_up(client: TestClient, username: str, password: str = PASSWORD) -> User:
    """Signs up a user (a customer, but for the bank's first) and signs them in."""
    response = client.post(
        "/api/users", json={"username": username, "password": password}
    )
    assert response.status_code == 201, response.text
    user = response.json()
    return User(user["id"], user["username"], user["role"], sign_in(client, username))


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """A new token of the user.

    The session cookie that the answer sets is dropped: each test request says
    whose it is by its Authorization header alone.
    """
    response = client.post(
        "/api/tokens", json={"username": username, "password": password}
    )
    assert response.status_code == 201, response.text
    client.cookies.clear()
    token: str = response.json()["token"]
    return token


@contextlib.contextmanager
def anonymous(client: TestClient) -> Iterator[TestClient]:
    """The client without its Authorization header (or cookies), for a while."""
    saved = client.headers.pop("Authorization", None)
    cookies = dict(client.cookies)
    client.cookies.clear()
    try:
        yield client
    finally:
        if saved is not None:
            client.headers["Authorization"] = saved
        client.cookies.update(cookies)


def open_account(
    client: TestClient,
    name: str | None = "Alice",
    headers: Mapping[str, str] | None = None,
) -> str:
    """Opens an account through the API (as the headers' user) and returns its id."""
    response = client.post("/api/accounts", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    account_id: str = response.json()["id"]
    return account_id


def deposit(
    client: TestClient,
    account_id: str,
    amount: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Deposits and waits for the transaction to finish."""
    response = client.post(
        f"/api/accounts/{account_id}/deposits?wait=true",
        json={"amount": amount},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def read_until(
    ws: WebSocketTestSession, predicate: Any, limit: int = 1000
) -> list[dict[str, Any]]:
    """Reads messages until one matches the predicate; returns all read."""
    messages: list[dict[str, Any]] = []
    for _ in range(limit):
        message: dict[str, Any] = ws.receive_json()
        messages.append(message)
        if predicate(message):
            return messages
    msg = f"no matching message in {limit}: {messages[-3:]}"
    raise AssertionError(msg)


def read_backlog(ws: WebSocketTestSession) -> list[dict[str, Any]]:
    """Reads the backlog up to the ready message; returns the feed messages."""
    messages = read_until(ws, lambda m: m["type"] == "ready")
    return messages[:-1]

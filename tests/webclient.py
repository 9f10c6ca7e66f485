"""Helpers for the web tests: a TestClient around a real bank, and feed readers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.testclient import TestClient

from bankaccounts.deploy.bootstrap import Bank
from bankaccounts.web.app import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from starlette.testclient import WebSocketTestSession


#: The names a TestClient reaches the app by ("testserver" is its default Host).
TEST_HOSTS = ("localhost", "testserver")


def bank_client(env: Mapping[str, str]) -> Iterator[TestClient]:
    """A TestClient whose lifespan starts and stops a bank on env."""
    with TestClient(create_app(Bank(env), allowed_hosts=TEST_HOSTS)) as client:
        yield client


def open_account(client: TestClient, name: str | None = "Alice") -> str:
    """Opens an account through the API and returns its id."""
    response = client.post("/api/accounts", json={"name": name})
    assert response.status_code == 201, response.text
    account_id: str = response.json()["id"]
    return account_id


def deposit(client: TestClient, account_id: str, amount: str) -> dict[str, Any]:
    """Deposits and waits for the transaction to finish."""
    response = client.post(
        f"/api/accounts/{account_id}/deposits?wait=true", json={"amount": amount}
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

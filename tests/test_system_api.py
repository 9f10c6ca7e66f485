"""GET /api/system: the followers' positions, and a follower stuck on an event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.waiting import wait_for
from tests.webclient import anonymous, bank_client, open_account, sign_up

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

FOLLOWED = [
    ["Sagas", "Commands"],
    ["Sagas", "Accounts"],
    ["Accounts", "Sagas"],
    ["Interface", "Accounts"],
    ["Interface", "Sagas"],
]


@pytest.fixture
def client(persistence_env: dict[str, str]) -> Iterator[TestClient]:
    yield from bank_client(persistence_env)


def system(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/system")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_every_follower_and_upstream_is_shown(client: TestClient) -> None:
    open_account(client)
    answer = system(client)
    followers = answer["followers"]
    assert sorted([f["follower"], f["upstream"]] for f in followers) == sorted(FOLLOWED)
    interface = next(f for f in followers if f["follower"] == "Interface")
    assert interface["position"] >= 1
    assert answer["healthy"] is True
    assert {f["state"] for f in followers} <= {"up to date", "behind"}
    assert all(f["failure"] is None for f in followers)


def test_a_follower_that_keeps_failing_says_so_until_it_gets_past(
    client: TestClient,
) -> None:
    interface: Any = client.app.state.bank.interface  # type: ignore[attr-defined]
    policy = interface.policy

    def failing_policy(domain_event: Any, processing_event: Any) -> None:
        if type(domain_event).__qualname__ == "BankAccount.Created":
            msg = "a fault injected by the test"
            raise RuntimeError(msg)
        policy(domain_event, processing_event)

    interface.policy = failing_policy
    account_id = open_account(client, "Stuck")

    def failing() -> dict[str, Any] | None:
        return next(
            (f for f in system(client)["followers"] if f["state"] == "failing"), None
        )

    wait_for(lambda: failing() is not None, message="no follower shows failing")
    stuck = failing()
    assert stuck is not None
    assert [stuck["follower"], stuck["upstream"]] == ["Interface", "Accounts"]
    assert stuck["failure"]["event"] == "BankAccount.Created"
    assert "RuntimeError" in stuck["failure"]["error"]
    assert system(client)["healthy"] is False
    assert client.get(f"/api/accounts/{account_id}").status_code == 200

    # Mended, the follower gets past the event at the next catch-up.
    interface.policy = policy
    wait_for(lambda: system(client)["healthy"], timeout=15, message="still failing")
    listed = [a["id"] for a in client.get("/api/accounts").json()]
    assert account_id in listed


def test_only_staff_see_the_system(client: TestClient) -> None:
    """It shows the whole bank's machinery: a customer is refused (403)."""
    customer = sign_up(client, "carol")
    response = client.get("/api/system", headers=customer.headers)
    assert response.status_code == 403
    assert response.json()["detail"] == "Only staff may see the system's state"
    with anonymous(client):
        assert client.get("/api/system").status_code == 401
    assert system(client)["healthy"] in (True, False)

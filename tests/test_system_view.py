"""GET /api/system's applications: each one's last notification id, and its
position and lag in each upstream, the figures of `bankaccounts status`."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import pytest

from bankaccounts.deploy.status import (
    application_statuses,
    format_table,
    max_notification_ids,
    read_statuses,
)
from tests.waiting import wait_for
from tests.webclient import bank_client, deposit, open_account, sign_up

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

    from tests.cluster import Cluster
    from tests.signin import Session

UPSTREAMS = {
    "Commands": [],
    "Sagas": ["Commands", "Accounts"],
    "Accounts": ["Sagas"],
    "Interface": ["Accounts", "Sagas"],
}


@pytest.fixture
def client(persistence_env: dict[str, str]) -> Iterator[TestClient]:
    yield from bank_client(persistence_env)


def applications(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    apps = answer["applications"]
    assert [a["name"] for a in apps] == list(UPSTREAMS)
    for app in apps:
        assert set(app) == {"name", "max_notification_id", "upstreams"}
        assert [u["name"] for u in app["upstreams"]] == UPSTREAMS[app["name"]]
        for upstream in app["upstreams"]:
            assert set(upstream) == {"name", "position", "lag"}
    return {a["name"]: a for a in apps}


def lags(answer: dict[str, Any]) -> list[int]:
    return [u["lag"] for a in answer["applications"] for u in a["upstreams"]]


def test_the_applications_are_shown_with_no_lag_once_the_load_stops(
    client: TestClient,
) -> None:
    account_id = open_account(client, "Alice")
    for _ in range(3):
        deposit(client, account_id, "1.00")
    answer: dict[str, Any] = {}

    def quiet() -> bool:
        response = client.get("/api/system")
        assert response.status_code == 200, response.text
        answer.update(response.json())
        return not any(lags(answer))

    wait_for(quiet, message="the followers did not catch up")
    apps = applications(answer)
    assert answer["healthy"] is True
    assert len(answer["followers"]) == 5
    bank: Any = client.app.state.bank  # type: ignore[attr-defined]
    recorded = max_notification_ids(bank.applications())
    for name, app in apps.items():
        assert app["max_notification_id"] == recorded[name]
        for upstream in app["upstreams"]:
            assert 0 < upstream["position"] <= recorded[upstream["name"]]
    assert apps["Commands"]["max_notification_id"] == 3  # the deposits' commands
    assert apps["Interface"]["upstreams"][0]["position"] == recorded["Accounts"]


def test_the_cli_table_shows_the_same_figures(client: TestClient) -> None:
    account_id = open_account(client, "Alice")
    deposit(client, account_id, "1.00")
    bank: Any = client.app.state.bank  # type: ignore[attr-defined]
    apps = bank.applications()
    statuses = read_statuses(apps)
    views = application_statuses(statuses, max_notification_ids(apps))
    table = format_table(statuses, max_ids=max_notification_ids(apps))
    lines = table.splitlines()
    section = lines[
        lines.index(next(x for x in lines if x.startswith("APPLICATION"))) :
    ]
    for view in views:
        line = next(x for x in section if x.split()[:1] == [view.name])
        assert line.split()[1] == str(view.max_notification_id)
    # Without the recorders' figures, the upstreams' latest (the same at rest).
    assert application_statuses(statuses) == views


def test_customers_may_not_see_the_system(client: TestClient) -> None:
    alice = sign_up(client, "alice")
    assert client.get("/api/system", headers=alice.headers).status_code == 403


def system(web: Session) -> dict[str, Any]:
    status, body = web.request("GET", "/api/system")
    assert status == 200, body
    answer: dict[str, Any] = body
    applications(answer)
    return answer


def upstream(answer: dict[str, Any], follower: str, name: str) -> dict[str, Any]:
    app = next(a for a in answer["applications"] if a["name"] == follower)
    found: dict[str, Any] = next(u for u in app["upstreams"] if u["name"] == name)
    return found


@pytest.mark.postgres
def test_a_stopped_worker_lags_until_it_runs_again(cluster: Cluster) -> None:
    web = cluster.signed_in(cluster.add_web("web"))
    status, body = web.request("POST", "/api/accounts", {"name": "Alice"})
    assert status == 201, body
    alice = body["id"]
    status, body = web.request(
        "POST", f"/api/accounts/{alice}/deposits?wait=true", {"amount": "10.00"}
    )
    assert status == 200, body
    wait_for(lambda: not any(lags(system(web))), timeout=60)

    sagas = cluster.processes["sagas"]
    sagas.signal(signal.SIGTERM)
    assert sagas.wait() == 0
    for _ in range(3):
        status, body = web.request(
            "POST", f"/api/accounts/{alice}/deposits", {"amount": "1.00"}
        )
        assert status == 202, body
    answer = system(web)
    commands = upstream(answer, "Sagas", "Commands")
    assert commands["lag"] == 3
    latest = next(a for a in answer["applications"] if a["name"] == "Commands")
    assert latest["max_notification_id"] == commands["position"] + 3

    cluster.start("sagas")
    wait_for(lambda: not any(lags(system(web))), timeout=60)
    answer = system(web)
    assert upstream(answer, "Sagas", "Commands")["position"] == 4
    assert answer["healthy"] is True

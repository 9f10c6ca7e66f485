"""GET /metrics, request ids and the access log; the workers' HealthServer.

Counters live on the process's default registry and count from its start, so the
in-process tests compare a value before and after what they do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bankaccounts.accountapplication import retry_on_conflict
from bankaccounts.deploy.bootstrap import Bank, system_env
from bankaccounts.deploy.healthserver import HealthServer
from bankaccounts.infrastructure import VersionConflictError
from bankaccounts.metrics import render_metrics
from bankaccounts.readmodel import POPOReadModelRecorder
from bankaccounts.users import Actor
from bankaccounts.web.app import create_app
from bankaccounts.web.feed import FeedHub
from tests.cluster import request, wait_until_quiet
from tests.signin import sign_in
from tests.waiting import wait_for
from tests.webclient import bank_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.cluster import Cluster

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample by name and sorted labels (the Prometheus client's parser)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value (0 if absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape() -> Samples:
    """This process's metrics."""
    return parse(render_metrics()[0].decode())


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from bank_client(system_env(tmp_path / "data", environ={}))


def test_metrics_count_requests_by_route_template_commands_and_outcomes(
    client: TestClient,
) -> None:
    before = scrape()
    account = client.post("/api/accounts", json={"name": "Ann"}).json()["id"]
    deposited = client.post(
        f"/api/accounts/{account}/deposits?wait=true", json={"amount": "10"}
    )
    assert deposited.json()["status"] == "succeeded"
    refused = client.post(
        f"/api/accounts/{account}/withdrawals?wait=true", json={"amount": "11"}
    )
    assert refused.json()["status"] == "failed"
    for _ in range(3):
        assert client.get(f"/api/accounts/{account}").status_code == 200
    assert client.get(f"/api/accounts/{uuid4()}").status_code == 404

    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    after = parse(answer.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/api/accounts/{account_id}"
    requests = "bankaccounts_http_requests_total"
    assert grew(requests, method="GET", route=route, status="200") == 3
    assert grew(requests, method="GET", route=route, status="404") == 1
    assert not any(account in str(key) for key in after)  # no raw path as a label
    durations = "bankaccounts_http_request_duration_seconds_count"
    assert grew(durations, method="GET", route=route) == 4
    assert grew("bankaccounts_commands_recorded_total", kind="deposit") == 1
    assert grew("bankaccounts_commands_recorded_total", kind="withdrawal") == 1
    finished = "bankaccounts_transactions_finished_total"
    assert grew(finished, outcome="succeeded") == 1
    assert grew(finished, outcome="failed") == 1
    assert grew("bankaccounts_pages_processed_total", application="Sagas") >= 1
    assert grew("bankaccounts_events_processed_total", application="Interface") >= 3


def test_follower_positions_and_lags_are_those_of_status(client: TestClient) -> None:
    account = client.post("/api/accounts", json={}).json()["id"]
    for _ in range(3):
        client.post(f"/api/accounts/{account}/deposits?wait=true", json={"amount": "1"})
    samples = parse(client.get("/metrics").text)
    bank: Bank = client.app.state.bank  # type: ignore[attr-defined]
    statuses = bank.follower_statuses()
    assert len(statuses) == 5
    for status in statuses:
        labels = {"follower": status.follower, "upstream": status.upstream}
        assert value(samples, "bankaccounts_follower_position", **labels) == (
            status.position
        )
        assert value(samples, "bankaccounts_follower_lag", **labels) == status.lag


def test_a_request_id_is_kept_or_made_answered_and_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bankaccounts")
    account = client.post("/api/accounts", json={}).json()["id"]
    answer = client.post(
        f"/api/accounts/{account}/deposits",
        json={"amount": "5"},
        headers={"X-Request-ID": "lb-7f3a.42"},
    )
    assert answer.headers["x-request-id"] == "lb-7f3a.42"
    transaction_id = answer.json()["transaction_id"]
    access = [r for r in caplog.records if r.name == "bankaccounts.access"]
    line = access[-1]
    assert line.getMessage().startswith(f"POST /api/accounts/{account}/deposits 202 ")
    assert line.getMessage().endswith(" ms")
    assert line.client == "testclient:50000"  # type: ignore[attr-defined]
    assert line.duration_ms > 0  # type: ignore[attr-defined]
    recorded = [r for r in caplog.records if r.name == "bankaccounts.web"]
    assert recorded[-1].getMessage() == (
        f"recorded transaction {transaction_id} (request lb-7f3a.42)"
    )
    for bad in ("x" * 65, "a b", "é".encode("latin-1"), "<script>"):
        made = client.get("/healthz", headers={"X-Request-ID": bad})
        made_id = made.headers["x-request-id"]
        assert made_id != bad
        assert len(made_id) == 32
    other = client.get("/healthz").headers["x-request-id"]
    assert other != made_id


def test_the_access_line_escapes_what_could_break_a_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bankaccounts.access")
    assert client.get("/api/x%0Ay").status_code == 404
    message = caplog.records[-1].getMessage()
    assert "\n" not in message
    assert message.startswith("GET /api/x%0Ay 404 ")


def test_websocket_clients_and_overruns_are_counted(client: TestClient) -> None:
    clients = "bankaccounts_websocket_clients"
    before = scrape()
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_json()["type"] == "ready"
        assert value(scrape(), clients) == value(before, clients) + 1
    wait_for(lambda: value(scrape(), clients) == value(before, clients), 5)

    async def overrun() -> None:
        hub = FeedHub(POPOReadModelRecorder(), queue_size=1)
        feed_client = hub.connect(Actor(uuid4(), "staff", "staff"))
        feed_client.offer({"type": "x", "position": 1})
        feed_client.offer({"type": "x", "position": 2})
        hub.disconnect(feed_client)

    asyncio.run(overrun())
    overruns = "bankaccounts_websocket_overruns_total"
    assert value(scrape(), overruns) == value(before, overruns) + 1


class Writer:
    """An application named "Accounts" whose first write conflicts."""

    name = "Accounts"

    def __init__(self) -> None:
        import threading

        self.closing = threading.Event()
        self.attempts = 0

    def write(self) -> str:
        self.attempts += 1
        if self.attempts == 1:
            raise VersionConflictError("Accounts", Exception("version taken"))
        return "saved"


def test_version_conflicts_and_retries_are_counted() -> None:
    before = scrape()
    writer = Writer()
    assert retry_on_conflict(writer, writer.write) == "saved"  # type: ignore[arg-type]
    after = scrape()
    for name in (
        "bankaccounts_version_conflicts_total",
        "bankaccounts_conflict_retries_total",
    ):
        grown = value(after, name, application="Accounts") - value(
            before, name, application="Accounts"
        )
        assert grown == 1


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_health_server_answers_probes_and_metrics() -> None:
    ready = {"now": False}
    server = HealthServer("127.0.0.1", 0, lambda: ready["now"])
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert http_get(f"{url}/healthz") == (200, '{"status": "ok"}')
        status, body = http_get(f"{url}/readyz")
        assert (status, json.loads(body)["status"]) == (503, "not ready")
        ready["now"] = True
        assert http_get(f"{url}/readyz") == (200, '{"status": "ready"}')
        status, text = http_get(f"{url}/metrics")
        assert status == 200
        assert ("bankaccounts_websocket_clients", ()) in parse(text)
        assert http_get(f"{url}/nothing")[0] == 404
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(f"{url}/healthz", timeout=2)


def test_the_health_server_answers_head_as_the_web_probes_do() -> None:
    server = HealthServer("127.0.0.1", 0, lambda: False)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(
            urllib.request.Request(f"{url}/healthz", method="HEAD"), timeout=5
        ) as response:
            assert response.status == 200
            assert response.read() == b""
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(
                urllib.request.Request(f"{url}/readyz", method="HEAD"), timeout=5
            )
        assert refused.value.code == 503
    finally:
        server.stop()


def test_a_failing_readiness_check_answers_503() -> None:
    def broken() -> bool:
        raise RuntimeError("no database")

    server = HealthServer("127.0.0.1", 0, broken)
    server.start()
    try:
        assert http_get(f"http://127.0.0.1:{server.port}/readyz")[0] == 503
    finally:
        server.stop()


@pytest.mark.postgres
def test_pool_connections_are_reported_per_application(
    postgres_env: dict[str, str],
) -> None:
    bank = Bank(postgres_env)
    app = create_app(bank)
    with TestClient(app, base_url="http://localhost") as client:
        samples = parse(client.get("/metrics").text)
    for name in ("Commands", "Sagas", "Accounts", "Interface"):
        states = {
            state: value(
                samples, "bankaccounts_pool_connections", application=name, state=state
            )
            for state in ("in_use", "idle", "waiting")
        }
        assert states["in_use"] + states["idle"] >= 1, (name, states)
        assert states["waiting"] == 0


def scrape_url(url: str) -> Samples:
    status, text = http_get(f"{url}/metrics")
    assert status == 200
    return parse(text)


@pytest.mark.postgres
def test_a_web_process_lags_equal_status_and_its_feed_reconnects_count(
    cluster: Cluster,
) -> None:
    """Real workers and a real web process: /metrics against `status --json`."""
    url = cluster.add_web("web")
    staff = sign_in(url).headers
    _, account = request("POST", f"{url}/api/accounts", {}, staff)
    for _ in range(20):
        status, _ = request(
            "POST",
            f"{url}/api/accounts/{account['id']}/deposits",
            {"amount": "1"},
            staff,
        )
        assert status == 202
    wait_until_quiet(cluster)
    samples = scrape_url(url)
    result = cluster.cli("status", "--json")
    data = json.loads(result.stdout)
    statuses: list[dict[str, Any]] = (
        data["followers"] if isinstance(data, dict) else data
    )
    assert len(statuses) == 5
    for status_json in statuses:
        labels = {
            "follower": status_json["follower"],
            "upstream": status_json["upstream"],
        }
        assert (
            value(samples, "bankaccounts_follower_position", **labels)
            == (status_json["position"])
        ), labels
        assert (
            value(samples, "bankaccounts_follower_lag", **labels)
            == (status_json["lag"])
        ), labels
    assert value(samples, "bankaccounts_commands_recorded_total", kind="deposit") == 20
    wait_for(
        lambda: (
            value(
                scrape_url(url),
                "bankaccounts_transactions_finished_total",
                outcome="succeeded",
            )
            == 20
        ),
        10,
        "the web process did not see 20 transactions finish",
    )
    assert value(samples, "bankaccounts_reconnects_total", process="feed") == 0
    assert cluster.terminate_connections(("web",)) >= 1
    wait_for(
        lambda: (
            value(scrape_url(url), "bankaccounts_reconnects_total", process="feed") >= 1
        ),
        20,
        "the feed subscription did not reconnect",
    )

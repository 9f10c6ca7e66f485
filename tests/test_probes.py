"""GET /healthz and /readyz: in-process, then with a real PostgreSQL cut off and back.

The database is cut off with a proxy between the web process and PostgreSQL that
stops accepting (new connections are refused) and closes the live ones, then
listens again on the same port.
"""

from __future__ import annotations

import random
import socket
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from bankaccounts.deploy.bootstrap import Bank, DistributedBank, system_env
from bankaccounts.deploy.readiness import DatabaseCheck
from bankaccounts.web.app import create_app
from tests.cluster import Cluster
from tests.tcpproxy import TCPProxy
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class SwitchableProxy(TCPProxy):
    """A TCPProxy that can refuse connections for a while, on the same port."""

    def refuse(self) -> None:
        """Stops listening (connections are refused) and cuts the live ones."""
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)
        self.cut(random.Random(0))

    def accept(self) -> None:
        """Listens again on the same port."""
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()


def get(url: str, host: str | None = None) -> tuple[int, dict[str, Any]]:
    """GET url (with this Host header); the status and the JSON answer."""
    import json

    headers = {"Host": host} if host else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    env = system_env(tmp_path / "data", environ={})
    with TestClient(create_app(Bank(env)), base_url="http://localhost") as client:
        yield client


def test_healthz_and_readyz_answer_any_host(client: TestClient) -> None:
    for host in ("localhost", "10.0.3.7:8000", "lb.internal"):
        health = client.get("/healthz", headers={"Host": host})
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = client.get("/readyz", headers={"Host": host})
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"database": "ok"}}
    # The API itself still answers only the allowed names.
    assert client.get("/api/accounts", headers={"Host": "lb.internal"}).status_code == (
        400
    )


def test_probes_answer_head_refuse_other_methods_and_stay_out_of_the_schema(
    client: TestClient,
) -> None:
    head = client.head("/readyz")
    assert (head.status_code, head.content) == (200, b"")
    refused = client.post("/healthz", json={})
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/healthz", "/readyz", "/metrics"} & set(paths)


def test_a_bank_that_is_not_ready_answers_503_naming_the_check() -> None:
    class Unready(Bank):
        def readiness(self) -> dict[str, str]:
            return {"database": "no answer within 2 s", "feed": "ok"}

    app = create_app(Unready({"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    with TestClient(app, base_url="http://localhost") as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {
            "status": "not ready",
            "checks": {"database": "no answer within 2 s", "feed": "ok"},
            "failed": ["database"],
        }
        assert client.get("/healthz").status_code == 200


class BlockingView:
    """A read model whose database answers only when released."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.questions = 0

    def max_feed_position(self) -> int:
        self.questions += 1
        self.released.wait(10)
        return 7


def test_the_database_check_gives_up_at_its_deadline_without_piling_up() -> None:
    view = BlockingView()
    check = DatabaseCheck(lambda: view, timeout=0.05)  # type: ignore[arg-type,return-value]
    assert check() == "no answer within 0.05 s"
    assert check() == "no answer within 0.05 s"
    assert view.questions == 1  # the second check waited on the same question
    view.released.set()
    wait_for(lambda: check() is None, 5, "the check did not pass once answered")
    assert view.questions in (1, 2)


def test_the_database_check_names_the_error_type() -> None:
    class Broken:
        def max_feed_position(self) -> int:
            raise ConnectionRefusedError("connection refused")

    check = DatabaseCheck(lambda: Broken(), timeout=2)  # type: ignore[arg-type,return-value]
    assert check() == "ConnectionRefusedError"


@pytest.mark.postgres
def test_readyz_flips_when_postgres_is_cut_off_and_back(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    """An in-process distributed web app: database and feed checks, through a proxy."""
    proxy = SwitchableProxy(
        postgres_env["POSTGRES_HOST"], int(postgres_env["POSTGRES_PORT"])
    )
    Cluster(postgres_env, tmp_path).init_db()
    env = {
        **postgres_env,
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(proxy.port),
        "POSTGRES_CONNECT_TIMEOUT": "2",
    }
    try:
        bank = DistributedBank(env)
        with TestClient(create_app(bank), base_url="http://localhost") as client:
            wait_for(lambda: client.get("/readyz").status_code == 200, 10, "not ready")
            assert client.get("/readyz").json()["checks"] == {
                "database": "ok",
                "feed": "ok",
            }
            proxy.refuse()
            wait_for(
                lambda: client.get("/readyz").status_code == 503, 10, "still ready"
            )
            answer = client.get("/readyz").json()
            assert answer["status"] == "not ready"
            assert "database" in answer["failed"]
            assert client.get("/healthz").status_code == 200
            proxy.accept()
            wait_for(
                lambda: client.get("/readyz").status_code == 200, 30, "not ready again"
            )
            assert client.get("/readyz").json()["checks"]["feed"] == "ok"
    finally:
        proxy.close()


@pytest.mark.postgres
def test_a_distributed_web_process_is_not_ready_while_postgres_is_cut_off(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    """A real `bankaccounts serve --distributed` process, probed with a foreign Host."""
    proxy = SwitchableProxy(
        postgres_env["POSTGRES_HOST"], int(postgres_env["POSTGRES_PORT"])
    )
    cluster = Cluster(postgres_env, tmp_path, proxy)
    cluster.init_db()
    try:
        url = cluster.add_web("web")
        host = "10.20.30.40:8080"  # a load balancer or kubelet: the pod's address
        assert get(f"{url}/healthz", host) == (200, {"status": "ok"})
        wait_for(lambda: get(f"{url}/readyz", host)[0] == 200, 10, "not ready")
        proxy.refuse()
        wait_for(lambda: get(f"{url}/readyz", host)[0] == 503, 15, "still ready")
        _, answer = get(f"{url}/readyz", host)
        assert answer["status"] == "not ready"
        assert set(answer["failed"]) <= {"database", "feed"}
        assert get(f"{url}/healthz", host)[0] == 200
        proxy.accept()
        wait_for(lambda: get(f"{url}/readyz", host)[0] == 200, 40, "not ready again")
        assert get(f"{url}/readyz", host)[1]["checks"] == {
            "database": "ok",
            "feed": "ok",
        }
    finally:
        cluster.stop_all()
        proxy.close()

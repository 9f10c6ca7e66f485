"""Backpressure: money requests are refused while the backlog passes its bound.

The backlog is made large deterministically: commands are recorded into the bank's
Commands database by an application of the test's own, which prompts nobody, and
the bank's catch-up (which would process them) waits an hour. So the Sagas leave
them until the test prompts them.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest
from eventsourcing.persistence import OperationalError

from bankaccounts.backpressure import Backlog, Backpressure, read_backlog
from bankaccounts.cli import main
from bankaccounts.deploy.bootstrap import system_env
from bankaccounts.exceptions import BusyError
from bankaccounts.system.commands import Commands
from tests.waiting import wait_for
from tests.webclient import bank_client, deposit, open_account

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

    from tests.cluster import Cluster

BOUND = 3


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    # No catch-up while the test runs: only the test prompts the Sagas.
    env = {**system_env(data_dir, environ={}), "BANKACCOUNTS_CATCH_UP_INTERVAL": "3600"}
    yield from bank_client(env, max_backlog=BOUND)


def bank_of(client: TestClient) -> Any:
    return client.app.state.bank  # type: ignore[attr-defined]


def last_command(client: TestClient) -> int:
    """Commands' last notification id."""
    return bank_of(client).commands.recorder.max_notification_id() or 0


def system(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/system")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def record_behind_the_sagas(data_dir: Path, account_id: str, count: int) -> None:
    """Records deposits into the bank's Commands database, prompting nobody."""
    commands = Commands(env=system_env(data_dir, environ={}))
    try:
        for _ in range(count):
            commands.deposit_funds(UUID(account_id), Decimal("1.00"))
    finally:
        commands.close()


def make_busy(client: TestClient, data_dir: Path, account_id: str) -> int:
    """Leaves BOUND commands waiting; returns Commands' last notification id."""
    record_behind_the_sagas(data_dir, account_id, BOUND)
    wait_for(
        lambda: system(client)["backlog"] == {"commands": BOUND, "bound": BOUND},
        message="the backlog did not show",
    )
    return last_command(client)


def catch_up(client: TestClient) -> None:
    """Prompts the Sagas (and the rest) as the catch-up would; waits till done."""
    bank_of(client).catch_up.catch_up()
    wait_for(
        lambda: system(client)["backlog"]["commands"] == 0,
        message="the Sagas did not catch up",
    )


def test_money_requests_over_the_bound_are_refused_and_record_nothing(
    client: TestClient, data_dir: Path
) -> None:
    alice = open_account(client, "Alice")
    bob = open_account(client, "Bob")
    deposit(client, alice, "10.00")
    latest = make_busy(client, data_dir, alice)

    for path, body in (
        (f"/api/accounts/{alice}/deposits", {"amount": "1.00"}),
        (f"/api/accounts/{alice}/withdrawals", {"amount": "1.00"}),
        (
            "/api/transfers",
            {"debit_account_id": alice, "credit_account_id": bob, "amount": "1.00"},
        ),
        (f"/api/accounts/{alice}/deposits?wait=true", {"amount": "1.00"}),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 503, (path, response.text)
        retry_after = int(response.headers["Retry-After"])
        assert retry_after >= 1
        assert response.json() == {
            "detail": f"The bank is busy: try again in {retry_after} "
            + ("second" if retry_after == 1 else "seconds")
        }
    assert last_command(client) == latest  # nothing recorded

    catch_up(client)
    response = client.post(f"/api/accounts/{alice}/deposits", json={"amount": "1.00"})
    assert response.status_code == 202, response.text
    assert last_command(client) == latest + 1


def test_a_retry_of_a_recorded_request_is_answered_while_busy(
    client: TestClient, data_dir: Path
) -> None:
    alice = open_account(client, "Alice")
    headers = {"Idempotency-Key": "deposit-1"}
    path = f"/api/accounts/{alice}/deposits"
    first = client.post(path, json={"amount": "5.00"}, headers=headers)
    assert first.status_code in (200, 202), first.text
    latest = make_busy(client, data_dir, alice)

    retry = client.post(path, json={"amount": "5.00"}, headers=headers)
    assert retry.status_code in (200, 202), retry.text
    assert retry.json()["transaction_id"] == first.json()["transaction_id"]
    other = client.post(
        path, json={"amount": "5.00"}, headers={"Idempotency-Key": "deposit-2"}
    )
    assert other.status_code == 503, other.text
    assert last_command(client) == latest


def test_the_websocket_answers_busy_with_when_to_retry(
    client: TestClient, data_dir: Path
) -> None:
    alice = open_account(client, "Alice")
    latest = make_busy(client, data_dir, alice)
    with client.websocket_connect("/ws") as ws:
        ws.send_text(
            json.dumps(
                {
                    "type": "deposit",
                    "request_id": "r1",
                    "credit_account_id": alice,
                    "amount": "1.00",
                }
            )
        )
        reply = next(
            message
            for message in iter(ws.receive_json, None)
            if message.get("request_id") == "r1"
        )
    retry_after = reply["retry_after"]
    assert isinstance(retry_after, int)
    assert retry_after >= 1
    unit = "second" if retry_after == 1 else "seconds"
    assert reply == {
        "type": "error",
        "request_id": "r1",
        "error": f"The bank is busy: try again in {retry_after} {unit}",
        "retry_after": retry_after,
    }
    assert last_command(client) == latest


def test_status_shows_the_backlog_and_the_bound(
    client: TestClient, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = open_account(client, "Alice")
    assert system(client)["backlog"] == {"commands": 0, "bound": BOUND}
    make_busy(client, data_dir, alice)
    answer = system(client)
    assert answer["backlog"] == {"commands": BOUND, "bound": BOUND}
    assert {"healthy", "followers"} <= set(answer)

    common = ["--data-dir", str(data_dir), "--stuck-after", "0"]
    main(["status", "--json", "--max-backlog", str(BOUND), *common])
    shown = json.loads(capsys.readouterr().out)  # a list of followers, as always
    assert [f["follower"] for f in shown] == [
        f["follower"] for f in answer["followers"]
    ]
    main(["status", "--max-backlog", "0", *common])
    text = capsys.readouterr().out
    assert f"Backlog: {BOUND} commands waiting for the Sagas (no bound)" in text
    main(["status", "--max-backlog", str(BOUND), *common])
    text = capsys.readouterr().out
    assert (
        f"Backlog: {BOUND} commands waiting for the Sagas, bound {BOUND} "
        "(refusing money requests)"
    ) in text


def test_no_bound_accepts_whatever_the_backlog(data_dir: Path) -> None:
    env = {**system_env(data_dir, environ={}), "BANKACCOUNTS_CATCH_UP_INTERVAL": "3600"}
    for client in bank_client(env, max_backlog=0):
        alice = open_account(client, "Alice")
        record_behind_the_sagas(data_dir, alice, BOUND + 2)
        wait_for(lambda: system(client)["backlog"]["commands"] == BOUND + 2)  # noqa: B023
        assert system(client)["backlog"]["bound"] is None
        response = client.post(
            f"/api/accounts/{alice}/deposits", json={"amount": "1.00"}
        )
        assert response.status_code == 202, response.text


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeRecorder:
    def __init__(self) -> None:
        self.latest = 0
        self.position = 0
        self.reads = 0

    def max_notification_id(self) -> int:
        self.reads += 1
        return self.latest

    def max_tracking_id(self, name: str) -> int:
        assert name == "Commands"
        return self.position


class FakeApp:
    def __init__(self, name: str, recorder: FakeRecorder) -> None:
        self.name = name
        self.recorder = recorder


def test_the_figure_is_cached_and_retry_after_follows_the_sagas_rate() -> None:
    recorder = FakeRecorder()
    apps: dict[str, Any] = {
        "Commands": FakeApp("Commands", recorder),
        "Sagas": FakeApp("Sagas", recorder),
    }
    clock = FakeClock()
    backpressure = Backpressure(lambda: apps, 100, max_age=0.2, clock=clock)
    assert backpressure.backlog() == Backlog(0, 100)
    recorder.latest = 150
    clock.now = 0.1
    assert backpressure.backlog() == Backlog(0, 100)  # the figure last read
    assert recorder.reads == 1
    clock.now = 0.2
    assert backpressure.backlog() == Backlog(150, 100)
    with pytest.raises(BusyError) as busy:
        backpressure.check()
    # The Sagas did not move: the rate measured on this machine.
    assert busy.value.retry_after == 1
    # They took up 10 commands a second: 51 over the bound take 6 s.
    for _ in range(10):
        clock.now += 0.5
        recorder.position += 5
        recorder.latest += 5
        backpressure.backlog()
    assert backpressure.rate() == pytest.approx(10.0)
    with pytest.raises(BusyError) as busy:
        backpressure.check()
    assert busy.value.retry_after == 6
    assert read_backlog(apps) == 150


@pytest.mark.postgres
def test_a_distributed_web_process_refuses_while_the_sagas_worker_is_stopped(
    cluster: Cluster,
) -> None:
    cluster.process_env["BANKACCOUNTS_MAX_BACKLOG"] = str(BOUND)
    url = cluster.add_web("web")
    staff = cluster.signed_in(url)
    status, account = staff.request("POST", "/api/accounts", {"name": "Alice"})
    assert status == 201, account
    path = f"/api/accounts/{account['id']}/deposits"

    cluster.processes["sagas"].stop()
    accepted = 0

    def refused() -> bool:
        nonlocal accepted
        status, answer = staff.request("POST", path, {"amount": "1.00"})
        assert status in (202, 503), (status, answer)
        accepted += status == 202
        return status == 503

    wait_for(refused, 30, "the web process never refused")
    assert accepted >= BOUND
    result = cluster.cli("status", "--max-backlog", str(BOUND))
    assert (
        f"Backlog: {accepted} commands waiting for the Sagas, bound {BOUND}"
        in result.stdout
    )
    status, system_answer = staff.request("GET", "/api/system")
    assert system_answer["backlog"] == {"commands": accepted, "bound": BOUND}

    cluster.start("sagas")
    wait_for(
        lambda: staff.request("POST", path, {"amount": "1.00"})[0] == 202,
        60,
        "the web process did not accept again",
    )


def test_a_lost_database_connection_is_503_and_the_retry_records_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write committed, its acknowledgement was lost: 503, not 500; the
    client's retry with the same Idempotency-Key is answered, recorded once."""
    alice = open_account(client, "Alice")
    commands = bank_of(client).commands
    record = commands.deposit_funds

    def acknowledgement_lost(*args: Any, **kwargs: Any) -> Any:
        record(*args, **kwargs)
        msg = "consuming input failed: server closed the connection unexpectedly"
        raise OperationalError(msg)

    monkeypatch.setattr(commands, "deposit_funds", acknowledgement_lost)
    path = f"/api/accounts/{alice}/deposits"
    headers = {"Idempotency-Key": "lost-ack-1"}
    response = client.post(path, json={"amount": "1.00"}, headers=headers)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert "database did not answer" in response.json()["detail"]

    monkeypatch.undo()
    retry = client.post(f"{path}?wait=true", json={"amount": "1.00"}, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "succeeded"
    assert client.get(f"/api/accounts/{alice}").json()["balance"] == "1.00"

"""The distributed deployment: every process application and web process its own OS
process, on one PostgreSQL database. Real processes, real connections, real kills.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest

from bankaccounts.deploy.worker import WORKER_NAMES
from tests.cluster import (
    WORKERS,
    Cluster,
    FeedRecorder,
    feed_positions,
    request,
    wait_until_quiet,
)
from tests.waiting import wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from tests.signin import Session

pytestmark = pytest.mark.postgres


def run_cli(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`python -m bankaccounts ARGS` with no PostgreSQL settings, SQLite in data_dir."""
    return subprocess.run(
        [sys.executable, "-m", "bankaccounts", *args],
        env={"PATH": "/usr/bin:/bin", "BANKACCOUNTS_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def web_process(cluster: Cluster, name: str, workers: int = 1) -> Session:
    """Starts a web process; the staff user, signed in there."""
    return cluster.signed_in(cluster.add_web(name, workers))


def open_account(web: Session, name: str) -> str:
    """Opens an account through a web process; returns its id."""
    status, body = web.request("POST", "/api/accounts", {"name": name})
    assert status == 201, body
    return str(body["id"])


def finished(web: Session, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Posts a money command with ?wait=true; returns the finished transaction."""
    status, answer = web.request("POST", f"{path}?wait=true", body)
    assert status == 200, answer
    return answer


def deposit(web: Session, account_id: str, amount: str) -> dict[str, Any]:
    """Deposits and waits for the outcome."""
    return finished(web, f"/api/accounts/{account_id}/deposits", {"amount": amount})


def transfer(web: Session, debit: str, credit: str, amount: str) -> dict[str, Any]:
    """Transfers and waits for the outcome."""
    body = {"debit_account_id": debit, "credit_account_id": credit, "amount": amount}
    return finished(web, "/api/transfers", body)


def balance(web: Session, account_id: str) -> Decimal:
    """The balance a web process shows."""
    status, body = web.request("GET", f"/api/accounts/{account_id}")
    assert status == 200, body
    return Decimal(body["balance"])


def test_two_web_processes_push_the_whole_feed_to_their_clients(
    cluster: Cluster,
) -> None:
    web1 = web_process(cluster, "web1")
    web2 = web_process(cluster, "web2")
    feeds = [FeedRecorder(web1), FeedRecorder(web2)]
    for feed in feeds:
        feed.start()
    try:
        alice = open_account(web1, "Alice")
        bob = open_account(web2, "Bob")
        assert deposit(web1, alice, "100.00")["status"] == "succeeded"
        assert transfer(web2, alice, bob, "30.00")["status"] == "succeeded"
        failed = transfer(web1, bob, alice, "31.00")
        assert failed["status"] == "failed"
        assert failed["error"] == "Insufficient funds in Bob's account"
        # Emptied first: an account with money in it is not closed.
        status, _ = web2.request("POST", f"/api/accounts/{bob}/close")
        assert status == 409
        assert transfer(web2, bob, alice, "30.00")["status"] == "succeeded"
        status, _ = web2.request("POST", f"/api/accounts/{bob}/close")
        assert status == 200
        assert transfer(web1, alice, bob, "5.00")["status"] == "failed"

        wait_until_quiet(cluster)
        expected = feed_positions(cluster.env)
        for feed in feeds:
            wait_for(lambda f=feed: f.positions == expected, 20, "feed incomplete")
        assert feeds[0].messages == feeds[1].messages
        types = [m["type"] for m in feeds[0].messages]
        assert types.count("account_opened") == 2
        assert types.count("transaction_succeeded") == 3
        assert types.count("transaction_failed") == 2
        for web in (web1, web2):
            assert balance(web, alice) == Decimal("100.00")
            assert balance(web, bob) == Decimal("0.00")
    finally:
        for feed in feeds:
            feed.stop()


def balances_shown(message: Any, found: dict[str, str] | None = None) -> dict[str, str]:
    """Every account balance a feed message carries, by the account's id."""
    found = {} if found is None else found
    if isinstance(message, dict):
        if "id" in message and "balance" in message:
            found[message["id"]] = message["balance"]
        for value in message.values():
            balances_shown(value, found)
    elif isinstance(message, list):
        for value in message:
            balances_shown(value, found)
    return found


def test_each_customer_gets_only_their_feed_from_any_web_process(
    cluster: Cluster,
) -> None:
    from bankaccounts.system.interface import InterfaceApplication

    web1 = web_process(cluster, "web1")  # the staff user signs up first
    web2 = cluster.add_web("web2")
    alice = cluster.sign_in("alice", web1.url)
    bob = cluster.sign_in("bob", web2)
    assert {alice.user["role"], bob.user["role"]} == {"customer"}
    # Each customer's feed from the other process than the one they act on.
    feeds = {
        "staff": FeedRecorder(web1.at(web2)),
        "alice": FeedRecorder(alice.at(web2)),
        "bob": FeedRecorder(bob.at(web1.url)),
    }
    for feed in feeds.values():
        feed.start()
    try:
        alices = open_account(alice, "Alice")
        bobs = open_account(bob, "Bob")
        assert deposit(alice, alices, "50.00")["status"] == "succeeded"
        assert transfer(alice, alices, bobs, "20.00")["status"] == "succeeded"
        # Bob can neither see nor move Alice's money, on either process.
        for web in (bob, bob.at(web1.url)):
            status, _ = web.request("GET", f"/api/accounts/{alices}")
            assert status == 404
            status, _ = web.request(
                "POST",
                "/api/transfers",
                {"debit_account_id": alices, "credit_account_id": bobs, "amount": "1"},
            )
            assert status == 404
        # Signed out, nothing: neither the API nor the feed.
        for url in (web1.url, web2):
            status, _ = request("GET", f"{url}/api/state")
            assert status == 401
        anonymous = FeedRecorder(replace(alice, token="not-a-token"))
        with pytest.raises(AssertionError, match=r"HTTP 40[13]"):
            anonymous.start()

        wait_until_quiet(cluster)
        env = {**cluster.env, "CREATE_TABLE": "n", "POSTGRES_POOL_SIZE": "1"}
        interface = InterfaceApplication(env)
        try:
            expected = {
                "staff": feed_positions(cluster.env),
                "alice": [
                    m.position
                    for m in interface.view.select_feed(0, 500, UUID(alice.id))
                ],
                "bob": [
                    m.position for m in interface.view.select_feed(0, 500, UUID(bob.id))
                ],
            }
        finally:
            interface.close()
        for name, feed in feeds.items():
            wait_for(
                lambda f=feed, e=expected[name]: f.positions == e, 20, f"{name}'s feed"
            )
        assert len(expected["alice"]) < len(expected["staff"])
        # Bob hears of the payment, never of Alice's balance; Alice of hers only.
        bobs_messages = feeds["bob"].messages
        assert any(m["type"] == "transaction_succeeded" for m in bobs_messages)
        for name, own in (("alice", alices), ("bob", bobs)):
            for message in feeds[name].messages:
                assert set(balances_shown(message)) <= {own}, (name, message)
    finally:
        for feed in feeds.values():
            feed.stop()


def test_every_uvicorn_worker_of_a_web_process_pushes_the_whole_feed(
    cluster: Cluster,
) -> None:
    web = web_process(cluster, "web", workers=2)
    process = cluster.processes["web"]
    wait_for(
        lambda: process.last_run().count("Application startup complete") == 2,
        30,
        "two uvicorn workers",
    )
    feeds = [FeedRecorder(web) for _ in range(6)]
    for feed in feeds:
        feed.start()
    try:
        alice = open_account(web, "Alice")
        for amount in ("1.00", "2.00", "3.00"):
            assert deposit(web, alice, amount)["status"] == "succeeded"
        wait_until_quiet(cluster)
        expected = feed_positions(cluster.env)
        assert len(expected) == 1 + 3 * 3
        for feed in feeds:
            wait_for(lambda f=feed: f.positions == expected, 20, "feed incomplete")
    finally:
        for feed in feeds:
            feed.stop()
    process.signal(signal.SIGTERM)
    assert process.wait() == 0


def test_workers_reconnect_after_their_connections_are_terminated(
    cluster: Cluster,
) -> None:
    web = web_process(cluster, "web")
    feed = FeedRecorder(web)
    feed.start()
    try:
        alice = open_account(web, "Alice")
        assert deposit(web, alice, "10.00")["status"] == "succeeded"
        pids = {name: p.popen.pid for name, p in cluster.processes.items() if p.popen}

        for round_ in range(2):
            killed = cluster.terminate_connections((*WORKERS, "web"))
            assert killed >= 3
            # Recorded while the workers reconnect; finished once they have.
            answer = deposit(web, alice, "1.00")
            assert answer["status"] == "succeeded", (round_, answer)

        assert balance(web, alice) == Decimal("12.00")
        for name in WORKERS:
            process = cluster.processes[name]
            assert process.is_running()
            wait_for(lambda p=process: "reconnected" in p.text(), 20, name)
        still = {name: p.popen.pid for name, p in cluster.processes.items() if p.popen}
        assert still == pids  # no process was restarted
        expected = feed_positions(cluster.env)
        wait_for(lambda: feed.positions == expected, 20, "feed incomplete")
    finally:
        feed.stop()


def test_sigterm_stops_a_worker_cleanly_and_status_reports_its_lag(
    cluster: Cluster,
) -> None:
    web = web_process(cluster, "web")
    alice = open_account(web, "Alice")
    assert deposit(web, alice, "10.00")["status"] == "succeeded"
    sagas = cluster.processes["sagas"]
    sagas.signal(signal.SIGTERM)
    assert sagas.wait() == 0
    log = sagas.last_run()
    assert "Sagas: stopping at Commands at 1, Accounts at 2" in log
    assert "Sagas: stopped" in log
    assert "Traceback" not in log

    # Commands recorded while Sagas is down wait for it.
    pending = [
        web.request("POST", f"/api/accounts/{alice}/deposits", {"amount": "1.00"})
        for _ in range(3)
    ]
    assert all(status == 202 for status, _ in pending)
    # Its heartbeat row went with it, while the other workers' beat: down at once.
    result = cluster.cli("status", "--stuck-after", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    sagas_row = next(
        line for line in result.stdout.splitlines() if line.startswith("Sagas")
    )
    assert sagas_row.split() == ["Sagas", "Commands", "1", "4", "3", "down"]

    cluster.start("sagas")
    table = wait_until_quiet(cluster)
    assert "stuck" not in table
    assert "behind" not in table
    assert balance(web, alice) == Decimal("13.00")
    result = cluster.cli("status", "--json")
    assert result.returncode == 0
    rows = json.loads(result.stdout)
    assert {(r["follower"], r["upstream"]) for r in rows} == {
        ("Sagas", "Commands"),
        ("Sagas", "Accounts"),
        ("Accounts", "Sagas"),
        ("Interface", "Accounts"),
        ("Interface", "Sagas"),
    }
    assert all(r["lag"] == 0 and not r["stuck"] for r in rows)
    assert {r["state"] for r in rows} == {"up to date"}
    assert {(w["kind"], w["state"]) for r in rows for w in r["workers"]} == {
        ("sagas", "running"),
        ("accounts", "running"),
        ("interface", "running"),
    }


def test_a_second_worker_of_each_kind_waits_and_takes_over(cluster: Cluster) -> None:
    web = web_process(cluster, "web")
    alice = open_account(web, "Alice")
    for name in WORKERS:
        label = WORKER_NAMES[name]
        second = cluster.add_worker(name, instance=2)
        waiting = f"{label}: waiting for the other {label} worker to stop"
        (line,) = [x for x in second.last_run().splitlines() if waiting in x]
        assert "WARNING" in line
    assert deposit(web, alice, "10.00")["status"] == "succeeded"

    for name in WORKERS:  # SIGKILL: each lock goes with its holder's connection
        cluster.kill(name)
    for name in WORKERS:
        label = WORKER_NAMES[name]
        second = cluster.processes[f"{name}-2"]
        taking_over = f"{label}: the other {label} worker has stopped; taking over"
        wait_for(lambda p=second, t=taking_over: t in p.last_run(), 30, name)
    assert deposit(web, alice, "5.00")["status"] == "succeeded"
    for name in WORKERS:  # back again, they wait their turn
        cluster.start(name)
        assert "waiting for the other" in cluster.processes[name].last_run()

    wait_until_quiet(cluster)
    assert balance(web, alice) == Decimal("15.00")
    for process in cluster.processes.values():
        assert "Traceback" not in process.text(), process.name


def test_a_worker_that_loses_the_database_retries_with_backoff(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    """At start an unreachable database stops the worker (test_settings.py); once it
    has started, losing the database makes it retry with backoff, for ever."""
    import socket

    from tests.tcpproxy import TCPProxy

    proxy = TCPProxy(postgres_env["POSTGRES_HOST"], int(postgres_env["POSTGRES_PORT"]))
    cluster = Cluster(
        {**postgres_env, "POSTGRES_CONNECT_TIMEOUT": "1"}, tmp_path, proxy
    )
    cluster.init_db()
    try:
        process = cluster.add_worker("sagas")
        # Connections are refused from now on: the listener is gone.
        proxy.listener.shutdown(socket.SHUT_RDWR)
        proxy.close()
        wait_for(lambda: process.text().count("reconnecting in") >= 4, 30, "retries")
        delays = [
            line.rsplit("reconnecting in ", 1)[1]
            for line in process.text().splitlines()
            if "reconnecting in" in line
        ]
        # The lost connection, then the same refusal again and again, each attempt
        # waiting twice as long (a new error starts from the first delay again).
        assert delays[1:4] == ["0.5 s", "1.0 s", "2.0 s"]
        assert "Sagas: OperationalError" in process.text()
        assert process.is_running()
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
    finally:
        cluster.stop_all()
        proxy.close()


def cluster_process(cluster: Cluster, name: str) -> Any:
    """A worker process of the cluster, not yet started."""
    from tests.cluster import Process

    return Process(
        name,
        ["worker", name],
        {**cluster.env, "PGAPPNAME": f"{cluster.tag}-{name}"},
        cluster.logs_dir / f"{name}.log",
    )


def test_init_db_can_run_again(postgres_env: dict[str, str], tmp_path: Path) -> None:
    cluster = Cluster(postgres_env, tmp_path)
    first = cluster.cli("init-db")
    second = cluster.cli("init-db")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert second.stdout.splitlines() == [
        "Commands: tables ready",
        "Sagas: tables ready",
        "Accounts: tables ready",
        "Interface: tables ready",
        "Users: tables ready",
    ]


def test_status_before_init_db_says_what_to_do(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    result = Cluster(postgres_env, tmp_path).cli("status")
    assert result.returncode == 2
    assert "has the bank been started, or init-db run?" in result.stderr


@pytest.mark.parametrize(
    "args", [["worker", "sagas"], ["init-db"], ["serve", "--distributed"]]
)
def test_the_distributed_commands_need_postgres(
    args: list[str], tmp_path: Path
) -> None:
    result = run_cli(args, tmp_path)
    assert result.returncode == 2
    assert "PERSISTENCE_MODULE=eventsourcing.postgres" in result.stderr


def test_several_web_workers_need_the_distributed_mode(tmp_path: Path) -> None:
    result = run_cli(["serve", "--workers", "2"], tmp_path)
    assert result.returncode == 2
    assert "--workers above 1 needs --distributed" in result.stderr


def test_status_of_the_embedded_bank(tmp_path: Path) -> None:
    from bankaccounts.deploy.bootstrap import Bank, system_env

    bank = Bank(system_env(tmp_path / "data"))
    bank.start()
    try:
        account = bank.accounts.create_account("Alice")
        bank.commands.deposit_funds(account, Decimal("5.00"))
    finally:
        bank.stop()
    result = run_cli(["status"], tmp_path / "data")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "FOLLOWER",
        "UPSTREAM",
        "POSITION",
        "LATEST",
        "LAG",
        "STATE",
    ]
    assert lines[1].split() == ["Sagas", "Commands", "1", "1", "0", "up", "to", "date"]
    assert len(lines) == 7
    assert lines[6].startswith("Backlog: 0 commands waiting for the Sagas, bound ")

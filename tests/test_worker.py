"""The worker in this process: recovery, one worker of a kind, polling, failures."""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bankaccounts.deploy.bootstrap import distributed_env
from bankaccounts.deploy.status import SystemStatus, format_table
from bankaccounts.deploy.worker import PAGE_SIZE, TEARDOWN_GRACE, Worker, lock_key
from bankaccounts.domainmodel import BankAccount
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from tests.cluster import Cluster, SilentServer, free_port
from tests.conftest import connect, postgres_settings
from tests.tcpproxy import TCPProxy
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from bankaccounts.readmodel import AccountView
    from bankaccounts.system.batching import Job
    from tests.cluster import Process

pytestmark = pytest.mark.postgres

BACKLOG = 6 * PAGE_SIZE  # a page, a full inbox, and more waiting


class FailingOnceInterface(InterfaceApplication):
    """Fails its first page, as if the database went away in the middle of it."""

    name = "Interface"
    failures: list[int] = []

    def process_events(self, jobs: list[Job]) -> None:
        if not self.failures:
            self.failures.append(len(jobs))
            msg = "the first page fails"
            raise RuntimeError(msg)
        super().process_events(jobs)


def test_a_page_that_fails_with_a_full_inbox_is_processed_again(
    postgres_env: dict[str, str],
) -> None:
    env = {**postgres_env, "CREATE_TABLE": "y"}
    for name in BankAccountSystem().nodes:
        BankAccountSystem().get_app_cls(name)(env=env).close()
    accounts = Accounts(env)
    try:
        accounts.save(*[BankAccount(name=f"Customer {n}") for n in range(BACKLOG)])
    finally:
        accounts.close()

    worker = Worker("Interface", distributed_env(postgres_env), first_retry_delay=0.1)
    worker.follower_class = FailingOnceInterface
    FailingOnceInterface.failures.clear()
    FailingOnceInterface.worker = worker
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        # The runners fill the inbox while the first page fails; the worker must
        # close it, stop them, and start again from the tracking position.
        wait_for(lambda: worker.reconnects == 1, 30, "no reconnect")
        view: Any = InterfaceApplication(distributed_env(postgres_env))
        try:
            wait_for(lambda: len(every_account(view)) == BACKLOG, 30, "backlog")
        finally:
            view.close()
        assert FailingOnceInterface.failures == [PAGE_SIZE]
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()


@pytest.fixture
def tables(postgres_env: dict[str, str]) -> dict[str, str]:
    """Every application's tables made, as init-db does; the workers' environment."""
    env = {**postgres_env, "CREATE_TABLE": "y"}
    for name in BankAccountSystem().nodes:
        BankAccountSystem().get_app_cls(name)(env=env).close()
    return distributed_env(postgres_env)


class RunningWorker:
    """A worker running in a thread of this process, stopped at the end."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=worker.run)
        self.thread.start()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def start_worker() -> Iterator[Callable[..., Worker]]:
    """Starts workers in threads; stops them after the test."""
    running: list[RunningWorker] = []

    def start(name: str, env: dict[str, str], **options: Any) -> Worker:
        worker = Worker(name, env, **options)
        running.append(RunningWorker(worker))
        return worker

    yield start
    for each in running:
        each.worker.stop()
    for each in running:
        each.stop()


class QuietAccounts(Accounts):
    """Records without NOTIFY, as if the notification were lost on the way."""

    name = "Accounts"

    def construct_recorder(self) -> Any:
        recorder = super().construct_recorder()
        recorder._notify_channel = lambda curs: None
        return recorder


def every_account(interface: InterfaceApplication) -> list[AccountView]:
    """Every account the read model shows, page by page."""
    accounts, cursor = interface.view.list_accounts(limit=PAGE_SIZE)
    while cursor is not None:
        page, cursor = interface.view.list_accounts(after=cursor, limit=PAGE_SIZE)
        accounts += page
    return accounts


def shown_accounts(env: dict[str, str]) -> list[str | None]:
    """The names of the accounts the read model shows."""
    view = InterfaceApplication(env)
    try:
        return [account.name for account in every_account(view)]
    finally:
        view.close()


def test_events_whose_notify_was_lost_are_processed_while_all_is_idle(
    tables: dict[str, str], start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker("Interface", tables, poll_interval=0.5)
    wait_for(worker.started.is_set, 30, "the worker did not start")
    accounts = QuietAccounts(tables)
    try:
        accounts.create_account("Quiet")
    finally:
        accounts.close()
    # Without polling, the subscription waits for a NOTIFY that never comes.
    wait_for(lambda: shown_accounts(tables) == ["Quiet"], 10, "not processed")


def test_a_second_worker_of_a_kind_waits_and_takes_over(
    tables: dict[str, str],
    start_worker: Callable[..., Worker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bankaccounts.deploy.worker")
    first = start_worker("Interface", tables)
    wait_for(first.started.is_set, 30, "the first worker did not start")
    second = start_worker("Interface", tables)
    waiting = "Interface: waiting for the other Interface worker to stop"
    wait_for(lambda: waiting in caplog.text, 30, "the second did not wait")
    assert [r.levelname for r in caplog.records if r.message == waiting] == ["WARNING"]
    assert not second.started.is_set()

    first.stop()
    wait_for(second.started.is_set, 30, "the second did not take over")
    assert "Interface: the other Interface worker has stopped; taking over" in (
        caplog.text
    )
    accounts = Accounts(tables)
    try:
        accounts.create_account("After")
    finally:
        accounts.close()
    wait_for(lambda: shown_accounts(tables) == ["After"], 30, "not processed")


def test_a_worker_whose_lock_connection_ends_stops_and_locks_again(
    tables: dict[str, str], start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker("Interface", tables, first_retry_delay=0.1)
    wait_for(worker.started.is_set, 30, "the worker did not start")
    key = lock_key(tables["POSTGRES_SCHEMA"], "Interface")
    with connect(postgres_settings()) as connection:
        # An advisory lock on a bigint key shows its halves as classid and objid.
        (pid,) = connection.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",
            (key,),
        ).fetchone() or (None,)
        assert pid is not None, "no lock held"
        connection.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(lambda: worker.reconnects == 1, 30, "the worker did not notice")
    wait_for(worker.started.is_set, 30, "the worker did not lock again")
    accounts = Accounts(tables)
    try:
        accounts.create_account("After")
    finally:
        accounts.close()
    wait_for(lambda: shown_accounts(tables) == ["After"], 30, "not processed")


class PoisonedInterface(InterfaceApplication):
    """Cannot show an account named Poison, as if a bug met an odd event."""

    name = "Interface"
    poisoned = True

    def policy(self, domain_event: Any, processing_event: Any) -> None:
        if (
            self.poisoned
            and isinstance(domain_event, BankAccount.Created)  # type: ignore[attr-defined]
            and domain_event.name == "Poison"
        ):
            msg = "cannot show this account"
            raise RuntimeError(msg)
        super().policy(domain_event, processing_event)


def test_a_worker_failing_on_one_event_says_so_and_backs_off(
    tables: dict[str, str],
    start_worker: Callable[..., Worker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bankaccounts.deploy.worker")
    accounts = Accounts(tables)
    try:
        for name in ("Before", "Poison", "After"):
            accounts.create_account(name)
    finally:
        accounts.close()
    PoisonedInterface.poisoned = True
    worker = Worker("Interface", tables, first_retry_delay=0.1, max_retry_delay=0.8)
    worker.follower_class = PoisonedInterface
    running = RunningWorker(worker)
    try:
        wait_for(lambda: worker.reconnects >= 5, 30, "no repeated failures")
        position = 2  # Before's Created is 1, Poison's 2
        failed = [
            r
            for r in caplog.records
            if r.message.startswith(
                f"Interface: failed at Accounts position {position}"
            )
        ]
        assert failed
        assert all(r.levelname == "ERROR" for r in failed)
        assert "BankAccount.Created" in failed[-1].message
        assert "RuntimeError: cannot show this account" in failed[-1].message
        # The same error again and again: the delay doubles up to its limit.
        delays = [
            float(r.message.rsplit("reconnecting in ", 1)[1].split()[0])
            for r in caplog.records
            if "reconnecting in" in r.message
        ]
        assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 0.8], delays
        # With the traceback of the error.
        assert any(
            r.exc_info and "reconnecting in" in r.message for r in caplog.records
        )
        # status shows it, and the events before it were processed.
        assert shown_accounts(tables) == ["Before"]
        statuses = {(s.follower, s.upstream): s for s in read_status(tables)}
        failing = statuses[("Interface", "Accounts")]
        assert failing.state == "failing"
        assert failing.failure is not None
        assert failing.failure.position == position
        assert failing.failure.attempts >= 2
        assert "cannot show this account" in format_table(list(statuses.values()))

        PoisonedInterface.poisoned = False  # the fix is deployed
        wait_for(lambda: len(shown_accounts(tables)) == 3, 30, "not past the event")
        wait_for(
            lambda: read_status(tables)[-2].failure is None, 30, "failure not cleared"
        )
    finally:
        running.stop()


def read_status(env: dict[str, str]) -> list[Any]:
    """The status of every follower, as `bankaccounts status` reads it."""
    status = SystemStatus(env)
    try:
        return status.read()
    finally:
        status.close()


# In OS processes of their own: SIGTERM at any moment, the health port.


@pytest.fixture
def proxied_cluster(
    postgres_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Cluster, TCPProxy]]:
    """Tables made; the workers to be started reach PostgreSQL through a proxy."""
    settings = postgres_settings()
    proxy = TCPProxy(settings["POSTGRES_HOST"], int(settings["POSTGRES_PORT"]))
    cluster = Cluster(postgres_env, tmp_path, proxy=proxy)
    cluster.init_db()
    try:
        yield cluster, proxy
    finally:
        cluster.stop_all()
        proxy.close()


def stop_time(process: Process) -> float:
    """SIGTERM; the seconds until the process has ended (asserting a clean exit)."""
    sent = time.monotonic()
    process.signal(signal.SIGTERM)
    assert process.wait(30) == 0, process.last_run()
    return time.monotonic() - sent


@pytest.mark.parametrize("moment", ["first attempt", "after the failure"])
def test_sigterm_during_a_connect_attempt_ends_the_worker_at_once(
    proxied_cluster: tuple[Cluster, TCPProxy], moment: str
) -> None:
    cluster, proxy = proxied_cluster
    worker = cluster.add_worker("sagas")
    silent = SilentServer()
    try:
        # The server goes dark: connections are cut, new ones never answered.
        proxy.target = silent.address
        before = proxy.accepted
        proxy.cut(random.Random(0))
        if moment == "after the failure":
            # Past the failure and its teardown: the follower connects again.
            wait_for(lambda: "reconnecting in" in worker.last_run(), 30, "no reconnect")
            before = proxy.accepted
        # A connect attempt waits for a server that says nothing.
        wait_for(lambda: proxy.accepted > before, 30, "no connect attempt")
        seconds = stop_time(worker)
    finally:
        silent.close()
    print(f"SIGTERM during a connect attempt ({moment}): ended in {seconds:.2f} s")
    # Measured: 0.2 s; 1.2 s when the cut had not been noticed yet (the runners'
    # teardown, waiting on their connect attempts, has TEARDOWN_GRACE).
    assert seconds < 1 + TEARDOWN_GRACE
    log = worker.last_run()
    assert "Sagas: stopped" in log
    assert "Traceback" not in log


def test_sigterm_while_waiting_for_the_lock_ends_the_worker_at_once(
    proxied_cluster: tuple[Cluster, TCPProxy],
) -> None:
    cluster, _ = proxied_cluster
    schema = cluster.env["POSTGRES_SCHEMA"]
    with connect(postgres_settings()) as holder:
        # Held by this connection: the worker waits for it.
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(schema, "Sagas"),))
        worker = cluster.add_worker("sagas")
        assert "waiting for the other Sagas worker" in worker.last_run()
        seconds = stop_time(worker)
    print(f"SIGTERM while waiting for the lock: ended in {seconds:.2f} s")
    assert seconds < 1.5
    assert "Traceback" not in worker.last_run()


def test_a_busy_worker_logs_its_progress_and_an_idle_one_does_not(
    tables: dict[str, str],
    start_worker: Callable[..., Worker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bankaccounts.deploy.worker")
    worker = start_worker("Interface", tables, progress_interval=0.5)
    wait_for(worker.started.is_set, 30, "the worker did not start")
    accounts = Accounts(tables)
    try:
        accounts.save(*[BankAccount(name=f"Customer {n}") for n in range(BACKLOG)])
    finally:
        accounts.close()

    def progress_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "events in" in r.message]

    def processed() -> int:
        return sum(getattr(r, "events", 0) for r in progress_lines())

    wait_for(lambda: processed() == BACKLOG, 30, "no progress lines")
    last = progress_lines()[-1]
    assert last.levelname == "INFO"
    assert last.message.startswith("Interface: processed ")
    assert f"Accounts at {BACKLOG} (lag 0)" in last.message
    # The same as fields, for the JSON format.
    assert last.positions == {"Accounts": BACKLOG, "Sagas": 0}  # type: ignore[attr-defined]
    assert last.lag == {"Accounts": 0, "Sagas": 0}  # type: ignore[attr-defined]
    assert last.events_per_second > 0  # type: ignore[attr-defined]

    # Idle: intervals pass without a line.
    lines, windows = len(progress_lines()), worker.progress.windows
    wait_for(lambda: worker.progress.windows >= windows + 2, 30, "no interval ended")
    assert len(progress_lines()) == lines


def get(url: str) -> tuple[int, bytes]:
    """GET url: the status and the body (an error status too)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_health_port_answers_for_a_running_and_a_waiting_worker(
    proxied_cluster: tuple[Cluster, TCPProxy],
) -> None:
    cluster, _ = proxied_cluster
    first_port, second_port = free_port(), free_port()
    cluster.add_worker("interface", options=("--health-port", str(first_port)))
    first = f"http://127.0.0.1:{first_port}"
    wait_for(lambda: get(f"{first}/readyz")[0] == 200, 30, "the first not ready")
    assert get(f"{first}/healthz")[0] == 200
    status, body = get(f"{first}/metrics")
    assert status == 200
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert "bankaccounts_follower_position" in names

    second_worker = cluster.add_worker(
        "interface", instance=2, options=("--health-port", str(second_port))
    )
    second = f"http://127.0.0.1:{second_port}"
    # Waiting for the lock: alive, not ready.
    assert get(f"{second}/healthz")[0] == 200
    assert get(f"{second}/readyz")[0] == 503

    cluster.kill("interface")
    wait_for(lambda: get(f"{second}/readyz")[0] == 200, 30, "the second not ready")
    assert second_worker.is_running()


def heartbeat_rows(env: dict[str, str]) -> list[tuple[Any, ...]]:
    """The workers' rows: kind and state."""
    with connect(postgres_settings()) as connection:
        return connection.execute(
            f'SELECT kind, state FROM "{env["POSTGRES_SCHEMA"]}".bankaccounts_workers'
        ).fetchall()


def test_a_worker_beats_while_it_runs_and_deletes_its_row_when_it_stops(
    tables: dict[str, str],
) -> None:
    worker = Worker("Interface", tables, heartbeat_interval=0.2)
    running = RunningWorker(worker)
    try:
        wait_for(lambda: heartbeat_rows(tables) == [("interface", "running")], 30)
        heartbeat = worker.heartbeat
        assert heartbeat is not None
        beats = heartbeat.beats
        wait_for(lambda: heartbeat.beats > beats + 2, 30, "no more beats")
    finally:
        running.stop()
    assert heartbeat_rows(tables) == []


def test_a_worker_without_the_heartbeat_table_says_to_run_init_db(
    tables: dict[str, str],
    start_worker: Callable[..., Worker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with connect(postgres_settings()) as connection:
        connection.execute(
            f'DROP TABLE "{tables["POSTGRES_SCHEMA"]}".bankaccounts_workers'
        )
    caplog.set_level(logging.INFO, logger="bankaccounts.deploy.worker")
    worker = start_worker("Interface", tables, heartbeat_interval=0.2)
    wait_for(worker.started.is_set, 30, "the worker did not start")
    warning = (
        "Interface: cannot keep its heartbeat: no table bankaccounts_workers; "
        "run bankaccounts init-db"
    )
    wait_for(lambda: warning in caplog.text, 30, "no warning")
    heartbeat = worker.heartbeat
    assert heartbeat is not None
    wait_for(lambda: heartbeat.attempts >= 4, 30, "no more attempts")
    # Said once, not at every beat; the worker follows all the same.
    assert caplog.text.count(warning) == 1
    assert heartbeat.beats == 0
    assert worker.started.is_set()

"""Fault injection: money moves while worker processes are killed and cut off.

A stream of random deposits, withdrawals, transfers, overdraft limits and closings
goes to two web processes, while at random moments the sagas, accounts and interface
workers are SIGKILLed and restarted, a second worker of a kind is started and stopped
(it waits for the first's lock, or takes over when the first dies), PostgreSQL
connections are terminated, and a TCP proxy between every process and PostgreSQL
cuts connections in mid-flight (so some commits are acknowledged to nobody).
Afterwards nothing may be lost, applied twice or shown wrongly.

The run is replayable: it prints its seed, and BANKACCOUNTS_FAULT_SEED=<seed> runs the
same operations and the same fault schedule again (the moments differ with timing).
BANKACCOUNTS_FAULT_OPERATIONS sets the number of operations (default 1,200).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest

from bankaccounts.domainmodel import BankAccount
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas
from tests.cluster import (
    WORKERS,
    Cluster,
    FeedRecorder,
    feed_positions,
    request,
    wait_until_quiet,
)
from tests.tcpproxy import TCPProxy
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ACCOUNTS = 20
OPERATIONS = int(os.environ.get("BANKACCOUNTS_FAULT_OPERATIONS", "1200"))
MIN_KILLS = 10
MIN_KILLS_EACH = 3  # of each worker
MIN_TERMINATIONS = 5
MIN_CUTS = 5  # by the proxy
MIN_SECOND_WORKERS_EACH = 1  # a second worker of each kind started (and stopped)
CLIENT_THREADS = 4
REQUEST_ATTEMPTS = 30
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@dataclass
class Operation:
    """One client request, decided in advance from the seed."""

    kind: str  # deposit, withdrawal, transfer, limit, close
    account: int
    other: int
    amount: str
    key: UUID
    web: int
    transaction_id: str | None = None


def plan(rng: random.Random, count: int) -> list[Operation]:
    """The operations, all drawn from the seeded generator."""
    kinds = ["deposit", "withdrawal", "transfer", "limit", "close"]
    weights = [40, 22, 35, 2.5, 0.5]
    operations = []
    for _ in range(count):
        kind = rng.choices(kinds, weights)[0]
        account, other = rng.sample(range(ACCOUNTS), 2)
        cents = rng.randint(1, 20_000)
        operations.append(
            Operation(
                kind=kind,
                account=account,
                other=other,
                amount=f"{cents // 100}.{cents % 100:02d}",
                key=UUID(int=rng.getrandbits(128), version=4),
                web=rng.randrange(2),
            )
        )
    return operations


@pytest.fixture
def proxied_cluster(postgres_env: dict[str, str], tmp_path: Path) -> Iterator[Cluster]:
    """A cluster whose processes reach PostgreSQL through a proxy that cuts."""
    proxy = TCPProxy(postgres_env["POSTGRES_HOST"], int(postgres_env["POSTGRES_PORT"]))
    cluster = Cluster(postgres_env, tmp_path, proxy)
    try:
        cluster.init_db()
        for name in WORKERS:
            cluster.add_worker(name)
        yield cluster
    finally:
        cluster.stop_all()
        proxy.close()


def send(method: str, url: str, body: dict[str, Any], key: UUID) -> dict[str, Any]:
    """Sends a request, retrying with the same Idempotency-Key until it is answered."""
    for attempt in range(REQUEST_ATTEMPTS):
        try:
            status, answer = request(method, url, body, {"Idempotency-Key": str(key)})
        except OSError:
            status, answer = 0, {}
        if 200 <= status < 500:
            return {**(answer or {}), "http_status": status}
        time.sleep(min(0.05 * 2**attempt, 1.0))  # backoff before the retry
    msg = f"{method} {url} was not answered after {REQUEST_ATTEMPTS} attempts"
    raise AssertionError(msg)


def test_nothing_is_lost_or_applied_twice_when_processes_die(
    proxied_cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = proxied_cluster
    proxy = cluster.proxy
    assert proxy is not None
    seed = int(os.environ.get("BANKACCOUNTS_FAULT_SEED") or random.randrange(2**32))
    report = [f"seed {seed} (replay: BANKACCOUNTS_FAULT_SEED={seed} pytest -m slow)"]
    with capsys.disabled():
        print(f"\nfault injection: {report[0]}", flush=True)
    rng = random.Random(seed)
    chaos_rng = random.Random(seed + 1)
    webs = [cluster.add_web("web1"), cluster.add_web("web2")]
    feeds = [FeedRecorder(url) for url in webs]
    for feed in feeds:
        feed.start()

    account_ids = []
    for number in range(ACCOUNTS):
        status, body = request(
            "POST", f"{webs[number % 2]}/api/accounts", {"name": f"Customer {number}"}
        )
        assert status == 201, body
        account_ids.append(body["id"])
    operations = plan(rng, OPERATIONS)

    def run(operation: Operation) -> None:
        web = webs[operation.web]
        account = account_ids[operation.account]
        if operation.kind == "deposit":
            path, body = (
                f"/api/accounts/{account}/deposits",
                {"amount": operation.amount},
            )
        elif operation.kind == "withdrawal":
            path = f"/api/accounts/{account}/withdrawals"
            body = {"amount": operation.amount}
        elif operation.kind == "transfer":
            path, body = (
                "/api/transfers",
                {
                    "debit_account_id": account,
                    "credit_account_id": account_ids[operation.other],
                    "amount": operation.amount,
                },
            )
        elif operation.kind == "limit":
            answer = send(
                "PUT",
                f"{web}/api/accounts/{account}/overdraft-limit",
                {"overdraft_limit": operation.amount},
                operation.key,
            )
            assert answer["http_status"] in (200, 409), answer
            return
        else:
            answer = send(
                "POST", f"{web}/api/accounts/{account}/close", {}, operation.key
            )
            assert answer["http_status"] in (200, 409), answer
            return
        answer = send("POST", f"{web}{path}", body, operation.key)
        # A retry of a transaction that has finished answers its status (200).
        assert answer["http_status"] in (200, 202), answer
        operation.transaction_id = answer["transaction_id"]

    # Faults at random moments while the load runs, and until there have been enough.
    load_done = threading.Event()
    kills: Counter[str] = Counter()
    terminated_connections = []
    cuts: list[int] = []
    seconds: Counter[str] = Counter()  # second workers started, by kind
    seconds_stopped: Counter[str] = Counter()
    chaos_errors: list[BaseException] = []

    def toggle_second_worker() -> None:
        """Starts a second worker of a kind, or stops (or kills) the running one."""
        kind = chaos_rng.choice([*WORKERS, min(WORKERS, key=lambda n: seconds[n])])
        second = cluster.processes.get(f"{kind}-2")
        if second is not None and second.is_running():
            if chaos_rng.random() < 0.5:
                second.stop()  # SIGTERM
            else:
                cluster.kill(second.name)
            seconds_stopped[kind] += 1
        else:
            if second is None:
                cluster.add_worker(kind, instance=2)
            else:
                cluster.start(second.name)
            seconds[kind] += 1

    def enough() -> bool:
        return (
            sum(kills.values()) >= MIN_KILLS
            and min(kills[name] for name in WORKERS) >= MIN_KILLS_EACH
            and len(terminated_connections) >= MIN_TERMINATIONS
            and len([n for n in cuts if n]) >= MIN_CUTS
            and min(seconds_stopped[n] for n in WORKERS) >= MIN_SECOND_WORKERS_EACH
        )

    def chaos() -> None:
        try:
            while not (load_done.is_set() and enough()):
                load_done.wait(chaos_rng.uniform(0.2, 1.2))  # a random moment
                action = chaos_rng.random()
                if action < 0.4:
                    # A random worker, or the one killed least so far.
                    name = chaos_rng.choice(
                        [*WORKERS, min(WORKERS, key=lambda n: kills[n])]
                    )
                    cluster.kill(name)
                    kills[name] += 1
                    cluster.start(name)
                elif action < 0.55:
                    terminated_connections.append(
                        cluster.terminate_connections(tuple(cluster.processes))
                    )
                elif action < 0.75:
                    # Some of the live connections, whatever is in flight.
                    cuts.append(proxy.cut(chaos_rng, share=chaos_rng.uniform(0.2, 1)))
                else:
                    toggle_second_worker()
        except BaseException as error:
            chaos_errors.append(error)

    started = time.monotonic()
    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    try:
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            list(pool.map(run, operations))
    finally:
        load_done.set()
        chaos_thread.join(300)
    load_seconds = time.monotonic() - started
    assert not chaos_errors, chaos_errors
    assert sum(kills.values()) >= MIN_KILLS
    assert min(kills[name] for name in WORKERS) >= MIN_KILLS_EACH
    assert len(terminated_connections) >= MIN_TERMINATIONS
    assert enough()

    table = wait_until_quiet(cluster, timeout=300)
    quiet_seconds = time.monotonic() - started - load_seconds

    env = {**cluster.env, "CREATE_TABLE": "n", "POSTGRES_POOL_SIZE": "1"}
    sagas, accounts, interface = Sagas(env), Accounts(env), InterfaceApplication(env)
    try:
        transactions = [op for op in operations if op.transaction_id]
        outcomes: Counter[str] = Counter()
        deposited = withdrawn = Decimal(0)
        view = interface.view
        # 1. Every saga has finished, and the read model says how.
        for op in transactions:
            saga = sagas.get_saga(UUID(op.transaction_id))
            assert saga.is_finished, (op, saga)
            outcome = "succeeded" if saga.has_succeeded else "failed"
            outcomes[f"{op.kind} {outcome}"] += 1
            shown = view.get_transaction(UUID(op.transaction_id))
            assert shown is not None, op
            assert shown.status == outcome, (op, shown)
            if saga.has_succeeded and op.kind == "deposit":
                deposited += Decimal(op.amount)
            if saga.has_succeeded and op.kind == "withdrawal":
                withdrawn += Decimal(op.amount)

        total = Decimal(0)
        applied = 0
        for account_id in map(UUID, account_ids):
            account = accounts.get_account(account_id)
            events = list(accounts.repository.event_store.get(account_id))
            appended = [
                e for e in events if isinstance(e, BankAccount.TransactionAppended)
            ]
            applied += len(appended)
            # 2. No account applied any transaction id twice.
            ids = Counter(e.transaction_id for e in appended)
            assert not [i for i, n in ids.items() if n > 1], account_id
            # 3. The balance is the sum of the account's own transactions.
            assert account.balance == sum((e.amount for e in appended), Decimal(0))
            # 4. The read model shows what the aggregate says.
            shown_account = view.get_account(account_id)
            assert shown_account is not None
            assert shown_account.balance == account.balance
            assert shown_account.overdraft_limit == account.overdraft_limit
            assert shown_account.is_closed == account.is_closed
            total += account.balance
        # 5. Money was neither made nor lost: transfers and refunds net to zero.
        assert total == deposited - withdrawn

        # 6. Every websocket client saw the whole feed, without gap or duplicate.
        expected = feed_positions(cluster.env)
        for feed in feeds:
            wait_for(lambda f=feed: f.positions == expected, 60, "feed incomplete")
        reconnects = {
            name: process.text().count(": reconnected;")
            for name, process in cluster.processes.items()
            if process.worker is not None
        }
        takeovers = sum(
            process.text().count("worker has stopped; taking over")
            for process in cluster.processes.values()
        )
        notifications = {
            name: app.recorder.max_notification_id()
            for name, app in (("Sagas", sagas), ("Accounts", accounts))
        }
    finally:
        for feed in feeds:
            feed.stop()
        for app in (sagas, accounts, interface):
            app.close()

    report += [
        f"operations: {len(operations)} ({CLIENT_THREADS} client threads, "
        f"2 web processes) in {load_seconds:.1f} s; caught up {quiet_seconds:.1f} s "
        "later",
        "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
        f"events: Accounts {notifications['Accounts']}, Sagas "
        f"{notifications['Sagas']}; {applied} transactions applied to accounts",
        f"kills (SIGKILL, then restart): {sum(kills.values())} "
        + str(dict(sorted(kills.items()))),
        f"connection terminations: {len(terminated_connections)} "
        f"({sum(terminated_connections)} connections)",
        f"proxy cuts: {len(cuts)} ({sum(cuts)} of {proxy.accepted} connections)",
        f"second workers started: {dict(sorted(seconds.items()))}, stopped "
        f"{dict(sorted(seconds_stopped.items()))}; {takeovers} takeovers",
        f"worker reconnects without a restart: {reconnects}",
        f"feed: {len(expected)} messages; websocket clients "
        + ", ".join(
            f"{len(f.positions)} received over {f.connections} connection(s)"
            for f in feeds
        ),
        f"invariants: all {len(transactions)} sagas finished; no transaction id "
        f"applied twice; sum of balances {total} = deposits {deposited} - "
        f"withdrawals {withdrawn}; every balance = sum of its transactions; read "
        "model = aggregates; no gap or duplicate in any client's feed",
        "final status:",
        *table.rstrip().splitlines(),
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fault-injection.txt").write_text("\n".join(report) + "\n")
    with capsys.disabled():
        print("\n".join(f"  {line}" for line in report[1:]), flush=True)

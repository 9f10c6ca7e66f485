"""Fault injection: money moves while worker processes are killed and cut off.

A stream of random deposits, withdrawals, transfers, overdraft limits and closings
goes to two web processes, while the sagas, accounts and interface workers are
SIGKILLed and restarted at random moments and their PostgreSQL connections are
terminated. Afterwards nothing may be lost, applied twice or shown wrongly.

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
from typing import Any
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
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ACCOUNTS = 20
OPERATIONS = int(os.environ.get("BANKACCOUNTS_FAULT_OPERATIONS", "1200"))
MIN_KILLS = 10
MIN_KILLS_EACH = 3  # of each worker
MIN_TERMINATIONS = 5
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
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
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
        assert answer["http_status"] == 202, answer
        operation.transaction_id = answer["transaction_id"]

    # Faults at random moments while the load runs, and until there have been enough.
    load_done = threading.Event()
    kills: Counter[str] = Counter()
    terminated_connections = []
    chaos_errors: list[BaseException] = []

    def chaos() -> None:
        try:
            while not (
                load_done.is_set()
                and sum(kills.values()) >= MIN_KILLS
                and min(kills[name] for name in WORKERS) >= MIN_KILLS_EACH
                and len(terminated_connections) >= MIN_TERMINATIONS
            ):
                load_done.wait(chaos_rng.uniform(0.2, 1.2))  # a random moment
                if chaos_rng.random() < 0.65:
                    # A random worker, or the one killed least so far.
                    name = chaos_rng.choice(
                        [*WORKERS, min(WORKERS, key=lambda n: kills[n])]
                    )
                    cluster.kill(name)
                    kills[name] += 1
                    cluster.start(name)
                else:
                    terminated_connections.append(
                        cluster.terminate_connections((*WORKERS, "web1", "web2"))
                    )
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
            name: cluster.processes[name].text().count(": reconnected;")
            for name in WORKERS
        }
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

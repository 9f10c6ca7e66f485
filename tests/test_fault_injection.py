"""Fault injection: money moves while worker processes are killed and cut off.

A stream of random deposits, withdrawals, transfers, overdraft limits and closings
goes to two web processes from several signed-in users: customers, each with
accounts of their own, moving money among them and paying into each other's, now
and then trying to take money from (or limit, close, pay into) an account that is
not theirs; and the bank's staff, acting on any account. Meanwhile, at random
moments, the sagas, accounts and interface workers are SIGKILLed and restarted, a
second worker of a kind is started and stopped (it waits for the first's lock, or
takes over when the first dies), PostgreSQL connections are terminated, and a TCP
proxy between every process and PostgreSQL cuts connections in mid-flight (so some
commits are acknowledged to nobody). Afterwards nothing may be lost, applied twice
or shown wrongly, and the stored events show that no customer's debit ever touched
an account the customer does not own.

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

    from bankaccounts.readmodel import ReadModelRecorder, StatementEntry
    from tests.signin import Session

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CUSTOMERS = 3
ACCOUNTS_EACH = 6  # of each customer
STAFF_ACCOUNTS = 2
ACCOUNTS = CUSTOMERS * ACCOUNTS_EACH + STAFF_ACCOUNTS
STAFF_SHARE = 0.15  # of the operations, by staff on any account
INTRUSION_SHARE = 0.04  # by a customer on an account not theirs
PAGE = 200  # statement entries and feed messages read at a time
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
    user: int  # 0: staff; 1 to CUSTOMERS: a customer
    account: int
    other: int
    amount: str
    key: UUID
    web: int
    intrusion: bool = False  # a customer on an account not theirs: refused
    transaction_id: str | None = None


def owner_of(account: int) -> int:
    """Who owns account number `account`: a customer's number, or 0 (staff)."""
    return 1 + account % CUSTOMERS if account < CUSTOMERS * ACCOUNTS_EACH else 0


def plan(rng: random.Random, count: int) -> list[Operation]:
    """The operations, all drawn from the seeded generator."""
    kinds = ["deposit", "withdrawal", "transfer", "limit", "close"]
    weights = [40, 22, 35, 2.5, 0.5]
    operations = []
    for _ in range(count):
        kind = rng.choices(kinds, weights)[0]
        roll = rng.random()
        user = 0 if roll < STAFF_SHARE else rng.randint(1, CUSTOMERS)
        intrusion = user != 0 and roll > 1 - INTRUSION_SHARE
        if user == 0:
            account = rng.randrange(ACCOUNTS)
        else:
            account = rng.choice(
                [n for n in range(ACCOUNTS) if (owner_of(n) == user) != intrusion]
            )
        # A transfer may credit any account: the user's own, or anybody else's.
        other = rng.choice([n for n in range(ACCOUNTS) if n != account])
        cents = rng.randint(1, 20_000)
        operations.append(
            Operation(
                kind=kind,
                user=user,
                account=account,
                other=other,
                amount=f"{cents // 100}.{cents % 100:02d}",
                key=UUID(int=rng.getrandbits(128), version=4),
                web=rng.randrange(2),
                intrusion=intrusion,
            )
        )
    return operations


def statement(view: ReadModelRecorder, account_id: UUID) -> list[StatementEntry]:
    """The account's whole statement from the read model, newest first, page by page."""
    entries, cursor = view.select_statement(account_id, limit=PAGE)
    while cursor is not None:
        page, cursor = view.select_statement(account_id, after=cursor, limit=PAGE)
        entries += page
    return entries


def feed_of(view: ReadModelRecorder, viewer_id: UUID) -> list[int]:
    """The positions of the feed messages the viewer may see, in order."""
    positions: list[int] = []
    while page := view.select_feed(positions[-1] if positions else 0, PAGE, viewer_id):
        positions += [message.position for message in page]
    return positions


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


def send(
    session: Session, method: str, path: str, body: dict[str, Any], key: UUID
) -> dict[str, Any]:
    """Sends a request, retrying with the same Idempotency-Key until it is answered."""
    url = f"{session.url}{path}"
    headers = {**session.headers, "Idempotency-Key": str(key)}
    for attempt in range(REQUEST_ATTEMPTS):
        try:
            status, answer = request(method, url, body, headers)
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
    # The first to sign up is staff; then the customers, each on either process.
    users = [cluster.signed_in(webs[0])]
    for number in range(1, CUSTOMERS + 1):
        users.append(cluster.sign_in(f"customer{number}", webs[number % 2]))
        assert users[number].user["role"] == "customer", users[number].user
    user_ids = [UUID(user.id) for user in users]
    # The staff's whole feed on each process; each customer's own, on either.
    feeds = [FeedRecorder(users[0].at(url)) for url in webs]
    customer_feeds = [
        FeedRecorder(user.at(webs[n % 2])) for n, user in enumerate(users) if n
    ]
    for feed in (*feeds, *customer_feeds):
        feed.start()

    account_ids = []
    for number in range(ACCOUNTS):
        owner = users[owner_of(number)].at(webs[number % 2])
        status, body = owner.request(
            "POST", "/api/accounts", {"name": f"{owner.username} {number}"}
        )
        assert status == 201, body
        assert body["owner"] == {"id": owner.id, "username": owner.username}, body
        account_ids.append(body["id"])
    operations = plan(rng, OPERATIONS)

    def run(operation: Operation) -> None:
        web = users[operation.user].at(webs[operation.web])
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
            path = f"/api/accounts/{account}/overdraft-limit"
            answer = send(
                web, "PUT", path, {"overdraft_limit": operation.amount}, operation.key
            )
            expected = (404, 403) if operation.intrusion else (200, 409)
            assert answer["http_status"] in expected, (operation, answer)
            return
        else:
            path = f"/api/accounts/{account}/close"
            answer = send(web, "POST", path, {}, operation.key)
            expected = (404, 403) if operation.intrusion else (200, 409)
            assert answer["http_status"] in expected, (operation, answer)
            return
        answer = send(web, "POST", path, body, operation.key)
        if operation.intrusion:
            # Another's account is none of the customer's business: as if unknown.
            assert answer["http_status"] in (404, 403), (operation, answer)
            return
        # A retry of a transaction that has finished answers its status (200).
        assert answer["http_status"] in (200, 202), (operation, answer)
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
        # 1. Every saga has finished, and the read model says how and who did it.
        for op in transactions:
            saga = sagas.get_saga(UUID(op.transaction_id))
            assert saga.is_finished, (op, saga)
            outcome = "succeeded" if saga.has_succeeded else "failed"
            outcomes[f"{op.kind} {outcome}"] += 1
            shown = view.get_transaction(UUID(op.transaction_id))
            assert shown is not None, op
            assert shown.status == outcome, (op, shown)
            assert shown.initiated_by is not None, (op, shown)
            assert shown.initiated_by.id == user_ids[op.user], (op, shown)
            if op.kind != "deposit":
                owner = user_ids[owner_of(op.account)]
                assert shown.debit_owner is not None, (op, shown)
                assert shown.debit_owner.id == owner, (op, shown)
            if saga.has_succeeded and op.kind == "deposit":
                deposited += Decimal(op.amount)
            if saga.has_succeeded and op.kind == "withdrawal":
                withdrawn += Decimal(op.amount)

        total = Decimal(0)
        applied = 0
        owners = {
            UUID(account_id): user_ids[owner_of(number)]
            for number, account_id in enumerate(account_ids)
        }
        customers = set(user_ids[1:])
        # Debits by their initiator's role, and by whether the account was theirs.
        debits: Counter[str] = Counter()
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
            # 4. The read model shows what the aggregate says; its statement too.
            shown_account = view.get_account(account_id)
            assert shown_account is not None
            assert shown_account.balance == account.balance
            assert shown_account.overdraft_limit == account.overdraft_limit
            assert shown_account.is_closed == account.is_closed
            entries = statement(view, account_id)
            assert [e.seq for e in entries] == list(range(len(appended), 0, -1))
            assert [e.amount for e in reversed(entries)] == [e.amount for e in appended]
            assert not entries or entries[0].balance == account.balance
            total += account.balance
            # 7. Ownership, from the stored events: the account's owner is the one
            # who opened it, and no customer's debit touched an account not theirs;
            # money from a customer reaches another's account only by a transfer
            # out of the customer's own.
            opened = events[0]
            assert isinstance(opened, BankAccount.Created), events[0]
            assert opened.owner is not None, opened
            owner = opened.owner.id
            assert owner == owners[account_id], (account_id, opened)
            for e in appended:
                assert e.initiated_by is not None, (account_id, e)
                initiator = e.initiated_by.id
                role = "customer" if initiator in customers else "staff"
                mine = "own" if initiator == owner else "another's"
                if e.amount < 0:
                    assert role == "staff" or initiator == owner, (account_id, e)
                    debits[f"{role} on {mine}"] += 1
                elif role == "customer" and initiator != owner:
                    assert e.counterparty_id is not None, (account_id, e)
                    assert owners[e.counterparty_id] == initiator, (account_id, e)
                    debits["customer paid into another's"] += 1
            # The statement says the same, for every debit.
            for entry in entries:
                if entry.amount < 0 and entry.initiated_by is not None:
                    initiator = entry.initiated_by.id
                    assert initiator not in customers or initiator == owner, entry
        # 5. Money was neither made nor lost: transfers and refunds net to zero.
        assert total == deposited - withdrawn
        # The run did what it set out to: customers moved their own money and paid
        # each other, staff moved customers' money, and intrusions were refused.
        intrusions = [op for op in operations if op.intrusion]
        assert debits["customer on own"], debits
        assert debits["staff on another's"], debits
        assert debits["customer paid into another's"], debits
        assert intrusions, "no customer tried another's account"
        assert not [op for op in intrusions if op.transaction_id], intrusions

        # 6. Every staff websocket client saw the whole feed, without gap or
        # duplicate; each customer's, what their audience holds, and no more.
        expected = feed_positions(cluster.env)
        for feed in feeds:
            wait_for(lambda f=feed: f.positions == expected, 60, "feed incomplete")
        for customer_id, feed in zip(user_ids[1:], customer_feeds, strict=True):
            theirs = feed_of(view, customer_id)
            assert 0 < len(theirs) < len(expected), (customer_id, len(theirs))
            wait_for(lambda f=feed, t=theirs: f.positions == t, 60, "feed incomplete")
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
        for feed in (*feeds, *customer_feeds):
            feed.stop()
        for app in (sagas, accounts, interface):
            app.close()

    report += [
        f"operations: {len(operations)} ({CLIENT_THREADS} client threads, "
        f"2 web processes) in {load_seconds:.1f} s; caught up {quiet_seconds:.1f} s "
        "later",
        f"users: staff and {CUSTOMERS} customers ({ACCOUNTS_EACH} accounts each, "
        f"staff {STAFF_ACCOUNTS}); {len(intrusions)} attempts on another's account "
        "refused",
        "debits applied: " + ", ".join(f"{k} {v}" for k, v in sorted(debits.items())),
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
        f"feed: {len(expected)} messages; staff websocket clients "
        + ", ".join(
            f"{len(f.positions)} received over {f.connections} connection(s)"
            for f in feeds
        )
        + "; customers' "
        + ", ".join(f"{len(f.positions)} over {f.connections}" for f in customer_feeds),
        f"invariants: all {len(transactions)} sagas finished; no transaction id "
        f"applied twice; sum of balances {total} = deposits {deposited} - "
        f"withdrawals {withdrawn}; every balance = sum of its transactions; read "
        "model and statements = aggregates; every account owned by who opened it; "
        "no customer's debit on an account not theirs (events and statements); "
        "no gap or duplicate in any client's feed, each customer's exactly their "
        "audience's",
        "final status:",
        *table.rstrip().splitlines(),
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fault-injection.txt").write_text("\n".join(report) + "\n")
    with capsys.disabled():
        print("\n".join(f"  {line}" for line in report[1:]), flush=True)

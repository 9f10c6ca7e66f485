"""Retries that must not repeat what is done: lost commit acknowledgements, conflicts.

A write whose commit was acknowledged to nobody (the connection dropped after
COMMIT) is retried by the library; the retry is refused by the unique key, and the
application must then see its own events in the store and call the write done.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import sqlite3
import threading
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteConnection
from eventsourcing.system import SingleThreadedRunner

from bankaccounts.accountapplication import CONFLICT_ATTEMPTS, conflict_delays
from bankaccounts.infrastructure import PositionTakenError
from bankaccounts.simpleapplication import SimpleBankAccountApplication
from bankaccounts.storedevents import select_stored_events
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import DepositFundsSaga, Sagas

if TYPE_CHECKING:
    from collections.abc import Iterator

    from bankaccounts.domainmodel import BankAccount

#: The server's answer to COMMIT: CommandComplete ('C', length 11, "COMMIT\0").
COMMIT_COMPLETE = b"C\x00\x00\x00\x0bCOMMIT\x00"


class CommitCuttingProxy:
    """A TCP proxy to PostgreSQL that, when armed, cuts a connection after COMMIT.

    The server has committed when it answers COMMIT; the proxy drops that answer
    and closes both sides, so the client sees a lost connection for a write that is
    stored: a commit acknowledged to nobody.
    """

    def __init__(self, host: str, port: int) -> None:
        """Listens on a free port of the loopback, forwarding to host:port."""
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.commits_to_pass = 0
        self.cuts = 0
        self.closing = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after_next_commit(self, passing: int = 0) -> None:
        """The next COMMIT acknowledged after `passing` others is answered to nobody."""
        self.commits_to_pass = passing
        self.armed.set()

    def close(self) -> None:
        """Stops accepting and closes every connection."""
        self.closing.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for sock in (client, server):  # no Nagle delays on small messages
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sockets += [client, server]
            threading.Thread(
                target=self._pump, args=(client, server, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, True), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        tail = b""
        try:
            while data := source.recv(65536):
                if answers and self.armed.is_set() and COMMIT_COMPLETE in tail + data:
                    if self.commits_to_pass == 0:
                        self.armed.clear()
                        self.cuts += 1
                        break
                    self.commits_to_pass -= 1
                sink.sendall(data)
                tail = data[-len(COMMIT_COMPLETE) :]
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def proxied_postgres_env(
    postgres_env: dict[str, str],
) -> Iterator[tuple[dict[str, str], CommitCuttingProxy]]:
    """The applications' environment, reaching PostgreSQL through the proxy."""
    proxy = CommitCuttingProxy(
        postgres_env["POSTGRES_HOST"], int(postgres_env["POSTGRES_PORT"])
    )
    env = {
        **postgres_env,
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(proxy.port),
    }
    yield env, proxy
    proxy.close()


@pytest.mark.postgres
def test_a_deposit_whose_commit_is_acknowledged_to_nobody_is_stored_once(
    proxied_postgres_env: tuple[dict[str, str], CommitCuttingProxy],
) -> None:
    env, proxy = proxied_postgres_env
    app = SimpleBankAccountApplication(env)
    try:
        account_id = app.create_account("Alice")

        proxy.cut_after_next_commit()
        app.deposit_funds(account_id, "100.00")

        assert proxy.cuts == 1
        assert app.get_balance(account_id) == Decimal("100.00")
        fresh = SimpleBankAccountApplication(env)
        try:
            assert fresh.get_balance(account_id) == Decimal("100.00")
            assert len(list(fresh.events.get(account_id))) == 2  # opened, deposited
        finally:
            fresh.close()
    finally:
        app.close()


@pytest.mark.postgres
def test_an_account_whose_commit_is_acknowledged_to_nobody_is_opened(
    proxied_postgres_env: tuple[dict[str, str], CommitCuttingProxy],
) -> None:
    env, proxy = proxied_postgres_env
    app = SimpleBankAccountApplication(env)
    try:
        proxy.cut_after_next_commit()
        account_id = app.create_account("Bob")

        assert proxy.cuts == 1
        assert isinstance(account_id, UUID)
        assert app.get_account(account_id).name == "Bob"
        app.deposit_funds(account_id, "1.00")  # the cached account is not stale
        assert app.get_balance(account_id) == Decimal("1.00")
    finally:
        app.close()


@pytest.fixture
def commit_acknowledged_to_nobody(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """When set, SQLite's next COMMIT succeeds, then raises as a lost answer would."""
    armed = threading.Event()
    commit = SQLiteConnection.commit

    def commit_then_fail(self: SQLiteConnection) -> None:
        commit(self)
        if armed.is_set():
            armed.clear()
            msg = "disk I/O error (after COMMIT)"
            raise sqlite3.OperationalError(msg)

    monkeypatch.setattr(SQLiteConnection, "commit", commit_then_fail)
    return armed


def test_sqlite_a_write_whose_commit_raised_after_storing_is_done(
    sqlite_env: dict[str, str], commit_acknowledged_to_nobody: threading.Event
) -> None:
    app = SimpleBankAccountApplication(sqlite_env)
    try:
        commit_acknowledged_to_nobody.set()
        account_id = app.create_account("Carol")
        assert not commit_acknowledged_to_nobody.is_set()

        commit_acknowledged_to_nobody.set()
        app.deposit_funds(account_id, "100.00")
        assert not commit_acknowledged_to_nobody.is_set()

        assert app.get_balance(account_id) == Decimal("100.00")
    finally:
        app.close()


@pytest.mark.postgres
def test_a_transfer_stays_exact_whichever_commit_is_acknowledged_to_nobody(
    proxied_postgres_env: tuple[dict[str, str], CommitCuttingProxy],
) -> None:
    """Each process application's page is recorded with its tracking: done is done."""
    env, proxy = proxied_postgres_env
    # The library's runner alone: it processes in the caller's thread, so the
    # transfer's commits are all made, in order, before transfer_funds returns.
    runner = SingleThreadedRunner(BankAccountSystem(), env=env)
    runner.start()
    commands, sagas = runner.get(Commands), runner.get(Sagas)
    accounts, view = runner.get(Accounts), runner.get(InterfaceApplication).view
    try:
        commits = 0
        while True:  # cut the first commit of the transfer, then the second, ...
            debit_id = accounts.create_account("Debit")
            credit_id = accounts.create_account("Credit")
            commands.deposit_funds(debit_id, "100.00")

            proxy.cut_after_next_commit(passing=commits)
            transfer_id = commands.transfer_funds(debit_id, credit_id, "10.00")
            if proxy.armed.is_set():  # the transfer made fewer commits than that
                proxy.armed.clear()
                break
            commits += 1

            assert sagas.get_saga(transfer_id).has_succeeded
            assert accounts.get_balance(debit_id) == Decimal("90.00")
            assert accounts.get_balance(credit_id) == Decimal("10.00")
            transaction = view.get_transaction(transfer_id)
            assert transaction is not None
            assert transaction.status == "succeeded", transaction
            for account_id, balance in ((debit_id, "90.00"), (credit_id, "10.00")):
                account = view.get_account(account_id)
                assert account is not None
                assert account.balance == Decimal(balance)
        assert commits >= 6  # commands, sagas, accounts (debit, credit), interface
        assert proxy.cuts == commits
    finally:
        runner.stop()


class _Alarm(logging.Handler):
    """Keeps the messages logged at WARNING or above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class StormedAccounts(Accounts):
    """Accounts whose every read of an account is followed by another's write of it.

    The other writer is a second Accounts on the same store (as the web process's
    is in the distributed bank) changing the overdraft limit: a real write that
    lands, each time, between this one's read and its commit.
    """

    name = "Accounts"  # the same store and tables
    other: Accounts
    storms = 0

    def get_account(self, account_id: UUID) -> BankAccount:
        account = super().get_account(account_id)
        if self.storms:
            self.storms -= 1
            self.other.set_overdraft_limit(account_id, self.storms)
        return account


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_page_outlasts_a_storm_of_conflicting_client_writes(
    store: str, request: pytest.FixtureRequest
) -> None:
    """Before, the page gave up after five quick attempts and the worker tore down.

    Now it backs off and keeps going while others make progress (here, twelve
    conflicts in a row), and says so at the eighth.
    """
    env: dict[str, str] = request.getfixturevalue(f"{store}_env")
    worker, web = StormedAccounts(env), Accounts(env)
    alarm = _Alarm()
    logger = logging.getLogger("bankaccounts.accountapplication")
    logger.addHandler(alarm)
    try:
        account_id = web.create_account("Stormy")
        worker.other, worker.storms = web, CONFLICT_ATTEMPTS + 4
        sagas = [DepositFundsSaga(uuid4(), account_id, Decimal("0.10")) for _ in "abc"]
        jobs = [
            (saga.collect_events()[0], Tracking("Sagas", position))
            for position, saga in enumerate(sagas, start=1)
        ]

        worker.process_events(jobs)

        assert worker.storms == 0
        assert alarm.messages == [
            f"Accounts: a page has conflicted {CONFLICT_ATTEMPTS} times in a row "
            "with other writers of its aggregates; still retrying"
        ]
        assert worker.recorder.max_tracking_id("Sagas") == len(jobs)
        events = list(web.events.get(account_id))
        deposits = [e for e in events if type(e).__name__ == "TransactionAppended"]
        assert [e.amount for e in deposits] == [Decimal("0.10")] * len(jobs)
        assert worker.get_balance(account_id) == Decimal("0.30")
    finally:
        logger.removeHandler(alarm)
        worker.close()
        web.close()


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_page_another_instance_recorded_is_refused_not_retried(
    store: str, request: pytest.FixtureRequest
) -> None:
    """Its versions are free, its position is taken: processing it again can't help.

    The second instance's stale aggregate first conflicts on a version (retried,
    from a fresh read), then on the position, which ends the retries at once.
    """
    env: dict[str, str] = request.getfixturevalue(f"{store}_env")
    first, second = Accounts(env), Accounts(env)
    try:
        account_id = first.create_account("Twice")
        second.get_account(account_id)  # cached, soon stale
        sagas = [DepositFundsSaga(uuid4(), account_id, Decimal("1.00")) for _ in "ab"]
        jobs = [
            (saga.collect_events()[0], Tracking("Sagas", position))
            for position, saga in enumerate(sagas, start=1)
        ]
        first.process_events(jobs)

        with pytest.raises(PositionTakenError):
            second.process_events(jobs)

        fresh = Accounts(env)
        try:
            assert fresh.get_balance(account_id) == Decimal("2.00")
        finally:
            fresh.close()
    finally:
        first.close()
        second.close()


def test_conflict_delays_start_at_milliseconds_grow_and_stay_capped() -> None:
    delays = list(itertools.islice(conflict_delays(), 20))
    assert 0.001 <= delays[0] <= 0.003
    assert delays[3] > delays[0]
    assert all(0.125 <= delay <= 0.375 for delay in delays[-5:])  # 0.25 +- half
    assert len(set(delays)) == len(delays)  # jittered: writers fall out of step


def test_stored_events_are_read_back_by_position_with_their_notification_ids(
    persistence_env: dict[str, str],
) -> None:
    app = SimpleBankAccountApplication(persistence_env)
    try:
        account_id = app.create_account("Dora")
        account = app.get_account(account_id)
        account.append_transaction(Decimal("1.00"))
        account.append_transaction(Decimal("2.00"))
        recordings = app.save(account)

        positions = [(account_id, 2), (account_id, 3), (account_id, 4), (uuid4(), 1)]
        stored = select_stored_events(app.recorder, positions)

        assert stored is not None
        assert sorted(stored) == [(account_id, 2), (account_id, 3)]
        assert [stored[account_id, v] for v in (2, 3)] == [
            r.notification for r in recordings
        ]
        assert select_stored_events(app.recorder, []) == {}
    finally:
        app.close()

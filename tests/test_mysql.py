"""MariaDB through the SQLAlchemy plugin: commit order, tracking, chosen by the URL.

A follower reads "after position N", so no row may commit after a row with a higher
id. The first test shows InnoDB doing just that without the guard (bankaccounts/
mysql.py); the others show the guard holding with concurrent writers.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from sqlalchemy import text

from bankaccounts.mysql import (
    MySQLApplicationRecorder,
    MySQLDatastore,
    MySQLProcessRecorder,
)
from bankaccounts.simpleapplication import SimpleBankAccountApplication
from tests.serverprocess import ServerProcess
from tests.test_catchup import (
    ACCOUNTS,
    FINISH_TIMEOUT,
    pending,
    push_transfers_and_kill,
)
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from eventsourcing_sqlalchemy.datastore import SQLAlchemyDatastore

pytestmark = pytest.mark.mariadb

WRITERS = 4
EVENTS_PER_WRITER = 150


class UnguardedRecorder(MySQLApplicationRecorder):
    """The plugin's behaviour on MySQL: no lock before the insert."""

    guard_commit_order = False


@pytest.fixture
def datastore(mariadb_env: dict[str, str]) -> Iterator[SQLAlchemyDatastore]:
    datastore = MySQLDatastore(url=mariadb_env["SQLALCHEMY_URL"])
    yield datastore
    assert datastore.engine is not None
    datastore.engine.dispose()


def make_recorder(
    datastore: SQLAlchemyDatastore, cls: type[MySQLApplicationRecorder]
) -> MySQLApplicationRecorder:
    recorder = cls(datastore, events_table_name=f"order{uuid4().hex[:8]}_events")
    recorder.create_table()
    return recorder


def event() -> StoredEvent:
    return StoredEvent(uuid4(), 1, "topic", b"{}")


class Follower:
    """Reads after its position, as a process application does."""

    def __init__(self, recorder: MySQLApplicationRecorder) -> None:
        self.recorder = recorder
        self.position = 0
        self.seen: list[int] = []

    def pull(self) -> list[int]:
        notifications = self.recorder.select_notifications(
            self.position, 1000, inclusive_of_start=False
        )
        ids = [n.id for n in notifications]
        self.seen.extend(ids)
        if ids:
            self.position = ids[-1]
        return ids


class OpenWrite:
    """A write whose transaction stays open until released (in a thread of its own)."""

    def __init__(self, recorder: MySQLApplicationRecorder) -> None:
        self.recorder = recorder
        self.inserted = threading.Event()
        self.release = threading.Event()
        self.ids: list[int] = []
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        with self.recorder.transaction(commit=True) as session:
            self.ids = list(
                self.recorder._insert_stored_events(session, [event()]) or []
            )
            self.inserted.set()
            self.release.wait(30)

    def commit(self) -> None:
        self.release.set()
        self.thread.join(30)


def lock_waits(datastore: SQLAlchemyDatastore) -> int:
    """Connections of this database waiting in the lock table's SELECT ... FOR UPDATE.

    The process list, not innodb_trx: InnoDB caches that table for as long as it is
    read every 0.1 s, so polling it would never see the wait begin.
    """
    assert datastore.engine is not None
    with datastore.engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT COUNT(*) FROM information_schema.processlist "
                    "WHERE db=DATABASE() AND command='Query' "
                    "AND info LIKE 'SELECT name FROM bankaccounts_write_locks%'"
                )
            ).scalar_one()
        )


def test_without_the_guard_a_follower_skips_an_event_committed_late(
    datastore: SQLAlchemyDatastore,
) -> None:
    recorder = make_recorder(datastore, UnguardedRecorder)
    follower = Follower(recorder)
    first = OpenWrite(recorder)
    assert first.inserted.wait(10)
    second = recorder.insert_events([event()])  # takes a higher id, commits first
    assert second is not None
    assert list(second) > first.ids
    assert follower.pull() == list(second)
    first.commit()
    follower.pull()
    # The first event is stored, under the position the follower has passed.
    assert recorder.max_notification_id() == second[0]
    assert first.ids[0] not in follower.seen


def test_with_the_guard_a_second_writer_waits_for_the_first_to_commit(
    datastore: SQLAlchemyDatastore,
) -> None:
    recorder = make_recorder(datastore, MySQLApplicationRecorder)
    follower = Follower(recorder)
    first = OpenWrite(recorder)
    assert first.inserted.wait(10)
    second_ids: list[int] = []
    second = threading.Thread(
        target=lambda: second_ids.extend(recorder.insert_events([event()]) or [])
    )
    second.start()
    wait_for(lambda: lock_waits(datastore) == 1, message="the second writer waits")
    assert follower.pull() == []
    first.commit()
    second.join(30)
    follower.pull()
    assert follower.seen == [*first.ids, *second_ids]
    assert follower.seen == sorted(follower.seen)


def test_writers_of_another_application_do_not_wait(
    datastore: SQLAlchemyDatastore,
) -> None:
    recorder = make_recorder(datastore, MySQLApplicationRecorder)
    other = make_recorder(datastore, MySQLApplicationRecorder)
    first = OpenWrite(recorder)
    assert first.inserted.wait(10)
    try:
        assert other.insert_events([event()]) == [1]
    finally:
        first.commit()


def test_a_follower_sees_every_event_once_with_concurrent_writers(
    datastore: SQLAlchemyDatastore,
) -> None:
    recorder = make_recorder(datastore, MySQLApplicationRecorder)
    follower = Follower(recorder)
    written: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def write() -> None:
        try:
            for _ in range(EVENTS_PER_WRITER):
                ids = recorder.insert_events([event()]) or []
                with lock:
                    written.extend(ids)
        except BaseException as error:  # reported below
            errors.append(error)

    writers = [threading.Thread(target=write) for _ in range(WRITERS)]
    for writer in writers:
        writer.start()
    while any(writer.is_alive() for writer in writers):
        follower.pull()
    follower.pull()
    assert errors == []
    assert len(written) == WRITERS * EVENTS_PER_WRITER
    assert follower.seen == sorted(written)  # each once, none skipped, in order


def test_the_tracking_record_refuses_a_position_another_instance_recorded(
    datastore: SQLAlchemyDatastore,
) -> None:
    name = f"f{uuid4().hex[:8]}"
    recorder = MySQLProcessRecorder(
        datastore,
        events_table_name=f"{name}_events",
        tracking_table_name=f"{name}_tracking",
    )
    recorder.create_table()
    recorder.insert_events([event()], tracking=Tracking("Upstream", 4))
    # A second instance, whose transaction's snapshot was taken before the first
    # instance recorded position 5, still sees it: the plugin's consistent read
    # would not, and both would record the same events.
    with recorder.transaction(commit=True) as session:
        assert recorder.max_tracking_id("Upstream") == 4  # the snapshot
        first = threading.Thread(
            target=recorder.insert_events,
            args=([event()],),
            kwargs={"tracking": Tracking("Upstream", 5)},
        )
        first.start()
        first.join(30)
        assert recorder.max_tracking_id("Upstream") == 4  # still the snapshot
        with pytest.raises(IntegrityError):
            recorder._insert_tracking(session, Tracking("Upstream", 5))
    with pytest.raises(IntegrityError):
        recorder.insert_events([event()], tracking=Tracking("Upstream", 3))
    recorder.insert_events([event()], tracking=Tracking("Upstream", 6))
    assert recorder.max_tracking_id("Upstream") == 6


def test_the_guard_is_chosen_by_the_url_alone(mariadb_env: dict[str, str]) -> None:
    app: Any = SimpleBankAccountApplication(env=mariadb_env)
    try:
        assert isinstance(app.recorder, MySQLApplicationRecorder)
        assert app.recorder.guard_commit_order
    finally:
        app.close()


def server_on(
    mariadb_env: dict[str, str], tmp_path: Path, runner: str
) -> ServerProcess:
    return ServerProcess(
        tmp_path / "data",
        tmp_path,
        args=["--runner", runner, "--log-level", "warning"],
        env=mariadb_env,
    )


def open_funded_accounts(server: ServerProcess, count: int) -> list[str]:
    ids = []
    for number in range(count):
        status, account = server.request(
            "POST", "/api/accounts", {"name": f"Account {number}"}
        )
        assert status == 201, account
        status, answer = server.request(
            "POST",
            f"/api/accounts/{account['id']}/deposits?wait=true",
            {"amount": "1000.00"},
        )
        assert answer["status"] == "succeeded", answer
        ids.append(account["id"])
    return ids


def total_balance(server: ServerProcess, account_ids: list[str]) -> Decimal:
    total = Decimal(0)
    for account_id in account_ids:
        status, account = server.request("GET", f"/api/accounts/{account_id}")
        assert status == 200, account
        total += Decimal(account["balance"])
    return total


@pytest.mark.parametrize("runner", ["pipeline", "single", "multi"])
def test_the_server_on_mariadb_keeps_its_data_and_finishes_work_after_a_kill(
    mariadb_env: dict[str, str], tmp_path: Path, runner: str
) -> None:
    server = server_on(mariadb_env, tmp_path, runner)
    server.start()
    try:
        database = mariadb_env["SQLALCHEMY_URL"].rsplit("/", 1)[1]
        assert f"MySQL/MariaDB database {database} on 127.0.0.1" in server.output()
        account_ids = open_funded_accounts(server, ACCOUNTS)
        _, answer = server.request(
            "POST",
            "/api/transfers?wait=true",
            {
                "debit_account_id": account_ids[0],
                "credit_account_id": account_ids[1],
                "amount": "10.00",
            },
        )
        assert answer["status"] == "succeeded", answer

        assert server.stop() == 0  # SIGTERM: a clean stop
        server.start()
        status, account = server.request("GET", f"/api/accounts/{account_ids[0]}")
        assert status == 200, account
        assert Decimal(account["balance"]) == Decimal("990.00")

        # SIGKILL with transfers accepted but not yet carried out: the restarted
        # server finishes them from the followers' tracking positions.
        accepted = push_transfers_and_kill(server, account_ids)
        server.start()
        remaining = set(accepted)

        def all_finished() -> bool:
            remaining.intersection_update(pending(server, remaining))
            return not remaining

        wait_for(all_finished, FINISH_TIMEOUT, f"{len(remaining)} still pending")
        assert total_balance(server, account_ids) == ACCOUNTS * 1000
    finally:
        server.stop()


def test_the_server_says_why_it_cannot_use_the_database(
    mariadb_env: dict[str, str], tmp_path: Path
) -> None:
    url = mariadb_env["SQLALCHEMY_URL"].rsplit("/", 1)[0] + "/no_such_database"
    server = server_on({**mariadb_env, "SQLALCHEMY_URL": url}, tmp_path, "single")
    server.launch()
    assert server.wait() == 1
    assert "cannot connect to MySQL at root@127.0.0.1:3306/no_such_database: " in (
        server.output()
    )
    assert "Unknown database 'no_such_database' (create it" in server.output()
    assert "Traceback" not in server.output()

"""`bankaccounts status` knows who is alive: real worker processes, real PostgreSQL.

Each worker keeps a heartbeat row; status shows a follower whose worker is gone as
`down` and one with two workers as `duplicate`, and exits 1 for either.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

import pytest

from bankaccounts.deploy.heartbeat import HEARTBEAT_INTERVAL, STALE_AFTER
from tests.cluster import WORKERS, follower_states, wait_until_quiet
from tests.waiting import wait_for

if TYPE_CHECKING:
    from tests.cluster import Cluster

pytestmark = pytest.mark.postgres

FOLLOWERS = ("Sagas", "Accounts", "Interface")


def rows_of(table: str, follower: str) -> list[list[str]]:
    """The table's rows of a follower, split into words."""
    return [
        line.split() for line in table.splitlines() if line.startswith(f"{follower} ")
    ]


def test_every_worker_beats_and_status_is_healthy(cluster: Cluster) -> None:
    wait_until_quiet(cluster)
    code, states, workers = follower_states(cluster)
    assert code == 0
    assert set(states.values()) == {"up to date"}
    assert sorted((w["kind"], w["state"], w["alive"]) for w in workers) == [
        (kind, "running", True) for kind in sorted(WORKERS)
    ]
    pids = {w["kind"]: w["pid"] for w in workers}
    assert pids == {
        name: cluster.processes[name].popen.pid  # type: ignore[union-attr]
        for name in WORKERS
    }
    table = cluster.cli("status").stdout
    assert "WORKER" in table
    assert [line.split()[3] for line in table.splitlines()[-3:]] == ["running"] * 3


def test_a_killed_worker_shows_down_within_seconds(cluster: Cluster) -> None:
    wait_until_quiet(cluster)
    killed = time.monotonic()
    cluster.kill("sagas")  # SIGKILL: no chance to delete its row
    wait_for(
        lambda: follower_states(cluster)[1]["Sagas"] == "down", 15, "Sagas not down"
    )
    seconds = time.monotonic() - killed
    print(f"down {seconds:.2f} s after the kill (status runs included)")
    # Its connection ended with it; the row shows it at the next read.
    assert seconds < 5, seconds

    code, states, workers = follower_states(cluster)
    assert code == 1
    assert states == {
        "Sagas": "down",
        "Accounts": "up to date",
        "Interface": "up to date",
    }
    (sagas,) = [w for w in workers if w["kind"] == "sagas"]
    assert (sagas["state"], sagas["alive"]) == ("gone", False)
    result = cluster.cli("status")
    assert result.returncode == 1
    assert [row[-1] for row in rows_of(result.stdout, "Sagas")] == ["down", "down"]

    cluster.start("sagas")
    wait_for(lambda: follower_states(cluster)[0] == 0, 30, "not healthy again")
    # The new worker's heartbeats removed the dead one's row.
    wait_for(
        lambda: sagas_states(cluster) == ["running"], 30, "the dead worker's row stayed"
    )


def sagas_states(cluster: Cluster) -> list[str]:
    """The states of the sagas workers' rows."""
    return [w["state"] for w in follower_states(cluster)[2] if w["kind"] == "sagas"]


def test_two_workers_of_a_kind_show_duplicate(cluster: Cluster) -> None:
    wait_until_quiet(cluster)
    second = cluster.add_worker("accounts", instance=2)  # waits for the lock
    code, states, workers = follower_states(cluster)
    assert code == 1
    assert states == {
        "Sagas": "up to date",
        "Accounts": "duplicate",
        "Interface": "up to date",
    }
    assert sorted(w["state"] for w in workers if w["kind"] == "accounts") == [
        "running",
        "waiting",
    ]
    result = cluster.cli("status")
    assert result.returncode == 1
    assert [row[-1] for row in rows_of(result.stdout, "Accounts")] == ["duplicate"]

    second.signal(signal.SIGTERM)  # a clean stop deletes its row
    assert second.wait() == 0
    code, states, workers = follower_states(cluster)
    assert (code, set(states.values())) == (0, {"up to date"})
    assert len(workers) == 3


def test_a_dead_and_a_duplicate_worker_in_one_table(cluster: Cluster) -> None:
    """The table an operator sees (printed, for the record)."""
    web = cluster.signed_in(cluster.add_web("web"))
    status, account = web.request("POST", "/api/accounts", {"name": "Alice"})
    assert status == 201, account
    deposits = f"/api/accounts/{account['id']}/deposits"
    status, _ = web.request("POST", f"{deposits}?wait=true", {"amount": "10.00"})
    assert status == 200
    cluster.kill("interface")
    cluster.add_worker("sagas", instance=2)
    status, _ = web.request("POST", deposits, {"amount": "5.00"})  # waits for Interface
    assert status == 202
    wait_for(
        lambda: (
            follower_states(cluster)[1]
            == {"Sagas": "duplicate", "Accounts": "up to date", "Interface": "down"}
        ),
        15,
        "not down and duplicate",
    )
    result = cluster.cli("status")
    print(result.stdout)
    assert result.returncode == 1
    assert [row[-1] for row in rows_of(result.stdout, "Interface")] == ["down"] * 2
    assert [row[-1] for row in rows_of(result.stdout, "Sagas")] == ["duplicate"] * 2
    workers = [line.split() for line in result.stdout.split("\n\n", 1)[1].splitlines()]
    assert workers[0][:4] == ["WORKER", "HOST", "PID", "STATE"]
    assert sorted((row[0], row[3]) for row in workers[1:]) == [
        ("accounts", "running"),
        ("interface", "gone"),
        ("sagas", "running"),
        ("sagas", "waiting"),
    ]


def test_workers_stopped_cleanly_leave_no_rows(cluster: Cluster) -> None:
    wait_until_quiet(cluster)
    cluster.processes["interface"].stop()  # SIGTERM
    code, states, _ = follower_states(cluster)
    # The others still beat: the deployment is distributed, Interface has no worker.
    assert (code, states["Interface"]) == (1, "down")

    for name in WORKERS:
        cluster.processes[name].stop()
    # No heartbeats at all: positions alone, as for the embedded bank.
    code, states, workers = follower_states(cluster)
    assert (code, set(states.values()), workers) == (0, {"up to date"}, [])
    assert "WORKER" not in cluster.cli("status").stdout


def test_a_frozen_worker_shows_down_once_its_beats_are_stale(cluster: Cluster) -> None:
    wait_until_quiet(cluster)
    accounts = cluster.processes["accounts"]
    accounts.signal(signal.SIGSTOP)  # its connections stay open; it beats no more
    try:
        frozen = time.monotonic()
        wait_for(
            lambda: follower_states(cluster)[1]["Accounts"] == "down",
            STALE_AFTER + 15,
            "Accounts not down",
        )
        seconds = time.monotonic() - frozen
        print(f"down {seconds:.2f} s after SIGSTOP")
        assert seconds >= STALE_AFTER - HEARTBEAT_INTERVAL
    finally:
        accounts.signal(signal.SIGCONT)
    wait_for(lambda: follower_states(cluster)[0] == 0, 30, "not healthy again")

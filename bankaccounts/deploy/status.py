"""How far each follower of the system has got in each of its upstream applications.

In the distributed deployment, also whether its worker is alive: each worker keeps a
heartbeat row (deploy.heartbeat), and a follower with no live worker is `down`,
one with two (one running, one waiting its turn counts) `duplicate`. The embedded bank
runs every follower in its one process and keeps no heartbeats: its followers are
judged by their positions alone, as are those of a deployment whose workers have all
stopped cleanly (each deletes its row).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.postgres import PostgresDatastore

from bankaccounts.deploy.heartbeat import WorkerBeat, read_workers
from bankaccounts.system.definition import BankAccountSystem

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from uuid import UUID

    from eventsourcing.application import Application

    from bankaccounts.backpressure import Backlog
    from bankaccounts.system.followers import FollowerFailure

#: Lag is counted up to this many notifications; beyond it, it shows as "10000+".
LAG_COUNT_LIMIT = 10_000


@dataclass
class FollowerStatus:
    """One follower's position in one upstream application."""

    follower: str
    upstream: str
    position: int  # the last notification id processed (tracked)
    latest: int  # the upstream's last notification id
    lag: int  # notifications of the follower's topics after position
    stuck: bool = False
    # The event the follower failed on (and keeps trying), as its worker recorded.
    failure: FollowerFailure | None = None
    # The heartbeats of its workers, alive or gone; None where there are none to
    # judge by (the embedded bank, or no worker has a row).
    workers: list[WorkerBeat] | None = None

    @property
    def lag_text(self) -> str:
        """The lag, with a + when it was counted only up to the limit."""
        return f"{self.lag}+" if self.lag >= LAG_COUNT_LIMIT else str(self.lag)

    @property
    def live_workers(self) -> int | None:
        """How many of its workers are alive (None: no heartbeats to judge by)."""
        if self.workers is None:
            return None
        return sum(1 for worker in self.workers if worker.alive)

    @property
    def state(self) -> str:
        """down, duplicate, failing, stuck, behind or up to date."""
        live = self.live_workers
        if live == 0:
            return "down"
        if live is not None and live > 1:
            return "duplicate"
        if self.failure is not None:
            return "failing"
        if self.stuck:
            return "stuck"
        return "behind" if self.lag else "up to date"

    @property
    def is_healthy(self) -> bool:
        """False if the follower is down, duplicate, failing or stuck."""
        return self.state in ("behind", "up to date")

    def to_json(self) -> dict[str, Any]:
        """As a JSON object, with the state, the failure and the workers (or null)."""
        data = asdict(self)
        data["state"] = self.state
        data["failure"] = None if self.failure is None else self.failure.to_json()
        data["workers"] = (
            None if self.workers is None else [w.to_json() for w in self.workers]
        )
        return data


class SystemStatus:
    """Reads positions and lags from the applications' own recorders."""

    def __init__(self, env: Mapping[str, str]) -> None:
        """Opens every application of the system (without creating tables)."""
        self.system = BankAccountSystem()
        env = {**env, "CREATE_TABLE": "n"}
        self.apps: dict[str, Application[Any]] = {
            name: self.system.get_app_cls(name)(env=env) for name in self.system.nodes
        }

    def close(self) -> None:
        """Closes the applications' connections."""
        for app in self.apps.values():
            app.close()

    def read(self) -> list[FollowerStatus]:
        """Every follower's position and lag in every upstream, in system order."""
        return read_statuses(self.apps)

    def watch(
        self,
        stuck_after: float,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.5,
    ) -> list[FollowerStatus]:
        """Reads, then marks stuck what lags and doesn't move for stuck_after seconds.

        Returns as soon as every lagging follower has either caught up or moved on.
        """
        first = self.read()
        deadline = clock() + stuck_after
        # A follower with no live worker will not move: it is down, not stuck.
        pending = {
            (s.follower, s.upstream): s for s in first if s.lag and s.live_workers != 0
        }
        latest = {(s.follower, s.upstream): s for s in first}
        while pending and clock() < deadline:
            time.sleep(interval)
            for status in self.read():
                key = (status.follower, status.upstream)
                latest[key] = status
                before = pending.get(key)
                if before and (not status.lag or status.position != before.position):
                    del pending[key]
        for key in pending:
            latest[key].stuck = True
        return list(latest.values())


def read_statuses(apps: Mapping[str, Application[Any]]) -> list[FollowerStatus]:
    """Every follower's position, lag and failure, from the system's applications.

    The applications by name: those SystemStatus opens, or a process's own (the
    embedded bank's runner has them all, for a /api/system route).
    """
    statuses: list[FollowerStatus] = []
    follows = BankAccountSystem().follows
    heartbeats = read_heartbeats(apps[name] for name in follows)
    for follower_name, upstream_names in follows.items():
        follower: Any = apps[follower_name]
        failures = {f.upstream: f for f in follower.recorder.select_failures()}
        kind = follower_name.lower()
        workers = (
            None
            if heartbeats is None
            else [beat for beat in heartbeats if beat.kind == kind]
        )
        statuses.extend(
            follower_status(
                follower,
                apps[upstream_name],
                failure=failures.get(upstream_name),
                workers=workers,
            )
            for upstream_name in upstream_names
        )
    return statuses


def follower_status(
    follower: Any,
    upstream: Application[Any],
    *,
    failure: FollowerFailure | None = None,
    workers: list[WorkerBeat] | None = None,
) -> FollowerStatus:
    """A follower's position in an upstream, the upstream's latest, and the lag."""
    recorder: Any = upstream.recorder
    position = follower.recorder.max_tracking_id(upstream.name) or 0
    return FollowerStatus(
        follower=follower.name,
        upstream=upstream.name,
        position=position,
        latest=recorder.max_notification_id() or 0,
        lag=count_after(recorder, position, follower.topics),
        failure=failure,
        workers=workers,
    )


def read_heartbeats(followers: Iterable[Application[Any]]) -> list[WorkerBeat] | None:
    """The workers' heartbeats; None unless PostgreSQL holds some (workers ran)."""
    for follower in followers:
        datastore = getattr(follower.recorder, "datastore", None)
        if isinstance(datastore, PostgresDatastore):
            with datastore.get_connection() as connection:
                beats = read_workers(connection, datastore.schema)
            return beats or None
    return None


def count_after(recorder: Any, position: int, topics: tuple[str, ...]) -> int:
    """How many notifications of these topics come after position (up to a limit)."""
    count = 0
    start = position
    while count < LAG_COUNT_LIMIT:
        notifications = recorder.select_notifications(
            start=start, limit=1000, topics=topics, inclusive_of_start=False
        )
        if not notifications:
            break
        count += len(notifications)
        start = notifications[-1].id
    return min(count, LAG_COUNT_LIMIT)


@dataclass
class UpstreamPosition:
    """How far an application has got in one of its upstreams."""

    name: str
    position: int
    lag: int


@dataclass
class ApplicationStatus:
    """An application of the system: its last notification id and its upstreams."""

    name: str
    max_notification_id: int
    upstreams: list[UpstreamPosition]

    def to_json(self) -> dict[str, Any]:
        """As GET /api/system shows it (upstreams: name, position, lag)."""
        return asdict(self)


def max_notification_ids(apps: Mapping[str, Application[Any]]) -> dict[str, int]:
    """Each application's last notification id (0: none yet), by name."""
    return {name: app.recorder.max_notification_id() or 0 for name, app in apps.items()}


def application_statuses(
    statuses: Sequence[FollowerStatus],
    max_ids: Mapping[str, int] | None = None,
) -> list[ApplicationStatus]:
    """Each application of the system, in system order, with its upstreams.

    The last notification ids are the recorders' (max_ids), or else the upstreams'
    latest as the statuses read them (an application that is nobody's upstream, the
    Interface, records no events of its own: 0).
    """
    latest = {s.upstream: s.latest for s in statuses}
    if max_ids is not None:
        latest.update(max_ids)
    return [
        ApplicationStatus(
            name=name,
            max_notification_id=latest.get(name, 0),
            upstreams=[
                UpstreamPosition(s.upstream, s.position, s.lag)
                for s in statuses
                if s.follower == name
            ],
        )
        for name in BankAccountSystem().nodes
    ]


def system_json(
    statuses: list[FollowerStatus],
    backlog: Backlog | None,
    max_ids: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """GET /api/system: the applications, health, followers, backlog and bound."""
    return {
        "applications": [a.to_json() for a in application_statuses(statuses, max_ids)],
        "healthy": all(s.is_healthy for s in statuses),
        "followers": [s.to_json() for s in statuses],
        "backlog": None if backlog is None else backlog.to_json(),
    }


def format_table(
    statuses: list[FollowerStatus],
    backlog: Backlog | None = None,
    max_ids: Mapping[str, int] | None = None,
) -> str:
    """The statuses as an aligned text table, then the backlog and failures; with
    max_ids (the recorders' last notification ids), each application's figures too,
    before the workers."""
    header = ("FOLLOWER", "UPSTREAM", "POSITION", "LATEST", "LAG", "STATE")
    rows = [header]
    rows.extend(
        (s.follower, s.upstream, str(s.position), str(s.latest), s.lag_text, s.state)
        for s in statuses
    )
    table = "\n".join(_aligned(rows))
    # Each failure in words below the table: where, what, since when, and why.
    failing = [
        f"{s.follower} fails at {s.upstream} position {f.position} ({f.event}), "
        f"{f.attempts} attempt{'s' if f.attempts != 1 else ''} since "
        f"{f.first_failed_at:%Y-%m-%d %H:%M:%S %Z}: {f.error}"
        for s in statuses
        if (f := s.failure) is not None
    ]
    return "\n".join(
        [
            table,
            *([] if backlog is None else [backlog.describe()]),
            *failing,
            *(
                format_applications(application_statuses(statuses, max_ids))
                if max_ids is not None
                else ()
            ),
            *format_workers(statuses),
        ]
    )


def format_applications(applications: Sequence[ApplicationStatus]) -> list[str]:
    """Each application's last notification id and its upstreams, after a blank
    line: the figures of GET /api/system's `applications`."""
    rows = [("APPLICATION", "NOTIFICATIONS", "UPSTREAMS")]
    rows.extend(
        (
            a.name,
            str(a.max_notification_id),
            ", ".join(f"{u.name} at {u.position} (lag {u.lag})" for u in a.upstreams)
            or "-",
        )
        for a in applications
    )
    return ["", *_aligned(rows)]


def format_workers(statuses: list[FollowerStatus]) -> list[str]:
    """The workers' heartbeats as table lines, after a blank line (none: no lines)."""
    seen: dict[UUID, WorkerBeat] = {}
    for status in statuses:
        for worker in status.workers or ():
            seen.setdefault(worker.id, worker)
    if not seen:
        return []
    header = ("WORKER", "HOST", "PID", "STATE", "STARTED", "LAST BEAT")
    rows = [header]
    rows.extend(
        (
            w.kind,
            w.host,
            str(w.pid),
            w.shown_state,
            f"{w.started_at:%Y-%m-%d %H:%M:%S %Z}",
            f"{w.age:.1f} s ago",
        )
        for w in sorted(seen.values(), key=lambda w: (w.kind, w.started_at))
    )
    return ["", *_aligned(rows)]


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    ]

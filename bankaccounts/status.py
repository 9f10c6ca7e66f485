"""How far each follower of the system has got in each of its upstream applications."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bankaccounts.system.definition import BankAccountSystem

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from eventsourcing.application import Application

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

    @property
    def lag_text(self) -> str:
        """The lag, with a + when it was counted only up to the limit."""
        return f"{self.lag}+" if self.lag >= LAG_COUNT_LIMIT else str(self.lag)

    @property
    def state(self) -> str:
        """failing, stuck, behind or up to date."""
        if self.failure is not None:
            return "failing"
        if self.stuck:
            return "stuck"
        return "behind" if self.lag else "up to date"

    @property
    def is_healthy(self) -> bool:
        """False if the follower is failing or stuck."""
        return self.failure is None and not self.stuck

    def to_json(self) -> dict[str, Any]:
        """As a JSON object, with the state and the failure (or null)."""
        data = asdict(self)
        data["state"] = self.state
        data["failure"] = None if self.failure is None else self.failure.to_json()
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
        pending = {(s.follower, s.upstream): s for s in first if s.lag}
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
    statuses = []
    for follower_name, upstream_names in BankAccountSystem().follows.items():
        follower: Any = apps[follower_name]
        topics = follower.topics
        failures = {f.upstream: f for f in follower.recorder.select_failures()}
        for upstream_name in upstream_names:
            recorder: Any = apps[upstream_name].recorder
            position = follower.recorder.max_tracking_id(upstream_name) or 0
            latest = recorder.max_notification_id() or 0
            statuses.append(
                FollowerStatus(
                    follower=follower_name,
                    upstream=upstream_name,
                    position=position,
                    latest=latest,
                    lag=count_after(recorder, position, topics),
                    failure=failures.get(upstream_name),
                )
            )
    return statuses


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


def format_table(statuses: list[FollowerStatus]) -> str:
    """The statuses as an aligned text table."""
    header = ("FOLLOWER", "UPSTREAM", "POSITION", "LATEST", "LAG", "STATE")
    rows = [header]
    rows.extend(
        (s.follower, s.upstream, str(s.position), str(s.latest), s.lag_text, s.state)
        for s in statuses
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    table = "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    )
    # Each failure in words below the table: where, what, since when, and why.
    failing = [
        f"{s.follower} fails at {s.upstream} position {f.position} ({f.event}), "
        f"{f.attempts} attempt{'s' if f.attempts != 1 else ''} since "
        f"{f.first_failed_at:%Y-%m-%d %H:%M:%S %Z}: {f.error}"
        for s in statuses
        if (f := s.failure) is not None
    ]
    return "\n".join([table, *failing])

"""How far each follower of the system has got in each of its upstream applications."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bankaccounts.system.definition import BankAccountSystem

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from eventsourcing.application import Application

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

    @property
    def lag_text(self) -> str:
        """The lag, with a + when it was counted only up to the limit."""
        return f"{self.lag}+" if self.lag >= LAG_COUNT_LIMIT else str(self.lag)

    def to_json(self) -> dict[str, Any]:
        """As a JSON object."""
        return asdict(self)


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
        statuses = []
        for follower_name, upstream_names in self.system.follows.items():
            follower: Any = self.apps[follower_name]
            topics = follower.topics
            for upstream_name in upstream_names:
                recorder: Any = self.apps[upstream_name].recorder
                position = follower.recorder.max_tracking_id(upstream_name) or 0
                latest = recorder.max_notification_id() or 0
                statuses.append(
                    FollowerStatus(
                        follower=follower_name,
                        upstream=upstream_name,
                        position=position,
                        latest=latest,
                        lag=count_after(recorder, position, topics),
                    )
                )
        return statuses

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
    for s in statuses:
        state = "stuck" if s.stuck else ("behind" if s.lag else "up to date")
        rows.append(
            (
                s.follower,
                s.upstream,
                str(s.position),
                str(s.latest),
                s.lag_text,
                state,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    )

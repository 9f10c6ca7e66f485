"""Backpressure: money requests are refused while too many commands wait.

The backlog is the number of commands recorded but not yet taken up by the Sagas:
Commands' last notification id minus the Sagas' tracked position in Commands (every
notification of Commands is a command, and the Sagas follow all of them). Both are
read from indexes (the notifications' primary key, the tracking table's) in the
applications' own databases, so the web processes of the distributed deployment read
the same figure as the embedded server: the Sagas worker's tracking in the shared
PostgreSQL. In PostgreSQL a rolled-back insert leaves a gap in the notification ids,
so the figure may count a few commands more while they are processed, never fewer.

The figure is read at most every CACHE_SECONDS, by one request at a time; the others
take the figure last read. So a burst of requests costs two small reads per 0.2 s,
and a request is accepted or refused on a figure at most that old: the bound is
passed by at most the commands recorded in the meantime.

The bound (`--max-backlog`, BANKACCOUNTS_MAX_BACKLOG; 0: no bound) defaults to
DEFAULT_MAX_BACKLOG, sized so that a command accepted at the bound finishes within
a few seconds: TARGET_SECONDS times the rate at which the embedded default (SQLite
files, the pipeline runner) processed commands while 8 HTTP clients posted transfers
as fast as it answered (`python -m bench --only load`, MEASURED_RATE),
rounded down to a hundred. A request over the bound raises BusyError with the
seconds until the backlog is back under the bound at the rate the Sagas moved in
the last RATE_WINDOW seconds (MEASURED_RATE while they did not move: a stopped
worker), at least 1.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bankaccounts.exceptions import BusyError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from eventsourcing.application import Application

logger = logging.getLogger(__name__)

#: Commands per second the embedded default processed under the load benchmark
#: (8 clients posting transfers for 30 s, SQLite files, the pipeline runner, 2 cores
#: shared with the clients: 225 and 231 a second, with and without the bound, on
#: 2026-12-05; the single-threaded runner did 175 to 182).
MEASURED_RATE = 225.0
#: How long a command accepted at the bound may wait before the Sagas take it up.
TARGET_SECONDS = 3.0
#: The default bound: TARGET_SECONDS of commands at MEASURED_RATE.
DEFAULT_MAX_BACKLOG = int(MEASURED_RATE * TARGET_SECONDS) // 100 * 100
#: How long a figure read is used before it is read again.
CACHE_SECONDS = 0.2
#: The window over which the Sagas' rate of progress is measured.
RATE_WINDOW = 5.0
#: The most a Retry-After says (a client comes back to look, at least).
MAX_RETRY_AFTER = 60
COMMANDS = "Commands"
SAGAS = "Sagas"


@dataclass(frozen=True)
class Backlog:
    """The commands waiting for the Sagas, and the bound (None: no bound)."""

    commands: int
    bound: int | None

    @property
    def is_over(self) -> bool:
        """True if the backlog has passed the bound."""
        return self.bound is not None and self.commands >= self.bound

    def to_json(self) -> dict[str, Any]:
        """{"commands": N, "bound": M} (bound null: no bound)."""
        return {"commands": self.commands, "bound": self.bound}

    def describe(self) -> str:
        """The backlog in words, for `bankaccounts status`."""
        waiting = f"{self.commands} command{'s' if self.commands != 1 else ''}"
        if self.bound is None:
            return f"Backlog: {waiting} waiting for the Sagas (no bound)"
        refused = " (refusing money requests)" if self.is_over else ""
        return f"Backlog: {waiting} waiting for the Sagas, bound {self.bound}{refused}"


def read_position(
    commands: Application[Any], sagas: Application[Any]
) -> tuple[int, int]:
    """Commands' last notification id, and the Sagas' tracked position in it."""
    latest = commands.recorder.max_notification_id() or 0
    recorder: Any = sagas.recorder
    position = recorder.max_tracking_id(commands.name) or 0
    return latest, position


def read_backlog(applications: Mapping[str, Application[Any]]) -> int:
    """The commands recorded but not yet taken up by the Sagas (read now)."""
    latest, position = read_position(applications[COMMANDS], applications[SAGAS])
    return max(0, latest - position)


def bound_of(max_backlog: int | None) -> int | None:
    """The bound a --max-backlog value sets: None (no bound) for 0 or None."""
    return max_backlog or None


class Backpressure:
    """Reads the backlog (cached for CACHE_SECONDS) and refuses over the bound."""

    def __init__(
        self,
        applications: Callable[[], Mapping[str, Application[Any]]],
        bound: int | None = DEFAULT_MAX_BACKLOG,
        *,
        max_age: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Reads from the applications by name (a bank's `applications`)."""
        if bound is not None and bound < 1:
            msg = f"the bound must be 1 or more (or None: no bound), not {bound}"
            raise ValueError(msg)
        self.bound = bound
        self._applications = applications
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self._backlog = 0
        # (when, the Sagas' position): their progress over the last RATE_WINDOW.
        self._samples: deque[tuple[float, int]] = deque()

    def backlog(self) -> Backlog:
        """The backlog as last read (read again if older than max_age)."""
        if self._clock() - self._read_at >= self._max_age:
            self._refresh()
        return Backlog(self._backlog, self.bound)

    def check(self) -> None:
        """BusyError if the backlog has passed the bound."""
        if self.bound is None:
            return
        backlog = self.backlog()
        if backlog.is_over:
            raise BusyError(self.retry_after(backlog.commands))

    def rate(self) -> float:
        """Commands per second the Sagas took up lately (MEASURED_RATE if none)."""
        with self._lock:
            samples = list(self._samples)
        if len(samples) >= 2:
            (first_at, first), (last_at, last) = samples[0], samples[-1]
            if last > first and last_at - first_at >= 2 * self._max_age:
                return (last - first) / (last_at - first_at)
        return MEASURED_RATE

    def retry_after(self, commands: int) -> int:
        """Seconds until a backlog of this many commands is back under the bound."""
        excess = commands - (self.bound or commands) + 1
        seconds = math.ceil(excess / self.rate())
        return max(1, min(MAX_RETRY_AFTER, seconds))

    def _refresh(self) -> None:
        # One reader at a time; the others use the figure last read (if any).
        if not self._lock.acquire(blocking=self._read_at == -math.inf):
            return
        try:
            now = self._clock()
            if now - self._read_at < self._max_age:
                return  # read by another request while this one waited
            try:
                applications = self._applications()
                latest, position = read_position(
                    applications[COMMANDS], applications[SAGAS]
                )
            except Exception:
                # Never in the way when it cannot read: recording says why.
                logger.warning("Could not read the backlog", exc_info=True)
                self._read_at = now
                return
            self._backlog = max(0, latest - position)
            self._read_at = now
            self._samples.append((now, position))
            while self._samples and self._samples[0][0] < now - RATE_WINDOW:
                self._samples.popleft()
        finally:
            self._lock.release()

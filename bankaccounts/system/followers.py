"""What a follower's recorder adds to the library's process recorder.

Two things. A guard: a page of upstream events is recorded with the tracking record of
its first event as well as its last, in the same transaction, so a page that overlaps
what another instance of the follower already committed is refused (the library's
single-row tracking accepts any position above the recorded one, so the last
event's record alone would let the page's first events be applied again). And a
record of the event the follower keeps failing on, per upstream, which `bankaccounts
status` reads from another process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError, ProcessRecorder, Tracking
from eventsourcing.popo import POPOProcessRecorder

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent

#: The insert_events() keyword that carries the tracking record of a page's first
#: event: recorded before the last event's, it is refused unless the recorded
#: position is below the page. For a page of several upstreams' events (see
#: BatchProcessApplication.processed_together) a list: each upstream's first, and
#: the last of each upstream but the one whose record is the page's own.
PAGE_START = "page_start"
#: The failures table's columns, in FollowerFailure's order (both stores' tables).
FAILURE_COLUMNS = (
    "upstream, position, event, error, attempts, first_failed_at, last_failed_at"
)


@dataclass(frozen=True)
class FollowerFailure:
    """The event a follower failed on, in one upstream, and how often in a row."""

    upstream: str
    position: int
    event: str
    error: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime

    def to_json(self) -> dict[str, Any]:
        """As JSON-ready values."""
        return {
            "upstream": self.upstream,
            "position": self.position,
            "event": self.event,
            "error": self.error,
            "attempts": self.attempts,
            "first_failed_at": self.first_failed_at.isoformat(),
            "last_failed_at": self.last_failed_at.isoformat(),
        }


class FollowerRecorder(ProcessRecorder, ABC):
    """A process recorder with the page guard and the failure record."""

    @abstractmethod
    def record_failure(
        self, upstream: str, position: int, event: str, error: str
    ) -> FollowerFailure:
        """Records a failure; attempts count up while the position stays the same."""

    @abstractmethod
    def clear_failures(self, upstream: str, up_to: int) -> None:
        """Forgets failures in upstream at or before position up_to (now processed)."""

    @abstractmethod
    def select_failures(self) -> list[FollowerFailure]:
        """Every failure recorded (none if the table does not exist yet)."""


def page_trackings(kwargs: dict[str, Any]) -> list[Tracking]:
    """The tracking records to write before the page's own (see PAGE_START)."""
    value: Tracking | Sequence[Tracking] | None = kwargs.get(PAGE_START)
    if value is None:
        return []
    if isinstance(value, Tracking):
        return [value]
    return list(value)


def next_failure(
    previous: FollowerFailure | None,
    upstream: str,
    position: int,
    event: str,
    error: str,
) -> FollowerFailure:
    """The failure record after one more failure (attempts counted per position)."""
    now = datetime.now(UTC)
    if previous is not None and previous.position == position:
        attempts, first_failed_at = previous.attempts + 1, previous.first_failed_at
        return FollowerFailure(
            upstream, position, event, error, attempts, first_failed_at, now
        )
    return FollowerFailure(upstream, position, event, error, 1, now, now)


class POPOFollowerRecorder(POPOProcessRecorder, FollowerRecorder):
    """The library's in-memory process recorder, with the guard and failures."""

    def __init__(self) -> None:
        """No failures yet."""
        super().__init__()
        self._failures: dict[str, FollowerFailure] = {}

    def _assert_uniqueness(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        recorded: dict[str, int] = {}
        for tracking in page_trackings(kwargs):
            name = tracking.application_name
            if recorded.get(name, 0) >= tracking.notification_id:
                msg = f"{name} {tracking.notification_id} not after {recorded[name]}"
                raise IntegrityError(msg)
            self._assert_tracking_uniqueness(tracking)
            recorded[name] = tracking.notification_id

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # Another upstream's last position is kept; the page's own follows.
        for tracking in page_trackings(kwargs):
            self._insert_tracking(tracking)
        return super()._update_table(stored_events, **kwargs)

    def record_failure(
        self, upstream: str, position: int, event: str, error: str
    ) -> FollowerFailure:
        """Records a failure; attempts count up while the position stays the same."""
        with self._database_lock:
            failure = next_failure(
                self._failures.get(upstream), upstream, position, event, error
            )
            self._failures[upstream] = failure
            return failure

    def clear_failures(self, upstream: str, up_to: int) -> None:
        """Forgets failures in upstream at or before position up_to."""
        with self._database_lock:
            failure = self._failures.get(upstream)
            if failure is not None and failure.position <= up_to:
                del self._failures[upstream]

    def select_failures(self) -> list[FollowerFailure]:
        """Every failure recorded."""
        with self._database_lock:
            return list(self._failures.values())

"""Processing a page of upstream events in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.system import ProcessApplication

from bankaccounts.infrastructure import PAGE_SIZE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.domain import DomainEventProtocol
    from eventsourcing.persistence import Tracking

Job = tuple["DomainEventProtocol[UUID]", "Tracking"]


class BatchProcessApplication(ProcessApplication[UUID]):
    """A process application that records a page of events with one commit.

    The policy runs for each event in order, collecting into one processing event,
    which is recorded with the tracking record of the last: all or nothing, exactly
    once, one commit instead of one per event. A policy reads an aggregate that an
    earlier event of the page changed from the processing event (see
    `collected`), not from the repository, which has not seen it yet.
    """

    pull_section_size = PAGE_SIZE

    def pull_and_process(
        self, leader_name: str, start: int | None = None, stop: int | None = None
    ) -> None:
        """Pulls new events of the leader and processes each page in one commit."""
        if start is None:
            start = self.recorder.max_tracking_id(leader_name)
        for notifications in self.pull_notifications(
            leader_name, start=start, stop=stop, inclusive_of_start=False
        ):
            jobs = self.convert_notifications(
                leader_name, self.filter_received_notifications(notifications)
            )
            if jobs:
                self.process_events(jobs)

    def process_events(self, jobs: Sequence[Job]) -> None:
        """Processes events of one leader in order, recorded with the last tracking."""
        with self.processing_lock:
            processing_event = ProcessingEvent[UUID](tracking=jobs[-1][1])
            for domain_event, _ in jobs:
                self.policy(domain_event, processing_event)
            recordings = self._record(processing_event)
            self._take_snapshots(processing_event)
            self._notify(recordings)

    @staticmethod
    def collected(processing_event: ProcessingEvent[UUID], aggregate_id: UUID) -> Any:
        """The aggregate as an earlier event of the page left it, or None."""
        return processing_event.aggregates.get(aggregate_id)

"""Processing a page of upstream events in one transaction."""

from __future__ import annotations

import heapq
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, cast
from uuid import UUID

from eventsourcing.application import LocalNotificationLog, ProcessingEvent
from eventsourcing.domain import MetaAggregate, datetime_now_with_tzinfo
from eventsourcing.persistence import ConnectionPoolClosedError, PersistenceError
from eventsourcing.popo import POPOFactory
from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory
from eventsourcing.system import ProcessApplication
from eventsourcing.utils import resolve_topic

from bankaccounts.infrastructure import PAGE_SIZE
from bankaccounts.logs import one_line
from bankaccounts.metrics import EVENTS_PROCESSED, PAGES_PROCESSED
from bankaccounts.system.followers import (
    PAGE_START,
    FollowerFailure,
    FollowerRecorder,
    POPOFollowerRecorder,
)
from bankaccounts.system.postgres import PostgresFollowerRecorder
from bankaccounts.system.sqlite import SQLiteFollowerRecorder

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.domain import DomainEventProtocol, MutableOrImmutableAggregate
    from eventsourcing.persistence import Notification, Tracking
    from eventsourcing.utils import EnvType

Job = tuple["DomainEventProtocol[UUID]", "Tracking"]

logger = logging.getLogger(__name__)


def _is_mysql_factory(factory: object) -> bool:
    """True for bankaccounts.mysql's factory (the plugin is an optional extra)."""
    if "eventsourcing_sqlalchemy" not in sys.modules:
        return False  # then the factory cannot be one
    from bankaccounts.mysql import MySQLFactory

    return isinstance(factory, MySQLFactory)


class PageProcessingEvent(ProcessingEvent[UUID]):
    """The library's processing event, collecting the bank's aggregates faster.

    The library tells aggregates from events with runtime-checkable protocols,
    whose isinstance checks cost about a tenth of a page's processing on Python
    3.11; the bank's aggregates and events are of the library's concrete classes.
    """

    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        """Collects pending domain events from the given aggregates (or events)."""
        for obj in objs:
            if type(obj).__class__ is MetaAggregate:  # an Aggregate subclass
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            elif obj is not None:
                super().collect_events(obj)
        self.saved_kwargs.update(kwargs)


class UnprocessableEventError(Exception):
    """A follower cannot process an event and has no outcome for it: it stops there."""

    def __init__(self, follower: str, upstream: str, position: int, event: str) -> None:
        """Names the follower, the upstream, the event's position and its type."""
        super().__init__(
            f"{follower} cannot process {event} from {upstream} at position "
            f"{position}; it stops there and tries again later"
        )
        self.follower = follower
        self.upstream = upstream
        self.position = position
        self.event = event


#: Failures of the database or of concurrency (a refused write is an IntegrityError):
#: the page is tried again as a whole (by the runner, the worker or
#: retry_on_conflict), never skipped nor taken for a fault of the event.
RETRIED_ERRORS = (PersistenceError, ConnectionPoolClosedError)


class BatchProcessApplication(ProcessApplication[UUID]):
    """A process application that records a page of events with one commit.

    The policy runs for each event in order, collecting into one processing event,
    which is recorded with the tracking record of the last: all or nothing, exactly
    once, one commit instead of one per event. A policy reads an aggregate that an
    earlier event of the page changed from the processing event (see
    `collected`), not from the repository, which has not seen it yet.
    """

    pull_section_size = PAGE_SIZE
    recorder: FollowerRecorder
    _failing: dict[str, int] | None = None  # see _failures_on_record
    #: Per upstream, the position this instance recorded last (see remember_positions).
    _positions: dict[str, int | None] | None = None
    #: The recorder of each store; the read model's application names its own.
    popo_recorder: ClassVar[type[POPOFollowerRecorder]] = POPOFollowerRecorder
    sqlite_recorder: ClassVar[type[SQLiteFollowerRecorder]] = SQLiteFollowerRecorder
    postgres_recorder: ClassVar[type[PostgresFollowerRecorder]] = (
        PostgresFollowerRecorder
    )
    #: A topic: the MySQL recorders need the optional `mysql` extra.
    mysql_recorder: ClassVar[str] = "bankaccounts.system.mysql:MySQLFollowerRecorder"
    #: Upstreams that follow one another, processed together by a runner that
    #: follows upstreams apart (PipelineRunner): one page takes each one's new
    #: events, merged in the order they happened (their timestamps; each
    #: upstream's own order kept), in one commit. Their ends are read last one
    #: first (every event up to the interface's Sagas end was caused by events up
    #: to the Accounts end read after it), and a page of an upstream that is cut
    #: at the page size cuts the merge where it ends. So nothing is processed
    #: before what caused it: the interface shows an account's change before the
    #: saga's end, and the feed tells a transaction's steps in their order.
    processed_together: ClassVar[tuple[str, ...]] = ()
    #: How often wait_for_position reads the recorded position while it waits for
    #: a page that another process (or a runner's other object) records: at first,
    #: then twice as long each time, up to the most.
    POSITION_POLL_INTERVAL = 0.01
    MAX_POSITION_POLL_INTERVAL = 0.2

    def __init__(self, env: EnvType | None = None) -> None:
        """Keeps what it has processed, for clients waiting to read their writes."""
        super().__init__(env)
        self._processed: dict[str, int] = {}
        self._progress = threading.Condition()

    def construct_recorder(self) -> FollowerRecorder:
        """The library's process recorder with the page guard and failures record."""
        factory = self.factory
        recorder: FollowerRecorder
        if isinstance(factory, POPOFactory):
            return self.popo_recorder()
        if isinstance(factory, SQLiteFactory):
            recorder = self.sqlite_recorder(factory.datastore)
        elif isinstance(factory, PostgresFactory):
            # Table names as the library's factory makes them.
            prefix = self.name.lower()
            recorder = self.postgres_recorder(
                factory.datastore,
                events_table_name=f"{prefix}_events",
                tracking_table_name=f"{prefix}_tracking",
            )
        elif _is_mysql_factory(factory):
            return self._mysql_recorder(factory)
        else:
            msg = f"No follower recorder for {type(factory).__name__}"
            raise NotImplementedError(msg)
        if factory.env_create_table():
            recorder.create_table()
        return recorder

    def _mysql_recorder(self, factory: Any) -> FollowerRecorder:
        """The recorder on MySQL/MariaDB, through the SQLAlchemy plugin."""
        recorder_class: Any = resolve_topic(self.mysql_recorder)
        prefix = self.name.lower()  # table names as the plugin's factory makes them
        recorder = recorder_class(
            factory.datastore,
            events_table_name=f"{prefix}_events",
            tracking_table_name=f"{prefix}_tracking",
            schema_name=factory.env.get(factory.SQLALCHEMY_SCHEMA),
        )
        if factory.env_create_table():
            recorder.create_table()
        return cast("FollowerRecorder", recorder)

    def pull_and_process(
        self, leader_name: str, start: int | None = None, stop: int | None = None
    ) -> None:
        """Pulls new events of the leader and processes each page in one commit.

        The library's runners call this; a failure is logged, not raised, so that
        it does not reach the writer whose event prompted the runner (and, in the
        MultiThreadedRunner, end the follower's thread).
        """
        try:
            self._pull_and_process(leader_name, start, stop)
        except BaseException as error:
            self.forget_position(leader_name)
            if not isinstance(error, Exception):
                raise
            self._log_failure(leader_name, error)

    def _log_failure(self, leader_name: str, error: Exception) -> None:
        if isinstance(error, UnprocessableEventError):
            logger.error("%s", error)  # the cause was logged with its traceback
            self.note_failure(
                error.upstream, error.position, error.event, error.__cause__ or error
            )
            return
        # The runner prompts again (on new events and at every catch-up), and
        # the follower resumes from its tracking position: nothing is skipped.
        logger.error(
            "%s: following %s failed; it resumes from its position when prompted again",
            self.name,
            leader_name,
            exc_info=error,
        )

    def _pull_and_process(
        self, leader_name: str, start: int | None, stop: int | None
    ) -> None:
        if start is None:
            start = self.recorded_position(leader_name)
        for notifications in self.pull_notifications(
            leader_name, start=start, stop=stop, inclusive_of_start=False
        ):
            self._process_notifications(leader_name, notifications)

    def remember_positions(self) -> None:
        """Remembers the position it records in each upstream, instead of asking.

        For a runner that is the only one to process this follower's events (one
        process per data directory, one thread per follower): a pull then costs no
        query for the position. Should another writer have recorded further after
        all, its page is refused (the page guard, the library's tracking), the
        position is forgotten and read again, so nothing is processed twice.
        """
        self._positions = {}

    def recorded_position(self, leader_name: str) -> int | None:
        """The position recorded in the upstream: remembered, or read."""
        positions = self._positions
        if positions is not None and leader_name in positions:
            return positions[leader_name]
        position = self.recorder.max_tracking_id(leader_name)
        if positions is not None:
            positions[leader_name] = position
        return position

    def forget_position(self, leader_name: str) -> None:
        """Reads the position again at the next pull (after any failure)."""
        if self._positions is not None:
            self._positions.pop(leader_name, None)

    def process_next_page(self, leader_name: str) -> bool:
        """Pulls and processes one page of the upstream; True if more may wait.

        Fails as pull_and_process does (logged, not raised; the position is read
        again at the next pull). A runner that calls it in turn for each prompted
        upstream keeps one busy upstream from holding up the others.
        """
        try:
            start = self.recorded_position(leader_name)
            notifications = next(
                self.pull_notifications(
                    leader_name, start=start, inclusive_of_start=False
                ),
                [],
            )
            self._process_notifications(leader_name, notifications)
        except BaseException as error:
            self.forget_position(leader_name)
            if not isinstance(error, Exception):
                raise
            self._log_failure(leader_name, error)
            return False
        return len(notifications) >= self.pull_section_size

    def _process_notifications(
        self, leader_name: str, notifications: Sequence[Notification]
    ) -> None:
        jobs = self.convert_notifications(
            leader_name, self.filter_received_notifications(notifications)
        )
        if jobs:
            self.process_events(jobs)
            self._processed_up_to(jobs)

    def _processed_up_to(self, jobs: Sequence[Job]) -> None:
        """Remembers each upstream's last position in the page just recorded."""
        positions = {tracking.application_name: tracking for _, tracking in jobs}
        for name, tracking in positions.items():
            if self._positions is not None:
                self._positions[name] = tracking.notification_id
            with self._progress:
                processed = self._processed.get(name, 0)
                self._processed[name] = max(processed, tracking.notification_id)
                self._progress.notify_all()
            self.note_progress(name, tracking.notification_id)

    def process_together(self) -> bool:
        """One page of the upstreams in processed_together; True if more may wait.

        Fails as process_next_page does (logged, not raised).
        """
        names = self.processed_together
        try:
            merged, cut = self._page_together(names)
            if merged:
                self.process_events(merged)
                self._processed_up_to(merged)
        except BaseException as error:
            for name in names:
                self.forget_position(name)
            if not isinstance(error, Exception):
                raise
            self._log_failure(",".join(names), error)
            return False
        return cut

    def _page_together(self, names: tuple[str, ...]) -> tuple[list[Job], bool]:
        """The next page of the upstreams, in causal order; and whether it was cut.

        Every event up to the last upstream's end, read first, was caused by events
        up to the ends of the others, read after. Events that happened after the
        horizon (a moment before the ends were read) are left for the next page: one
        of them may have been caused by an event past an end read earlier. A page
        cut at the page size cuts the merge where it ends; and if the first
        upstream's page is cut (the causes of the others' ends may lie past it), it
        is the page on its own.
        """
        horizon = datetime_now_with_tzinfo()
        stops = {name: self.leader_position(name) for name in reversed(names)}
        # No event up to the ends was made later than now, unless clocks disagree
        # (events of another machine, a clock set back): those are not held back.
        read_at = datetime_now_with_tzinfo()
        pages: dict[str, list[Job]] = {}
        cut_after: list[Job] = []
        for name in names:
            start, stop = self.recorded_position(name), stops[name]
            if stop is not None and (start or 0) >= stop:
                continue
            notifications = next(
                self.pull_notifications(
                    name, start=start, stop=stop, inclusive_of_start=False
                ),
                [],
            )
            jobs = self.convert_notifications(
                name, self.filter_received_notifications(notifications)
            )
            pages[name] = jobs
            if jobs and len(notifications) >= self.pull_section_size:
                if name == names[0]:
                    return jobs, True
                cut_after.append(jobs[-1])  # more of it may follow: cut there
        merged = list(heapq.merge(*pages.values(), key=_event_time))
        ends = {id(job) for job in cut_after}
        for index, job in enumerate(merged):
            if horizon < _event_time(job) <= read_at:
                del merged[index:]
                return merged, True
            if id(job) in ends:
                del merged[index + 1 :]
                return merged, True
        return merged, False

    def wait_for_position(self, upstream: str, position: int, timeout: float) -> bool:
        """Waits until it has processed the upstream up to position; False on timeout.

        Pages processed in this process wake it at once; otherwise (the follower
        runs in another process: a worker, a Ray actor) it reads the recorded
        position, after POSITION_POLL_INTERVAL and then twice as long each time.
        """
        deadline = time.monotonic() + timeout
        interval = self.POSITION_POLL_INTERVAL
        while True:
            with self._progress:
                if self._processed.get(upstream, 0) >= position:
                    return True
            if (self.recorder.max_tracking_id(upstream) or 0) >= position:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._progress:
                if self._processed.get(upstream, 0) >= position:
                    return True
                self._progress.wait(min(left, interval))
            interval = min(interval * 2, self.MAX_POSITION_POLL_INTERVAL)

    def leader_position(self, leader_name: str) -> int | None:
        """The upstream's last notification id (0: none yet; None: a remote log)."""
        log = self.readers[leader_name].notification_log
        if isinstance(log, LocalNotificationLog):
            return log.recorder.max_notification_id() or 0
        return None

    def note_failure(
        self, upstream: str, position: int, event: str, cause: BaseException
    ) -> FollowerFailure | None:
        """Records the event it stopped at, for `status`; None if that failed.

        The log says it anyway: a failure to record it is logged, not raised.
        """
        text = f"{type(cause).__name__}: {one_line(cause)}"
        try:
            failure = self.recorder.record_failure(upstream, position, event, text)
        except Exception:
            logger.exception("%s: could not record its failure", self.name)
            return None
        self._failures_on_record()[upstream] = position
        return failure

    def note_progress(self, upstream: str, position: int) -> bool:
        """Forgets a failure on record once past it; True if there was one."""
        failing = self._failures_on_record()
        if upstream in failing and failing[upstream] <= position:
            self.recorder.clear_failures(upstream, position)
            del failing[upstream]
            return True
        return False

    def _failures_on_record(self) -> dict[str, int]:
        """Per upstream, the position of a failure on record (read once)."""
        if self._failing is None:
            try:
                failures = self.recorder.select_failures()
            except RETRIED_ERRORS:
                raise
            except Exception:  # e.g. a schema from before the failures table
                logger.exception("%s: could not read its failures", self.name)
                failures = []
            self._failing = {f.upstream: f.position for f in failures}
        return self._failing

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Processes one event (the library's per-event runners call this)."""
        self.process_events([(domain_event, tracking)])

    def process_events(self, jobs: Sequence[Job]) -> None:
        """Processes events of one leader in order, recorded with the last tracking.

        If the page fails for another reason than the database or a concurrent
        writer, its events are processed one by one, so that one event that cannot
        be processed (a bug, a poison event) does not hold up the others. That
        event is logged at ERROR and given to `outcome_of_failure`: what the
        application records instead (the transaction ends failed), or None to stop
        at it, as a follower does when it cannot know the right outcome.
        """
        try:
            self._process_page(jobs)
        except RETRIED_ERRORS:
            raise
        except Exception as error:
            if len(jobs) == 1:
                self._process_failed(jobs[0], error)
                return
            logger.warning(
                "%s: a page of %d events from %s failed; processing them one by one",
                self.name,
                len(jobs),
                jobs[0][1].application_name,
            )
            for job in jobs:
                try:
                    self._process_page([job])
                except RETRIED_ERRORS:
                    raise
                except Exception as error:
                    self._process_failed(job, error)

    def outcome_of_failure(
        self, domain_event: Any, error: Exception
    ) -> Sequence[MutableOrImmutableAggregate[UUID]] | None:
        """What to record when an event cannot be processed; None stops here."""
        return None

    def _process_failed(self, job: Job, error: Exception) -> None:
        domain_event, tracking = job
        logger.error(
            "%s: cannot process %s (aggregate %s, version %s) from %s at position "
            "%d: %s: %s",
            self.name,
            type(domain_event).__qualname__,
            domain_event.originator_id,
            domain_event.originator_version,
            tracking.application_name,
            tracking.notification_id,
            type(error).__name__,
            error,
            exc_info=error,
        )
        aggregates = self.outcome_of_failure(domain_event, error)
        if aggregates is None:
            raise UnprocessableEventError(
                self.name,
                tracking.application_name,
                tracking.notification_id,
                type(domain_event).__qualname__,
            ) from error
        processing_event = PageProcessingEvent(tracking=tracking)
        processing_event.collect_events(*aggregates)
        with self.processing_lock:
            recordings = self._record(processing_event)
        self._notify(recordings)

    def _process_page(self, jobs: Sequence[Job]) -> None:
        with self.processing_lock:
            processing_event = PageProcessingEvent(tracking=jobs[-1][1])
            guards = _page_guards(jobs)
            if guards:
                # The first event's tracking too: the page is refused if another
                # instance has recorded any of it (see followers.py).
                processing_event.saved_kwargs[PAGE_START] = (
                    guards[0] if len(guards) == 1 else guards
                )
            for domain_event, _ in jobs:
                self.policy(domain_event, processing_event)
            recordings = self._record(processing_event)
            PAGES_PROCESSED.labels(self.name).inc()
            EVENTS_PROCESSED.labels(self.name).inc(len(jobs))
            self._take_snapshots(processing_event)
            self._notify(recordings)

    @staticmethod
    def collected(processing_event: ProcessingEvent[UUID], aggregate_id: UUID) -> Any:
        """The aggregate as an earlier event of the page left it, or None."""
        return processing_event.aggregates.get(aggregate_id)


def _event_time(job: Job) -> Any:
    """When the job's event happened (the order of a merged page)."""
    event: Any = job[0]
    return event.timestamp


def _page_guards(jobs: Sequence[Job]) -> list[Tracking]:
    """The tracking records a page writes before its own (see followers.PAGE_START).

    Each upstream's first, if it has more than one event in the page, and the last
    of each upstream whose record is not the page's own.
    """
    firsts: dict[str, Tracking] = {}
    lasts: dict[str, Tracking] = {}
    for _, tracking in jobs:
        firsts.setdefault(tracking.application_name, tracking)
        lasts[tracking.application_name] = tracking
    own = jobs[-1][1].application_name
    guards = []
    for name, first in firsts.items():
        last = lasts[name]
        if first.notification_id != last.notification_id:
            guards.append(first)
        if name != own:
            guards.append(last)
    return guards

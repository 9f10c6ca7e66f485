"""Runs one process application of the system as a worker of its own.

The worker follows each upstream application through the library's subscriptions
(PostgreSQL LISTEN/NOTIFY, and a read every few seconds in case a notification was
lost), one projection runner per upstream. The runners' threads hand the events, in
order, to an inbox; the worker takes whatever has arrived (up to a page) and
processes it in one transaction with the tracking records of its first and last
events, so a burst costs one commit per page, not one per event, and a restart
resumes exactly where the last commit left off. When anything fails (a lost LISTEN
connection, a killed pool connection, an unreachable server), the worker closes
everything, waits with backoff, builds it all again and catches up: no restart of
the process is needed.

One worker of a kind runs at a time: each holds a PostgreSQL advisory lock, named
for its schema and application, on a connection of its own; a second one waits for
the lock, and takes over when the first stops or dies.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from contextlib import ExitStack
from functools import partial
from itertools import groupby
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.projection import BaseProjectionRunner

from bankaccounts.infrastructure import PAGE_SIZE
from bankaccounts.system.batching import UnprocessableEventError
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.postgres import POLL_INTERVAL, PollingPostgresSubscription

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventsourcing.application import Application
    from eventsourcing.domain import DomainEventProtocol
    from eventsourcing.persistence import ApplicationRecorder, Tracking
    from eventsourcing.postgres import PostgresDatastore

    from bankaccounts.system.batching import BatchProcessApplication, Job
    from bankaccounts.system.followers import FollowerRecorder

logger = logging.getLogger("bankaccounts.worker")

WORKER_NAMES = {"sagas": "Sagas", "accounts": "Accounts", "interface": "Interface"}

#: Failures of the connection, not of an event: reconnecting is the remedy.
CONNECTION_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    ConnectionError,
)

#: Not the event's fault either: another instance (or a web process) recorded first,
#: which happens for a moment when a worker takes over from one that lost its lock;
#: the page is refused whole, and the worker starts again from the recorded position.
EXPECTED_ERRORS = (*CONNECTION_ERRORS, IntegrityError)

#: Seconds between checks that the lock's connection (and so the lock) is alive.
LOCK_CHECK_INTERVAL = 1.0


class Inbox:
    """Takes events from the runners' threads, in order, for the worker to process.

    It stands where the runners expect a projection. Bounded: a runner waits while
    the worker is a page or two behind. Once closed, it drops what it is given: those
    events were not processed, so the next start reads them again.
    """

    def __init__(self, size: int = 2 * PAGE_SIZE) -> None:
        """An empty inbox."""
        self.jobs: queue.Queue[Job] = queue.Queue(maxsize=size)
        self.closed = threading.Event()

    def process_event(
        self, domain_event: DomainEventProtocol[Any], tracking: Tracking
    ) -> None:
        """Called by a runner's thread for each event, in order."""
        while not self.closed.is_set():
            try:
                self.jobs.put((domain_event, tracking), timeout=0.2)
            except queue.Full:
                continue
            return

    def take(self, timeout: float, limit: int = PAGE_SIZE) -> list[Job]:
        """What has arrived (waiting up to timeout for the first), up to limit."""
        try:
            jobs = [self.jobs.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(jobs) < limit:
            try:
                jobs.append(self.jobs.get_nowait())
            except queue.Empty:
                break
        return jobs


def lock_key(schema: str, application_name: str) -> int:
    """The advisory lock's key (a signed 64-bit integer) for a schema's application."""
    digest = hashlib.blake2b(
        f"bankaccounts worker {schema}.{application_name}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


class InstanceLock:
    """One worker of a kind per schema: an advisory lock on a connection of its own.

    The server releases it when the connection ends, however the worker ends (SIGKILL
    included), so the next worker waiting for it takes over.
    """

    def __init__(self, name: str, datastore: PostgresDatastore) -> None:
        """The lock of the named application in the datastore's schema."""
        self.name = name
        self.key = lock_key(datastore.schema, name)
        kwargs: dict[str, Any] = dict(datastore.pool.kwargs or {})  # type: ignore[arg-type]
        kwargs.pop("row_factory", None)
        self.connect_kwargs = kwargs
        self.connection: psycopg.Connection[Any] | None = None
        self.checked = 0.0

    def acquire(self, stopping: threading.Event, interval: float = 0.5) -> bool:
        """Waits for the lock; False if asked to stop first."""
        self.connection = psycopg.connect(**self.connect_kwargs, autocommit=True)
        waited = False
        while not self._try():
            if not waited:
                logger.warning(
                    "%s: waiting for the other %s worker to stop", self.name, self.name
                )
                waited = True
            if stopping.wait(interval):
                return False
        if waited:
            logger.info(
                "%s: the other %s worker has stopped; taking over", self.name, self.name
            )
        self.checked = time.monotonic()
        return True

    def _try(self) -> bool:
        assert self.connection is not None
        row = self.connection.execute(
            "SELECT pg_try_advisory_lock(%s)", (self.key,)
        ).fetchone()
        return bool(row and row[0])

    def check(self) -> None:
        """Raises if the lock's connection has died (the lock went with it)."""
        now = time.monotonic()
        if now - self.checked < LOCK_CHECK_INTERVAL:
            return
        assert self.connection is not None
        try:
            self.connection.execute("SELECT 1")
        except psycopg.Error as error:
            msg = f"the connection holding the {self.name} worker's lock ended: {error}"
            raise ConnectionError(msg.strip()) from error
        self.checked = now

    def release(self) -> None:
        """Releases the lock (closing its connection)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def polling_leader(
    leader_class: type[Application[Any]], interval: float
) -> type[Application[Any]]:
    """The leader's class, whose subscriptions also read every interval seconds.

    A lost NOTIFY (eventsourcing issue #305) would otherwise leave the library's
    subscription waiting for the next one, and events unprocessed while all is idle.
    """

    def construct_recorder(self: Application[Any]) -> ApplicationRecorder:
        recorder = leader_class.construct_recorder(self)
        if isinstance(recorder, PostgresApplicationRecorder):
            recorder.subscribe = partial(  # type: ignore[method-assign]
                PollingPostgresSubscription, recorder, poll_interval=interval
            )
        return recorder

    return type(
        leader_class.__name__,
        (leader_class,),
        {"name": leader_class.name, "construct_recorder": construct_recorder},
    )


class Worker:
    """Runs one follower of the system until stop() is called."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        *,
        first_retry_delay: float = 0.5,
        max_retry_delay: float = 10.0,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        """Prepares the named follower ("Sagas", "Accounts" or "Interface")."""
        system = BankAccountSystem()
        if name not in system.follows:
            msg = f"{name} follows nothing; workers run {', '.join(system.follows)}"
            raise ValueError(msg)
        self.name = name
        self.env = dict(env)
        self.follower_class = system.get_app_cls(name)
        self.leader_classes = [system.get_app_cls(n) for n in system.follows[name]]
        self.first_retry_delay = first_retry_delay
        self.max_retry_delay = max_retry_delay
        self.poll_interval = poll_interval
        self.stopping = threading.Event()
        self.started = threading.Event()  # set while following, cleared on failure
        self.app: BatchProcessApplication | None = None
        self.inbox: Inbox | None = None
        self.reconnects = 0
        # Per upstream, the last position of a page that failed: up to there, events
        # are processed one at a time, so a failure names its event.
        self.careful_until: dict[str, int] = {}
        # Per upstream, the position of a failure on record, cleared once passed.
        self.failing: dict[str, int] = {}

    def stop(self) -> None:
        """Asks the worker to stop after the page it is processing (thread-safe).

        A page that keeps meeting version conflicts stops retrying too.
        """
        self.stopping.set()
        app = self.app
        if app is not None:
            app.closing.set()

    def run(self) -> None:
        """Follows the upstream applications until stopped, recovering from failures.

        The delay before the next attempt doubles after each failure. It starts
        again from the first delay after a lost connection or a refused page once
        the worker had been following, or when the error is another one than last
        time: never while the same unexpected error repeats.
        """
        delay = self.first_retry_delay
        attempts = 0
        last_error = ""
        while not self.stopping.is_set():
            try:
                self._follow(reconnecting=attempts > 0)
            except Exception as error:
                is_expected = isinstance(error, EXPECTED_ERRORS)
                signature = f"{type(error).__name__}: {error}"
                if (is_expected and self.started.is_set()) or (signature != last_error):
                    delay = self.first_retry_delay
                last_error = signature
                self.started.clear()
                attempts += 1
                if self.stopping.is_set():
                    break
                logger.error(
                    "%s: %s: %s; reconnecting in %.1f s",
                    self.name,
                    type(error).__name__,
                    str(error).strip() or "no detail",
                    delay,
                    # A lost connection or a refused page is expected now and
                    # then; anything else comes with its traceback.
                    exc_info=None if is_expected else error,
                )
                self.stopping.wait(delay)
                delay = min(delay * 2, self.max_retry_delay)
            else:
                delay = self.first_retry_delay
        logger.info("%s: stopped", self.name)

    def _follow(self, *, reconnecting: bool) -> None:
        app: Any = self.follower_class(env=self.env)
        self.app = app
        inbox = self.inbox = Inbox()
        with ExitStack() as stack:
            stack.callback(app.close)
            lock = InstanceLock(self.name, app.recorder.datastore)
            stack.callback(lock.release)
            if not lock.acquire(self.stopping):
                return
            runners: list[BaseProjectionRunner[Any]] = []
            for leader_class in self.leader_classes:
                runner = BaseProjectionRunner(
                    projection=inbox,  # type: ignore[arg-type]
                    application_class=polling_leader(leader_class, self.poll_interval),
                    tracking_recorder=app.recorder,
                    topics=app.topics,
                    env=self.env,
                )
                runners.append(stack.enter_context(runner))
                # Leaving, the inbox closes before each runner stops (last in, first
                # out), so a runner waiting to put an event in a full inbox returns.
                stack.callback(inbox.closed.set)
            if reconnecting:
                self.reconnects += 1
            self.failing = {f.upstream: f.position for f in self._failures(app)}
            logger.info(
                "%s: %s; following %s",
                self.name,
                "reconnected" if reconnecting else "started",
                self.positions(),
            )
            self.started.set()
            while not self.stopping.is_set():
                if any(runner.is_interrupted.is_set() for runner in runners):
                    break  # a runner failed: leaving the block raises its error
                lock.check()
                jobs = inbox.take(timeout=0.2)
                # A page holds events of one upstream: one tracking record each.
                for upstream, group in groupby(
                    jobs, key=lambda job: job[1].application_name
                ):
                    self._process(app, upstream, list(group))
            inbox.closed.set()  # before the runners stop
            for runner in runners:
                runner.stop()
            if self.stopping.is_set():
                logger.info("%s: stopping at %s", self.name, self.positions())
        if not self.stopping.is_set():
            msg = "a subscription ended"
            raise ConnectionError(msg)

    def _process(self, app: Any, upstream: str, jobs: list[Job]) -> None:
        """Processes a page, one event at a time up to where a page failed before."""
        careful_until = self.careful_until.get(upstream)
        if careful_until is not None and jobs[0][1].notification_id <= careful_until:
            pages = [[job] for job in jobs]
        else:
            self.careful_until.pop(upstream, None)
            pages = [jobs]
        for page in pages:
            try:
                app.process_events(page)
            except EXPECTED_ERRORS:
                raise
            except Exception as error:
                self._failed(app, upstream, page, error)
                raise
            last = page[-1][1].notification_id
            if upstream in self.failing and self.failing[upstream] <= last:
                app.recorder.clear_failures(upstream, last)
                del self.failing[upstream]
                logger.info("%s: got past its failure in %s", self.name, upstream)

    def _failed(
        self, app: Any, upstream: str, jobs: list[Job], error: Exception
    ) -> None:
        """Records and logs (at ERROR) the event, or page, that failed."""
        first, last = jobs[0][1].notification_id, jobs[-1][1].notification_id
        if isinstance(error, UnprocessableEventError):
            position, event = error.position, error.event
            cause = error.__cause__ or error
        elif len(jobs) == 1:
            domain_event = jobs[0][0]
            position = first
            event = f"{type(domain_event).__qualname__} of {domain_event.originator_id}"
            cause = error
        else:
            self.careful_until[upstream] = last
            position = first
            event = f"a page of {len(jobs)} events up to position {last}"
            cause = error
        text = f"{type(cause).__name__}: {str(cause).strip() or 'no detail'}"
        recorder: FollowerRecorder = app.recorder
        try:
            failure = recorder.record_failure(upstream, position, event, text)
        except Exception:  # the record is for `status`; the log line says it all
            logger.exception("%s: could not record its failure", self.name)
            attempts = "?"
        else:
            self.failing[upstream] = position
            attempts = str(failure.attempts)
        logger.error(
            "%s: failed at %s position %d (%s): %s; attempt %s",
            self.name,
            upstream,
            position,
            event,
            text,
            attempts,
        )

    @staticmethod
    def _failures(app: Any) -> list[Any]:
        try:
            return list(app.recorder.select_failures())
        except CONNECTION_ERRORS:
            raise
        except Exception:
            logger.exception("could not read the failures on record")
            return []

    def positions(self) -> str:
        """Where the follower is in each upstream: "Commands at 12, Accounts at 3"."""
        if self.app is None:
            return "nothing yet"
        recorder: Any = self.app.recorder
        parts = []
        for leader_class in self.leader_classes:
            try:
                position = recorder.max_tracking_id(leader_class.name)
            except Exception:
                position = "?"
            parts.append(f"{leader_class.name} at {position or 0}")
        return ", ".join(parts)

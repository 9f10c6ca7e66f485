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

Each worker process keeps a heartbeat row (deploy.heartbeat) for `bankaccounts
status`, logs a progress line every PROGRESS_INTERVAL seconds while it processes
events, and may serve /healthz, /readyz and /metrics on a port of its own. It follows
in a thread of its own, so that stop() (SIGTERM) ends a connect attempt or a wait for
the lock at once; a page in flight is finished and recorded first.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import Counter
from contextlib import ExitStack
from functools import partial
from itertools import groupby
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.projection import BaseProjectionRunner

from bankaccounts import logs
from bankaccounts.deploy.heartbeat import HEARTBEAT_INTERVAL, Heartbeat
from bankaccounts.deploy.status import count_after
from bankaccounts.deploy.subscription import POLL_INTERVAL, PollingPostgresSubscription
from bankaccounts.infrastructure import PAGE_SIZE
from bankaccounts.metrics import RECONNECTS, watch_applications
from bankaccounts.system.batching import UnprocessableEventError
from bankaccounts.system.definition import BankAccountSystem

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from eventsourcing.application import Application
    from eventsourcing.domain import DomainEventProtocol
    from eventsourcing.persistence import ApplicationRecorder, Tracking
    from eventsourcing.postgres import PostgresDatastore

    from bankaccounts.deploy.heartbeat import WorkerState
    from bankaccounts.system.batching import BatchProcessApplication, Job

logger = logging.getLogger("bankaccounts.deploy.worker")

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

#: Seconds between progress lines while the worker processes events.
PROGRESS_INTERVAL = 10.0

#: Seconds a worker asked to stop waits for the page in flight to be recorded, then
#: for its runners to stop; beyond them, the process ends anyway (what was not
#: committed is processed again by the next worker).
STOP_GRACE = 10.0
TEARDOWN_GRACE = 1.0  # a healthy teardown takes about 0.2 s


def connect_kwargs(datastore: PostgresDatastore) -> dict[str, Any]:
    """psycopg.connect's arguments for a connection of the datastore's own."""
    kwargs: dict[str, Any] = dict(datastore.pool.kwargs or {})  # type: ignore[arg-type]
    kwargs.pop("row_factory", None)
    # libpq's own default is no timeout at all: a silent server would hang the
    # attempt. The pool's is the library's POSTGRES_CONNECT_TIMEOUT (30 s unless set);
    # libpq takes whole seconds, 2 at least.
    kwargs.setdefault("connect_timeout", max(2, round(datastore.pool.timeout)))
    return kwargs


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
        self.connect_kwargs = connect_kwargs(datastore)
        self.connection: psycopg.Connection[Any] | None = None
        self.checked = 0.0

    def acquire(
        self,
        stopping: threading.Event,
        interval: float = 0.5,
        on_wait: Callable[[], None] | None = None,
    ) -> bool:
        """Waits for the lock; False if asked to stop first.

        on_wait is called once if another worker holds it.
        """
        self.connection = psycopg.connect(**self.connect_kwargs, autocommit=True)
        waited = False
        while not self._try():
            if not waited:
                logger.warning(
                    "%s: waiting for the other %s worker to stop", self.name, self.name
                )
                waited = True
                if on_wait is not None:
                    on_wait()
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


class Progress:
    """Events processed since the last progress line, for the next one."""

    def __init__(self, interval: float = PROGRESS_INTERVAL) -> None:
        """Counting from now."""
        self.interval = interval
        self.since = time.monotonic()
        self.events: Counter[str] = Counter()  # by upstream
        self.positions: dict[str, int] = {}  # the last processed, by upstream
        self.windows = 0  # intervals ended, with a line or without

    def add(self, upstream: str, jobs: list[Job]) -> None:
        """Counts a page of an upstream's events, processed."""
        self.events[upstream] += len(jobs)
        self.positions[upstream] = jobs[-1][1].notification_id

    def is_due(self) -> bool:
        """True once the interval has passed since the last line."""
        return time.monotonic() - self.since >= self.interval

    def restart(self) -> None:
        """Counts from zero again."""
        self.since = time.monotonic()
        self.events.clear()
        self.windows += 1


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
        health_port: int | None = None,
        health_host: str = "127.0.0.1",
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        progress_interval: float = PROGRESS_INTERVAL,
    ) -> None:
        """Prepares the named follower ("Sagas", "Accounts" or "Interface").

        With a health_port, run() serves /healthz, /readyz and /metrics on it.
        """
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
        self.health_port = health_port
        self.health_host = health_host
        self.heartbeat_interval = heartbeat_interval
        self.progress = Progress(progress_interval)
        self.stopping = threading.Event()
        self.started = threading.Event()  # set while following, cleared on failure
        self.processing = threading.Event()  # set while a page is in flight
        self.app: BatchProcessApplication | None = None
        self.inbox: Inbox | None = None
        self.lock: InstanceLock | None = None
        self.heartbeat: Heartbeat | None = None
        self.health: Any = None  # the HealthServer, while run() serves one
        self.runners: list[BaseProjectionRunner[Any]] = []
        self.reconnects = 0
        # Per upstream, the last position of a page that failed: up to there, events
        # are processed one at a time, so a failure names its event.
        self.careful_until: dict[str, int] = {}

    def stop(self) -> None:
        """Asks the worker to stop after the page it is processing (thread-safe).

        A page that keeps meeting version conflicts stops retrying too.
        """
        self.stopping.set()
        app = self.app
        if app is not None:
            app.closing.set()

    def is_ready(self) -> bool:
        """True while it holds its lock and follows, its lock's connection alive.

        The loop checks the connection every LOCK_CHECK_INTERVAL seconds, and stops
        following when it has died; a loop that stopped checking is not ready either.
        """
        lock = self.lock
        return (
            self.started.is_set()
            and not self.stopping.is_set()
            and lock is not None
            and lock.connection is not None
            and time.monotonic() - lock.checked < 5 * LOCK_CHECK_INTERVAL + 5
        )

    def run(self) -> None:
        """Follows the upstream applications until stopped, recovering from failures.

        The following goes on in a thread of its own; this one waits for stop()
        (from a signal handler, say). Then it waits for the thread only while it
        follows: for the page in flight to be recorded (up to STOP_GRACE seconds)
        and the runners to stop (up to TEARDOWN_GRACE). A connect attempt or a wait
        for the lock is left behind, so a SIGTERM ends the process at once. Raises
        OSError if the health port cannot be bound.
        """
        if self.health_port is not None:
            from bankaccounts.deploy.healthserver import HealthServer

            self.health = HealthServer(
                self.health_host, self.health_port, self.is_ready
            )
            self.health.start()
        thread = threading.Thread(
            target=self._run, name=f"worker {self.name}", daemon=True
        )
        thread.start()
        try:
            # A timeout, so that a signal's handler runs within it on any platform.
            while thread.is_alive() and not self.stopping.wait(0.5):
                pass
            self._wait_for_the_page(thread)
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stop()
            if self.health is not None:
                self.health.stop()
        logger.info("%s: stopped", self.name)

    def _wait_for_the_page(self, thread: threading.Thread) -> None:
        """Lets a following worker finish its page and stop its runners, briefly."""
        page_deadline = time.monotonic() + STOP_GRACE
        deadline = time.monotonic() + TEARDOWN_GRACE
        while thread.is_alive() and self.started.is_set():
            now = time.monotonic()
            if self.processing.is_set():
                deadline = now + TEARDOWN_GRACE
                if now > page_deadline:
                    logger.warning(
                        "%s: the page in flight did not finish within %.0f s; "
                        "stopping anyway",
                        self.name,
                        STOP_GRACE,
                    )
                    return
            elif now > deadline:
                return  # the runners' threads end with the process
            thread.join(0.05)

    def _run(self) -> None:
        """Follows until stopped; after a failure, tries again with backoff.

        The delay before the next attempt doubles after each failure. It starts
        again from the first delay after a lost connection or a refused page once
        the worker had been following, or when the error is another one than last
        time: never while the same unexpected error repeats.
        """
        logs.bind(application=self.name)
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
                self._set_state("starting")
                attempts += 1
                if self.stopping.is_set():
                    break
                logger.error(
                    "%s: %s: %s; reconnecting in %.1f s",
                    self.name,
                    type(error).__name__,
                    logs.one_line(error),
                    delay,
                    # A lost connection or a refused page is expected now and
                    # then; anything else comes with its traceback.
                    exc_info=None if is_expected else error,
                )
                self.stopping.wait(delay)
                delay = min(delay * 2, self.max_retry_delay)
            else:
                delay = self.first_retry_delay

    def _start_heartbeat(self, datastore: PostgresDatastore) -> None:
        """Starts the heartbeat once the first connection's settings are known."""
        if self.heartbeat is None and not self.stopping.is_set():
            self.heartbeat = Heartbeat(
                self.name.lower(),
                connect_kwargs(datastore),
                datastore.schema,
                interval=self.heartbeat_interval,
            )
            self.heartbeat.start()

    def _set_state(self, state: WorkerState) -> None:
        """What the heartbeat's row says, once there is a heartbeat."""
        if self.heartbeat is not None:
            self.heartbeat.state = state

    def _follow(self, *, reconnecting: bool) -> None:
        app: Any = self.follower_class(env=self.env)
        self.app = app
        if self.stopping.is_set():  # stop() came before self.app was set
            app.closing.set()
        inbox = self.inbox = Inbox()
        with ExitStack() as stack:
            stack.callback(app.close)
            self._start_heartbeat(app.recorder.datastore)
            lock = self.lock = InstanceLock(self.name, app.recorder.datastore)
            stack.callback(lock.release)
            if not lock.acquire(
                self.stopping, on_wait=lambda: self._set_state("waiting")
            ):
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
            self.runners = runners
            stack.callback(watch_applications(self._applications))
            if reconnecting:
                self.reconnects += 1
                RECONNECTS.labels(self.name).inc()
            logger.info(
                "%s: %s; following %s",
                self.name,
                "reconnected" if reconnecting else "started",
                self.positions(),
            )
            self.progress.restart()
            self.started.set()
            self._set_state("running")
            while not self.stopping.is_set():
                if any(runner.is_interrupted.is_set() for runner in runners):
                    break  # a runner failed: leaving the block raises its error
                lock.check()
                jobs = inbox.take(timeout=0.2)
                # A page holds events of one upstream: one tracking record each.
                for upstream, group in groupby(
                    jobs, key=lambda job: job[1].application_name
                ):
                    page = list(group)
                    self.processing.set()
                    try:
                        self._process(app, upstream, page)
                    finally:
                        self.processing.clear()
                    self.progress.add(upstream, page)
                if self.progress.is_due():
                    self._log_progress(app)
            if not self.stopping.is_set():
                # Not following any more: not ready, and a SIGTERM during the
                # teardown (which may wait on connect attempts) is not waited for.
                self.started.clear()
                self._set_state("starting")
            inbox.closed.set()  # before the runners stop
            for runner in runners:
                runner.stop()
            if self.stopping.is_set():
                logger.info("%s: stopping at %s", self.name, self.positions())
        if not self.stopping.is_set():
            msg = "a subscription ended"
            raise ConnectionError(msg)

    def _applications(self) -> dict[str, Any]:
        """The follower and its upstreams, by name, for the metrics' gauges."""
        apps: dict[str, Any] = {runner.app.name: runner.app for runner in self.runners}
        if self.app is not None:
            apps[self.name] = self.app
        return apps

    def _log_progress(self, app: Any) -> None:
        """A line on what was processed since the last one, if anything was."""
        progress = self.progress
        events = sum(progress.events.values())
        if events:
            seconds = time.monotonic() - progress.since
            positions: dict[str, int] = {}
            lags: dict[str, int] = {}
            for runner in self.runners:
                upstream = runner.app.name
                position = progress.positions.get(upstream)
                if position is None:
                    position = app.recorder.max_tracking_id(upstream) or 0
                positions[upstream] = position
                lags[upstream] = count_after(runner.app.recorder, position, app.topics)
            logger.info(
                "%s: processed %d events in %.1f s (%.1f/s); %s",
                self.name,
                events,
                seconds,
                events / seconds,
                ", ".join(
                    f"{name} at {positions[name]} (lag {lags[name]})"
                    for name in positions
                ),
                extra={
                    "events": events,
                    "seconds": round(seconds, 1),
                    "events_per_second": round(events / seconds, 1),
                    "positions": positions,
                    "lag": lags,
                },
            )
        progress.restart()

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
            if app.note_progress(upstream, page[-1][1].notification_id):
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
        text = f"{type(cause).__name__}: {logs.one_line(cause)}"
        failure = app.note_failure(upstream, position, event, cause)
        attempts = "?" if failure is None else str(failure.attempts)
        logger.error(
            "%s: failed at %s position %d (%s): %s; attempt %s",
            self.name,
            upstream,
            position,
            event,
            text,
            attempts,
        )

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

"""Runs one process application of the system as a worker of its own.

The worker follows each upstream application through the library's subscriptions
(PostgreSQL LISTEN/NOTIFY), one projection runner per upstream. The runners' threads
hand the events, in order, to an inbox; the worker takes whatever has arrived (up to a
page) and processes it in one transaction with the tracking record of its last event,
so a burst costs one commit per page, not one per event, and a restart resumes exactly
where the last commit left off. When anything fails (a lost LISTEN connection, a killed
pool connection, an unreachable server), the worker closes everything, waits with
backoff, builds it all again and catches up: no restart of the process is needed.
"""

from __future__ import annotations

import logging
import queue
import threading
from contextlib import ExitStack
from itertools import groupby
from typing import TYPE_CHECKING, Any

from eventsourcing.projection import BaseProjectionRunner

from bankaccounts.infrastructure import PAGE_SIZE
from bankaccounts.system.definition import BankAccountSystem

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventsourcing.domain import DomainEventProtocol
    from eventsourcing.persistence import Tracking

    from bankaccounts.system.batching import BatchProcessApplication, Job

logger = logging.getLogger("bankaccounts.worker")

WORKER_NAMES = {"sagas": "Sagas", "accounts": "Accounts", "interface": "Interface"}


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


class Worker:
    """Runs one follower of the system until stop() is called."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        *,
        first_retry_delay: float = 0.5,
        max_retry_delay: float = 10.0,
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
        self.stopping = threading.Event()
        self.started = threading.Event()  # set while following, cleared on failure
        self.app: BatchProcessApplication | None = None
        self.inbox: Inbox | None = None
        self.reconnects = 0

    def stop(self) -> None:
        """Asks the worker to stop after the page it is processing (thread-safe)."""
        self.stopping.set()

    def run(self) -> None:
        """Follows the upstream applications until stopped, recovering from failures."""
        delay = self.first_retry_delay
        attempts = 0
        while not self.stopping.is_set():
            try:
                self._follow(reconnecting=attempts > 0)
            except Exception as error:
                if self.started.is_set():  # it was following: back off from the start
                    delay = self.first_retry_delay
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
            runners: list[BaseProjectionRunner[Any]] = []
            for leader_class in self.leader_classes:
                runner = BaseProjectionRunner(
                    projection=inbox,  # type: ignore[arg-type]
                    application_class=leader_class,
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
                jobs = inbox.take(timeout=0.2)
                # A page holds events of one upstream: one tracking record each.
                for _, page in groupby(jobs, key=lambda job: job[1].application_name):
                    app.process_events(list(page))
            inbox.closed.set()  # before the runners stop
            for runner in runners:
                runner.stop()
            if self.stopping.is_set():
                logger.info("%s: stopping at %s", self.name, self.positions())
        if not self.stopping.is_set():
            msg = "a subscription ended"
            raise ConnectionError(msg)

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

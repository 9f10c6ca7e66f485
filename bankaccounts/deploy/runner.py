"""The embedded bank's runner: a request records its command; followers do the rest.

Under the library's SingleThreadedRunner the thread that records a command carries
out the whole pipe (Commands -> Sagas -> Accounts -> Sagas, and the interface) before
its call returns: about ten commits, each a full fsync, one after another, and a
second request waits for the first one's lock. So the server accepted transfers
faster than it processed them, and each commit carried one event.

`PipelineRunner` is the library's MultiThreadedRunner (one thread per follower,
prompted by its leaders' recordings), made as dependable as the single-threaded
one:

- a follower processes one page of an upstream at a time, in turn with its other
  upstreams, so that a busy Commands log does not hold up the Accounts events that
  finish the sagas already under way; while it commits, the prompts gather, and its
  next page carries every event that arrived meanwhile (one commit for many);
- a follower of upstreams that follow one another takes them together
  (`BatchProcessApplication.processed_together`): the interface's page holds
  Accounts' and Sagas' new events merged in the order they happened, in one
  commit; so a saga's end is never shown before the account's change that
  caused it (a client that waited for its transaction reads the balance that it
  made), and the feed tells a transaction's steps in their order;
- a follower remembers the position it recorded in each upstream
  (`BatchProcessApplication.remember_positions`), so a pull costs no query for it;
- a failure never ends a follower's thread: it is logged (and recorded for
  `status`) by the follower, which resumes from its recorded position at the next
  prompt or catch-up;
- stop() first lets the followers finish the work already recorded (at most
  DRAIN_TIMEOUT: after a clean stop every follower is up to date, as after the
  single-threaded runner), then each thread the page it is in, then the
  applications close.

Durability is unchanged: every page is one transaction with its tracking record,
committed with the store's full sync. Recording a command still commits before the
request is answered.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.system import (
    Follower,
    MultiThreadedRunner,
    MultiThreadedRunnerThread,
    RecordingEvent,
    Runner,
)

from bankaccounts.system.batching import BatchProcessApplication

if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping

    from eventsourcing.system import System

logger = logging.getLogger(__name__)

#: How long stop() waits for a follower to finish the page it is processing.
STOP_TIMEOUT = 30.0
#: How long stop() lets the followers work on what was recorded before it.
DRAIN_TIMEOUT = 10.0
#: How often stop() looks whether the followers have finished.
DRAIN_POLL_INTERVAL = 0.005


class FollowerThread(MultiThreadedRunnerThread[Any]):
    """Runs one follower: a page of each prompted upstream in turn, until stopped."""

    def __init__(self, follower: Follower[Any], has_errored: threading.Event):
        """Follows for the runner; names the thread after the follower."""
        super().__init__(follower=follower, has_errored=has_errored)
        self.name = f"bankaccounts-{follower.name.lower()}"
        #: True while it works on prompts taken; `generation` counts every start
        #: and end of such work (so a look at all threads can tell it was still).
        self.is_busy = False
        self.generation = 0

    def run(self) -> None:
        """Waits for prompts; processes a page per prompted upstream in turn."""
        self.has_started.set()
        while not self.is_stopping.is_set():
            self.is_prompted.wait()
            with self.prompted_names_lock:
                names = self.prompted_names
                self.prompted_names = []
                self.is_busy = True
                self.generation += 1
                self.is_prompted.clear()
            together = getattr(self.follower, "processed_together", ())
            if together:  # one page takes them all
                names = [n for n in names if n not in together] + [
                    n for n in together if n in names
                ][:1]
            try:
                for name in names:
                    if self.is_stopping.is_set():
                        return
                    if self._process_page(name):
                        # A full page: more may wait; the other upstreams go first.
                        self.receive_recording_event(RecordingEvent(name, [], None))
            finally:
                self.is_busy = False
                self.generation += 1

    def _process_page(self, leader_name: str) -> bool:
        """One page of the upstream; True if more may wait. Never raises."""
        follower = self.follower
        try:
            if isinstance(follower, BatchProcessApplication):
                if leader_name in follower.processed_together:
                    return follower.process_together()
                return follower.process_next_page(leader_name)
            follower.pull_and_process(leader_name)
        except Exception:
            # A follower of the library's own kind: it resumes from its recorded
            # position at the next prompt or catch-up.
            logger.exception(
                "%s: following %s failed; it resumes from its position when "
                "prompted again",
                follower.name,
                leader_name,
            )
        return False


class PipelineRunner(MultiThreadedRunner[Any]):
    """A thread per follower pulling pages; the caller's thread only records.

    Built from the library's MultiThreadedRunner: the same applications, leaders
    prompting followers, tracking records; see the module's docstring for what it
    changes.
    """

    def __init__(self, system: System, env: Mapping[str, str] | None = None):
        """Constructs the applications (started by start())."""
        super().__init__(system, dict(env) if env is not None else None)
        for app in self.apps.values():
            if isinstance(app, BatchProcessApplication):
                app.remember_positions()

    def start(self) -> None:
        """Starts a thread per follower, then lets the leaders prompt them."""
        # As MultiThreadedRunner.start, with FollowerThread.
        Runner.start(self)  # raises RunnerAlreadyStartedError the second time
        for follower_name in self.system.followers:
            follower = cast("Follower[Any]", self.apps[follower_name])
            thread = FollowerThread(follower, self.has_errored)
            self.threads[follower.name] = thread
            thread.start()
        for started in self.threads.values():
            started.has_started.wait()
        for leader_name, follower_name in self.system.edges:
            leader: Any = self.apps[leader_name]
            follower = cast("Follower[Any]", self.apps[follower_name])
            follower.follow(leader.name, leader.notification_log)
            leader.lead(self.threads[follower.name])

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Waits until no follower has work left; False if timeout passed first."""
        deadline = time.monotonic() + timeout
        threads = [
            thread
            for thread in self.threads.values()
            if isinstance(thread, FollowerThread) and not thread.is_stopping.is_set()
        ]
        while True:
            generations = [thread.generation for thread in threads]
            still = not any(t.is_busy or t.is_prompted.is_set() for t in threads)
            if still and generations == [thread.generation for thread in threads]:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(DRAIN_POLL_INTERVAL)

    def stop(self) -> None:
        """Lets the followers finish, stops their threads, closes the applications.

        The followers first work on what was recorded (at most DRAIN_TIMEOUT), then
        each thread finishes the page it is in.
        """
        if self.is_started and not self.drain():
            logger.warning(
                "the followers still had work after %.0f s; it is carried out at "
                "the next start",
                DRAIN_TIMEOUT,
            )
        threads = list(self.threads.values())
        for thread in threads:
            thread.stop()
        for thread in threads:
            thread.join(timeout=STOP_TIMEOUT)
            if thread.is_alive():
                logger.warning(
                    "%s still processing after %.0f s; closing without it",
                    thread.name,
                    STOP_TIMEOUT,
                )
        for app in self.apps.values():
            app.close()
        self.apps.clear()

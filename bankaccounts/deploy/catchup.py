"""Every follower catches up with its upstreams on start and at an interval.

The library's runners process an upstream's events when it records new ones: a
recording prompts its followers. Events that were recorded but not processed when
the process died (SIGKILL, a crash) would wait for the next recording, which may
never come. So the embedded bank prompts the runner as a new recording would, for
every upstream, once on start and then every few seconds, in a daemon thread. The
runner keeps its own discipline: the SingleThreadedRunner processes under its
processing lock (a prompt that arrives while another thread processes is taken up
by that thread), and the MultiThreadedRunner's thread of each follower does the
work. The catch-up prompts only the followers that have events waiting, found with
two reads per follower and upstream, so an idle catch-up takes no lock.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.system import (
    Follower,
    MultiThreadedRunner,
    RecordingEvent,
    Runner,
    SingleThreadedRunner,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

#: Seconds between catch-ups, unless BANKACCOUNTS_CATCH_UP_INTERVAL says otherwise.
DEFAULT_INTERVAL = 2.0
#: How long stop() waits for a catch-up that is processing a backlog.
STOP_TIMEOUT = 10.0


def interval_from_environment(environ: Mapping[str, str] | None = None) -> float:
    """The interval from BANKACCOUNTS_CATCH_UP_INTERVAL (seconds, above 0)."""
    environ = os.environ if environ is None else environ
    text = environ.get("BANKACCOUNTS_CATCH_UP_INTERVAL", "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        interval = float(text)
    except ValueError:
        interval = 0.0
    if not interval > 0:
        msg = f"BANKACCOUNTS_CATCH_UP_INTERVAL must be seconds above 0, not {text!r}"
        raise ValueError(msg)
    return interval


class CatchUp:
    """Prompts a runner's followers to catch up, now and every interval seconds."""

    def __init__(self, runner: Runner[Any], interval: float = DEFAULT_INTERVAL):
        """Prompts for runner (a SingleThreadedRunner or a MultiThreadedRunner).

        A runner whose followers catch up by themselves (`catches_up_itself`, the
        RayRunner's actors) is left alone: start() and stop() do nothing.
        """
        self.enabled = not getattr(runner, "catches_up_itself", False)
        if self.enabled and not isinstance(
            runner, SingleThreadedRunner | MultiThreadedRunner
        ):
            msg = f"cannot prompt the followers of a {type(runner).__name__}"
            raise TypeError(msg)
        self.runner = cast(
            "SingleThreadedRunner[Any] | MultiThreadedRunner[Any]", runner
        )
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts the thread, which catches up at once, then at the interval."""
        if not self.enabled:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="bankaccounts-catch-up", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread, after the catch-up it may be in the middle of."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            logger.warning(
                "catch-up still processing after %.0f s; stopping without it",
                STOP_TIMEOUT,
            )

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.catch_up()
            self._stopping.wait(self.interval)

    def catch_up(self) -> None:
        """Prompts the followers of every upstream once; logs what fails."""
        for leader_name in self.runner.system.leaders:
            if self._stopping.is_set():
                return
            try:
                self._prompt(leader_name)
            except Exception:
                if self._stopping.is_set():
                    return  # the applications are being closed
                # The followers log and survive their own failures; this is for
                # anything else, so that the thread goes on catching up.
                logger.exception(
                    "catch-up from %s (followed by %s) failed; trying again in %.1f s",
                    leader_name,
                    ", ".join(self.runner.system.leads[leader_name]),
                    self.interval,
                )

    def _prompt(self, leader_name: str) -> None:
        runner = self.runner
        waiting = [
            name
            for name in runner.system.leads[leader_name]
            if self._has_work(leader_name, name)
        ]
        if not waiting:
            return
        # What the leader's own _notify() gives its followers, without recordings:
        # the runners then pull whatever the follower has not processed.
        prompt: RecordingEvent[Any] = RecordingEvent(leader_name, [], None)
        if isinstance(runner, SingleThreadedRunner):
            runner.receive_recording_event(prompt)
        else:
            for follower_name in waiting:
                runner.threads[follower_name].receive_recording_event(prompt)

    def _has_work(self, leader_name: str, follower_name: str) -> bool:
        """True if the leader has an event for the follower after its position.

        Asked without the runner's processing lock (two reads), so that an idle
        catch-up never takes the processing of a new command from the request
        that recorded it (the SingleThreadedRunner processes in whichever thread
        holds its lock, and a request's answer waits for it).
        """
        follower = self.runner.apps[follower_name]
        leader = self.runner.apps[leader_name]
        assert isinstance(follower, Follower)
        assert isinstance(leader.recorder, ApplicationRecorder)
        position = follower.recorder.max_tracking_id(leader_name)
        return bool(
            leader.recorder.select_notifications(
                position, 1, topics=follower.topics, inclusive_of_start=False
            )
        )

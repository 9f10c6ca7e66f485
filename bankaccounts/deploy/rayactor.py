"""The Ray actor that hosts one application of the system.

Each application lives in an actor of its own. A leader prompts its followers with
fire-and-forget actor calls when it records events; a follower pulls from its
upstreams (from the upstream's actor when the store is in memory, from the database
when it is shared) in one processing thread, which also catches up every few
seconds, so that a restarted actor resumes from its tracking position without
waiting for new traffic. The actor runs several calls at once (threads), so that a
follower reading an upstream's log is answered while the upstream itself reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
import warnings
from collections import deque
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import ray
from eventsourcing.application import LocalNotificationLog
from eventsourcing.system import Follower, Leader, RecordingEventReceiver

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.application import Application
    from eventsourcing.persistence import Notification
    from eventsourcing.system import RecordingEvent, System

    from bankaccounts.readmodel import FeedMessage

logger = logging.getLogger(__name__)

#: The applications hosted by this process, by name (see resolve_attribute).
LOCAL_APPLICATIONS: dict[str, Application[Any]] = {}
#: Log records kept for the driver, at most this many (the oldest go first).
LOG_BUFFER_SIZE = 1000


def resolve(app: Any, path: Sequence[str]) -> Any:
    """The attribute at path (names, outermost first) of app."""
    for name in path:
        app = getattr(app, name)
    return app


def is_plain_data(value: object) -> bool:
    """True for values returned as copies (numbers, text, ids, their collections)."""
    if value is None or isinstance(
        value, bool | int | float | str | bytes | Decimal | UUID | datetime
    ):
        return True
    if isinstance(value, tuple | list | set | frozenset):
        return all(is_plain_data(item) for item in value)
    if isinstance(value, dict):
        return all(is_plain_data(k) and is_plain_data(v) for k, v in value.items())
    return False


class LogBuffer(logging.Handler):
    """Keeps this process's log records for the driver, which logs them again."""

    def __init__(self, actor_name: str) -> None:
        super().__init__(logging.NOTSET)
        self.actor_name = actor_name
        self.records: deque[logging.LogRecord] = deque(maxlen=LOG_BUFFER_SIZE)

    def emit(self, record: logging.LogRecord) -> None:
        """Keeps a picklable copy: the message formatted, the traceback as text."""
        try:
            copy = logging.makeLogRecord(record.__dict__)
            copy.msg = record.getMessage()
            copy.args = None
            if record.exc_info:
                copy.exc_text = logging.Formatter().formatException(record.exc_info)
            copy.exc_info = None
            copy.ray_actor = self.actor_name
            self.records.append(copy)
        except Exception:
            self.handleError(record)

    def drain(self) -> list[logging.LogRecord]:
        """The records kept since the last drain."""
        drained = []
        while self.records:
            try:
                drained.append(self.records.popleft())
            except IndexError:
                break
        return drained


class Prompter(RecordingEventReceiver[Any]):
    """Prompts a follower's actor, by name, without waiting for it."""

    def __init__(self, actor_name: str, namespace: str) -> None:
        self.actor_name = actor_name
        self.namespace = namespace
        self._actor: Any = None

    def receive_recording_event(self, recording_event: RecordingEvent[Any]) -> None:
        """Sends the follower a prompt naming the leader (fire and forget)."""
        try:
            if self._actor is None:
                self._actor = ray.get_actor(self.actor_name, namespace=self.namespace)
            self._actor.prompt.remote(recording_event.application_name)
        except Exception:
            # The follower's catch-up finds the events anyway.
            self._actor = None
            logger.debug("could not prompt %s", self.actor_name, exc_info=True)


class RemoteNotificationLog(LocalNotificationLog):
    """An upstream's notification log, read through calls to the upstream's actor."""

    def __init__(self, actor_name: str, namespace: str) -> None:
        self.actor_name = actor_name
        self.namespace = namespace
        self._actor: Any = None

    def select(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Asks the upstream's actor for a page of its notifications."""
        if self._actor is None:
            self._actor = ray.get_actor(self.actor_name, namespace=self.namespace)
        notifications: Sequence[Notification] = ray.get(
            self._actor.select_notifications.remote(
                start, limit, stop, tuple(topics), inclusive_of_start
            )
        )
        return notifications


class Processor(threading.Thread):
    """Pulls and processes what the prompts name, and every upstream at intervals."""

    def __init__(self, follower: Follower[Any], interval: float) -> None:
        super().__init__(name=f"{follower.name}-processor", daemon=True)
        self.follower = follower
        self.interval = interval
        self.pending: set[str] = set()
        self.lock = threading.Lock()
        self.wakeup = threading.Event()
        self.stopping = threading.Event()

    def prompt(self, leader_name: str) -> None:
        """Notes that the leader has new events; the thread pulls them."""
        with self.lock:
            self.pending.add(leader_name)
        self.wakeup.set()

    def stop(self) -> None:
        """Stops after the page being processed."""
        self.stopping.set()
        self.wakeup.set()
        self.join(10)

    def run(self) -> None:
        """Catches up at once, then follows the prompts, catching up at intervals."""
        prompted = True
        upstreams = list(self.follower.readers)
        with self.lock:
            self.pending.update(upstreams)
        while not self.stopping.is_set():
            # Cleared before the pending names are taken: a prompt that comes
            # while they are processed sets it again, and is not lost.
            self.wakeup.clear()
            with self.lock:
                names = [n for n in upstreams if n in self.pending] if prompted else []
                self.pending.difference_update(names)
            for name in names or upstreams:
                if self.stopping.is_set():
                    return
                try:
                    self.follower.pull_and_process(name)
                except Exception:
                    logger.exception(
                        "%s: following %s failed; trying again",
                        self.follower.name,
                        name,
                    )
            prompted = self.wakeup.wait(self.interval)


class ApplicationActor:
    """Hosts one application of a system; the runner makes it a Ray actor."""

    def __init__(
        self,
        system: System,
        name: str,
        env: dict[str, str],
        actor_names: dict[str, str],
        namespace: str,
        interval: float,
        log_level: int = logging.WARNING,
    ) -> None:
        self.log_buffer = LogBuffer(name)
        root = logging.getLogger()
        root.addHandler(self.log_buffer)
        root.setLevel(log_level)
        self.system = system
        self.name = name
        self.env = env
        self.actor_names = actor_names
        self.namespace = namespace
        self.interval = interval
        self.readers: list[Application[Any]] = []
        self.processor: Processor | None = None
        self.feed_changed = threading.Condition()
        if name in system.follows:
            cls: type[Application[Any]] = system.follower_cls(name)
        elif name in system.leads:
            cls = system.leader_cls(name)
        else:
            cls = system.get_app_cls(name)
        self.app = cls(env=env)
        LOCAL_APPLICATIONS[name] = self.app
        if isinstance(self.app, Leader):
            for follower_name in system.leads.get(name, []):
                self.app.lead(Prompter(actor_names[follower_name], namespace))
        add_listener = getattr(self.app, "add_feed_listener", None)
        if add_listener is not None:
            add_listener(self._feed_changed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own use
            restarted = ray.get_runtime_context().was_current_actor_reconstructed
        if restarted:
            # Restarted by Ray after it died: the others are running already.
            logger.warning("%s: restarted; resuming from its positions", name)
            self.start_following()

    def ready(self) -> int:
        """The actor's process id, once the application is constructed."""
        return os.getpid()

    def start_following(self) -> None:
        """Follows the upstreams (once they are all constructed) and processes."""
        if self.processor is not None or not isinstance(self.app, Follower):
            return
        for leader_name in self.system.follows[self.name]:
            self.app.follow(leader_name, self._notification_log(leader_name))
        self.processor = Processor(self.app, self.interval)
        self.processor.start()

    def _notification_log(self, leader_name: str) -> LocalNotificationLog:
        """Reads the leader's actor if the store is in memory, else the database."""
        from eventsourcing.popo import POPOFactory

        if isinstance(self.app.factory, POPOFactory):
            return RemoteNotificationLog(self.actor_names[leader_name], self.namespace)
        # A reading copy of the leader, in this process, on the shared database.
        env = {**self.env, "CREATE_TABLE": "n", "POSTGRES_POOL_SIZE": "1"}
        reader = self.system.leader_cls(leader_name)(env=env)
        self.readers.append(reader)
        return reader.notification_log

    def prompt(self, leader_name: str) -> None:
        """The leader has recorded new events (ignored until following)."""
        if self.processor is not None:
            self.processor.prompt(leader_name)

    def call(
        self, path: Sequence[str], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bool, Any, list[logging.LogRecord]]:
        """Calls the application's method at path: (raised?, result, log records)."""
        try:
            result = resolve(self.app, path)(*args, **kwargs)
        except Exception as error:
            return True, picklable_error(error), self.log_buffer.drain()
        try:
            pickle.dumps(result)
        except Exception as error:
            name = ".".join((self.name, *path))
            problem = TypeError(
                f"{name}() returned what cannot leave its actor: {error}"
            )
            return True, problem, self.log_buffer.drain()
        return False, result, self.log_buffer.drain()

    def inspect(self, path: Sequence[str]) -> tuple[bool, Any]:
        """(True, value) for plain data at path, else (False, None): ask through it."""
        value = resolve(self.app, path)
        if not callable(value) and is_plain_data(value):
            return True, value
        return False, None

    def set_attribute(self, path: Sequence[str], value: Any) -> None:
        """Sets the attribute at path (a test's injected fault, say)."""
        setattr(resolve(self.app, path[:-1]), path[-1], value)

    def delete_attribute(self, path: Sequence[str]) -> AttributeError | None:
        """Deletes the attribute at path; the AttributeError if it has none there."""
        try:
            delattr(resolve(self.app, path[:-1]), path[-1])
        except AttributeError as error:
            return AttributeError(str(error))
        return None

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None,
        topics: tuple[str, ...],
        inclusive_of_start: bool,
    ) -> Sequence[Notification]:
        """A page of the application's notifications, for a follower."""
        return self.app.notification_log.select(
            start, limit, stop, topics, inclusive_of_start=inclusive_of_start
        )

    def _feed_changed(self, messages: Sequence[FeedMessage]) -> None:
        with self.feed_changed:
            self.feed_changed.notify_all()

    def wait_for_feed(self, after: int, timeout: float) -> list[FeedMessage]:
        """The feed's messages after position, waiting up to timeout for one."""
        view: Any = self.app.recorder
        with self.feed_changed:
            messages: list[FeedMessage] = view.select_feed(after)
            if not messages:
                self.feed_changed.wait(timeout)
        return messages or view.select_feed(after)

    def drain_logs(self) -> list[logging.LogRecord]:
        """The log records kept since the last call."""
        return self.log_buffer.drain()

    def stop(self) -> list[logging.LogRecord]:
        """Stops processing and closes the connections; returns the last records."""
        if self.processor is not None:
            self.processor.stop()
        for app in [*self.readers, self.app]:
            with contextlib.suppress(Exception):
                app.close()
        LOCAL_APPLICATIONS.pop(self.name, None)
        return self.log_buffer.drain()


def picklable_error(error: Exception) -> Exception:
    """The error itself if it survives pickling, else a RuntimeError saying what."""
    try:
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    if not isinstance(copy, Exception):
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error

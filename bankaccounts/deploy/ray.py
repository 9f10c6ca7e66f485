"""Runs the system on Ray: each process application in an actor of its own.

`RayRunner(BankAccountSystem(), env=...)` is used like the library's runners:
start(), get(cls), stop(). get(cls) gives a proxy whose method calls run in the
application's actor and return its results; what they raise is raised here with its
own type and attributes. Ray restarts an actor that dies (`max_restarts`); a
restarted follower resumes from its tracking records, which a durable store keeps
(PostgreSQL, MySQL): nothing is lost or processed twice. With POPO everything an
actor held is lost with it; POPO is for tests.

Ray starts locally (or joins the cluster in RAY_ADDRESS) unless it is initialised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import uuid
from typing import TYPE_CHECKING, Any, cast

import ray
from eventsourcing.system import Runner

from bankaccounts.deploy.catchup import interval_from_environment
from bankaccounts.deploy.rayactor import LOCAL_APPLICATIONS, ApplicationActor, resolve

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from eventsourcing.system import System

    from bankaccounts.readmodel import FeedMessage

logger = logging.getLogger(__name__)

#: How often Ray restarts an actor that dies (-1: without limit).
MAX_RESTARTS = -1
#: Calls an actor runs at once: a follower's reads of its upstream, the client's
#: requests, prompts and the feed's long poll go on side by side.
MAX_CONCURRENCY = 16
#: Seconds between the driver's collections of the actors' log records.
LOG_INTERVAL = 0.5
#: Signals whose handlers Ray's start replaces (see python_signal_handlers).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Seconds a feed request waits in the read model's actor for a new message.
FEED_POLL = 5.0


class RayRunner(Runner[Any]):
    """Runs each application of a system in a Ray actor of its own."""

    #: Each follower's actor catches up by itself (deploy.catchup leaves it).
    catches_up_itself = True

    def __init__(self, system: System, env: dict[str, str] | None = None) -> None:
        """Prepares the runner; start() creates the actors."""
        super().__init__(system, env)
        # The applications see the settings they would see in this process.
        self.app_env = {**os.environ, **(env or {})}
        check_store(self.app_env)
        self.interval = interval_from_environment(self.app_env)
        self.namespace = "bankaccounts"
        runner_id = uuid.uuid4().hex[:8]
        self.actor_names = {
            name: f"bankaccounts-{runner_id}-{name}" for name in system.nodes
        }
        self.actors: dict[str, Any] = {}
        self.apps: dict[str, Any] = {}
        self._started_ray = False
        self._logs = LogRelay(self)
        self._feed: FeedRelay | None = None

    def start(self) -> None:
        """Creates the actors one by one (tables are made in turn), then follows."""
        super().start()
        if not ray.is_initialized():
            # RAY_ADDRESS, if set, names the cluster to join.
            with python_signal_handlers():
                ray.init(include_dashboard=False, namespace=self.namespace)
            self._started_ray = True
        remote: Any = ray.remote  # its overloads do not follow a class
        actor_class = remote(ApplicationActor)
        try:
            for name in self.system.nodes:
                actor = actor_class.options(
                    name=self.actor_names[name],
                    namespace=self.namespace,
                    max_restarts=MAX_RESTARTS,
                    max_concurrency=MAX_CONCURRENCY,
                    num_cpus=0,
                ).remote(
                    self.system,
                    name,
                    self.app_env,
                    self.actor_names,
                    self.namespace,
                    self.interval,
                    # The actors log what this process would log.
                    logging.getLogger().getEffectiveLevel(),
                )
                ray.get(actor.ready.remote())
                self.actors[name] = actor
                self.apps[name] = ApplicationProxy(self, name)
            ray.get([actor.start_following.remote() for actor in self.actors.values()])
        except BaseException:
            self.stop()
            raise
        self._logs.start()

    def stop(self) -> None:
        """Stops the actors' processing, closes their connections, ends them."""
        if self._feed is not None:
            self._feed.stop()
            self._feed = None
        self._logs.stop()
        for name, actor in reversed(list(self.actors.items())):
            try:
                self._logs.relay(name, ray.get(actor.stop.remote(), timeout=30))
            except Exception:
                logger.warning("%s: did not stop cleanly", name, exc_info=True)
            ray.kill(actor, no_restart=True)
        self.actors.clear()
        self.apps.clear()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def get(self, cls: type[Any]) -> Any:
        """A proxy of the application: its calls run in the application's actor."""
        return self.apps[cls.name]

    def actor(self, name: str) -> Any:
        """The Ray actor handle of the named application."""
        return self.actors[name]

    def request(self, name: str, path: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        """Calls the method at path in the named application; raises what it raised."""
        raised, result, records = ray.get(
            self.actors[name].call.remote(tuple(path), args, kwargs)
        )
        self._logs.relay(name, records)
        if raised:
            raise result
        return result

    def add_feed_listener(
        self, listener: Callable[[Sequence[FeedMessage]], None]
    ) -> Callable[[], None]:
        """Calls listener with each batch of new feed messages; returns a remover."""
        if self._feed is None:
            from bankaccounts.system.interface import InterfaceApplication

            self._feed = FeedRelay(self.actors[InterfaceApplication.name])
            self._feed.start()
        return self._feed.add(listener)


@contextlib.contextmanager
def python_signal_handlers() -> Iterator[None]:
    """Puts back this process's SIGTERM and SIGINT handlers after Ray's start.

    Ray's core worker installs handlers that abort the process on SIGTERM; a
    server stops cleanly on SIGTERM (uvicorn's handler) instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in handlers.items():
            if handler is not None:
                signal.signal(number, handler)


def check_store(env: Mapping[str, str]) -> None:
    """Refuses a store that not every actor can reach: SQLite files, or none."""
    module = env.get("PERSISTENCE_MODULE", "")
    if module.endswith("sqlite") or any(k.endswith("SQLITE_DBNAME") for k in env):
        msg = (
            "the ray runner needs a store every actor can reach: set "
            "PERSISTENCE_MODULE=eventsourcing.postgres (and POSTGRES_*), "
            "eventsourcing_sqlalchemy (and SQLALCHEMY_URL), or eventsourcing.popo "
            "(in memory, lost with an actor); SQLite files belong to one process"
        )
        raise ValueError(msg)


class ApplicationProxy:
    """An application, or one of its parts, in an actor: calls and reads go there.

    Reading an attribute asks the actor: plain data (numbers, text, ids and their
    collections) comes back as a copy, anything else (a method, the recorder, the
    view) as another proxy. Setting an attribute sets it there. A proxy pickled into
    a call to its own actor arrives as the thing itself.
    """

    def __init__(
        self, runner: RayRunner, name: str, path: tuple[str, ...] = ()
    ) -> None:
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_parts", {})

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        parts: dict[str, ApplicationProxy] = self._parts
        if attribute in parts:
            return parts[attribute]
        if attribute == "add_feed_listener" and not self._path:
            # The listener lives here: the runner relays the feed to it.
            return self._runner.add_feed_listener
        path = (*self._path, attribute)
        actor = self._runner.actor(self._name)
        is_data, value = ray.get(actor.inspect.remote(path))
        if is_data:
            return value
        # Methods and parts do not change: asked once.
        part = parts[attribute] = ApplicationProxy(self._runner, self._name, path)
        return part

    def __setattr__(self, attribute: str, value: Any) -> None:
        actor = self._runner.actor(self._name)
        ray.get(actor.set_attribute.remote((*self._path, attribute), value))
        self._parts.pop(attribute, None)

    def __delattr__(self, attribute: str) -> None:
        actor = self._runner.actor(self._name)
        error = ray.get(actor.delete_attribute.remote((*self._path, attribute)))
        self._parts.pop(attribute, None)
        if error is not None:
            raise error

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the method in the actor; returns its result or raises its error."""
        return self._runner.request(self._name, self._path, *args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_local_or_none, (self._name, self._path))

    def __repr__(self) -> str:
        where = ".".join((self._name, *self._path))
        return f"<{where} in a Ray actor>"


def _local_or_none(name: str, path: tuple[str, ...]) -> Any:
    """The named application's attribute, in the process that hosts it."""
    app = LOCAL_APPLICATIONS.get(name)
    if app is None:
        msg = f"{name}.{'.'.join(path)} lives in another process"
        raise RuntimeError(msg)
    return resolve(app, path)


class LogRelay:
    """Logs here, at intervals, what the actors logged (each reply brings its own)."""

    def __init__(self, runner: RayRunner) -> None:
        self.runner = runner
        self.locks: dict[str, threading.Lock] = {
            name: threading.Lock() for name in runner.system.nodes
        }
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts collecting."""
        self.stopping.clear()
        self.thread = threading.Thread(
            target=self._run, name="ray-log-relay", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        """Stops collecting (a last round first)."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(10)
            self.thread = None

    def _run(self) -> None:
        while not self.stopping.wait(LOG_INTERVAL):
            self.collect()
        self.collect()

    def collect(self) -> None:
        """Logs what every actor has logged since."""
        for name, actor in list(self.runner.actors.items()):
            # Held across the call, so that a reply's records come after these.
            with self.locks[name]:
                try:
                    records = ray.get(actor.drain_logs.remote(), timeout=2)
                except Exception:  # restarting: its records come next time
                    logger.debug("no log records from an actor", exc_info=True)
                    continue
                self._emit(records)

    def relay(self, name: str, records: Sequence[logging.LogRecord]) -> None:
        """Logs records the named application's actor sent with a reply."""
        with self.locks[name]:
            self._emit(records)

    @staticmethod
    def _emit(records: Sequence[logging.LogRecord]) -> None:
        for record in records:
            target = logging.getLogger(record.name)
            if target.isEnabledFor(record.levelno):
                target.handle(record)


class FeedRelay:
    """Follows the read model's feed in its actor, for listeners in this process."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.listeners: list[Callable[[Sequence[FeedMessage]], None]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ray-feed", daemon=True)

    def start(self) -> None:
        """Starts following from the feed's current end."""
        self.position = cast(
            "int",
            ray.get(self.actor.call.remote(("view", "max_feed_position"), (), {}))[1],
        )
        self.thread.start()

    def stop(self) -> None:
        """Stops following (after the long poll in flight)."""
        self.stopping.set()
        self.thread.join(FEED_POLL + 5)

    def add(
        self, listener: Callable[[Sequence[FeedMessage]], None]
    ) -> Callable[[], None]:
        """Adds a listener; returns its remover."""
        with self.lock:
            self.listeners.append(listener)

        def remove() -> None:
            with self.lock:
                if listener in self.listeners:
                    self.listeners.remove(listener)

        return remove

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                messages = ray.get(
                    self.actor.wait_for_feed.remote(self.position, FEED_POLL)
                )
            except Exception:
                if self.stopping.wait(1.0):
                    return
                logger.warning("feed: the read model's actor did not answer; again")
                continue
            if not messages:
                continue
            self.position = messages[-1].position
            with self.lock:
                listeners = list(self.listeners)
            for listener in listeners:
                try:
                    listener(messages)
                except Exception:
                    logger.exception("feed listener failed")

"""Readiness: whether the process's database answers a cheap question in time.

A load balancer's probe should fail fast rather than wait for the pool's connect
timeout (30 s by default) or the read model's retries, so the question runs in a
thread of its own and the check gives up at a deadline. While a question is still
out (a network that drops packets), later checks wait on that same one rather than
pile up threads behind it. The question is the read model's last feed position: an
index lookup, through the application's own pool.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import TYPE_CHECKING

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

if TYPE_CHECKING:
    from collections.abc import Callable

    from bankaccounts.readmodel import ReadModelRecorder

logger = logging.getLogger("bankaccounts.deploy.readiness")

#: Seconds a readiness check waits for the database (probes time out after 1-5 s).
READY_TIMEOUT = 2.0


class DatabaseCheck:
    """Asks the read model's database for its last feed position, within a deadline."""

    def __init__(
        self, view: Callable[[], ReadModelRecorder], timeout: float = READY_TIMEOUT
    ) -> None:
        """view() gives the read model recorder (the bank's, once started)."""
        self.view = view
        self.timeout = timeout
        self.lock = threading.Lock()
        self.pending: Future[int] | None = None
        self.failing = False

    def __call__(self) -> str | None:
        """None if the database answered in time, else why not (in a few words)."""
        with self.lock:
            future = self.pending
            if future is None or future.done():
                future = self.pending = Future()
                threading.Thread(
                    target=self._ask, args=(future,), name="readiness", daemon=True
                ).start()
        try:
            future.result(self.timeout)
        except FutureTimeoutError:
            return self._failed(f"no answer within {self.timeout:g} s", None)
        except Exception as error:
            return self._failed(type(error).__name__, error)
        if self.failing:
            self.failing = False
            logger.info("readiness: the database answers again")
        return None

    def _failed(self, reason: str, error: Exception | None) -> str:
        if not self.failing:
            self.failing = True
            detail = f"{type(error).__name__}: {error}".strip() if error else reason
            logger.warning("readiness: the database does not answer: %s", detail)
        return reason

    def _ask(self, future: Future[int]) -> None:
        try:
            future.set_result(last_feed_position(self.view(), self.timeout))
        except BaseException as error:
            future.set_exception(error)


def last_feed_position(view: ReadModelRecorder, timeout: float) -> int:
    """The feed's last position, waiting at most timeout for a pool's connection.

    In PostgreSQL asked directly of the pool (again once if a dropped connection
    fails): the recorder's own read would retry ten times, for the pool's full
    timeout each.
    """
    datastore = getattr(view, "datastore", None)
    if not isinstance(datastore, PostgresDatastore):
        return view.max_feed_position()
    feed_table: str = getattr(view, "feed_table")  # noqa: B009 (PostgreSQL's only)
    statement = SQL("SELECT MAX(position) AS position FROM {0}.{1}").format(
        Identifier(datastore.schema), Identifier(feed_table)
    )
    datastore.pool.open(wait=False)
    for attempt in (1, 2):
        try:
            with datastore.pool.connection(timeout=timeout) as conn:
                row = conn.execute(statement).fetchone()
            return int((row or {}).get("position") or 0)
        except psycopg.OperationalError:
            # A connection the server (or the network) dropped while it was idle
            # in the pool fails once, and the pool replaces it.
            if attempt == 2:
                raise
    raise AssertionError  # pragma: no cover (the loop returns or raises)

"""Subscriptions that follow PostgreSQL: a web process's feed, a worker's upstreams."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresSubscription,
)
from psycopg.sql import SQL, Identifier

from bankaccounts.metrics import RECONNECTS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from bankaccounts.readmodel import (
        FeedMessage,
    )
    from bankaccounts.readmodel.postgres import PostgresReadModelRecorder


logger = logging.getLogger("bankaccounts.feed")


#: Seconds between reads of a subscription when no NOTIFY came: a NOTIFY can be lost
#: (eventsourcing issue #305), and the events would wait for the next one.
POLL_INTERVAL = 2.0


class PostgresFeedSubscription:
    """Follows the feed from a position, for a web process with no interface of its own.

    LISTENs on the channel that the interface NOTIFYs when it commits feed messages,
    then reads the new rows by position, so nothing is missed between the two. A lost
    connection is logged and made again with backoff, and reading resumes from the
    last position delivered.
    """

    def __init__(
        self,
        view: PostgresReadModelRecorder,
        after: int,
        deliver: Callable[[Sequence[FeedMessage]], None],
        *,
        poll_interval: float = POLL_INTERVAL,
        max_retry_delay: float = 5.0,
    ) -> None:
        """Delivers messages with positions greater than after, in order."""
        self.view = view
        self.position = after
        self.deliver = deliver
        self.poll_interval = poll_interval
        self.max_retry_delay = max_retry_delay
        self.stopping = threading.Event()
        self.listening = threading.Event()
        self.reconnects = 0
        self.thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def start(self) -> None:
        """Starts following in a thread of its own."""
        self.thread.start()

    def stop(self) -> None:
        """Stops following and waits for the thread."""
        self.stopping.set()
        self.thread.join(timeout=5)

    @property
    def is_following(self) -> bool:
        """True while it listens for new messages (false while reconnecting)."""
        return self.listening.is_set() and self.thread.is_alive()

    def _run(self) -> None:
        delay = 0.1
        while not self.stopping.is_set():
            try:
                self._listen()
                delay = 0.1
            except Exception as error:
                self.listening.clear()
                if self.stopping.is_set():
                    break
                logger.error(
                    "feed: %s: %s; reconnecting in %.1f s at position %d",
                    type(error).__name__,
                    str(error).strip() or "no detail",
                    delay,
                    self.position,
                )
                self.stopping.wait(delay)
                delay = min(delay * 2, self.max_retry_delay)
                self.reconnects += 1
                RECONNECTS.labels("feed").inc()

    def _listen(self) -> None:
        with self.view.datastore.get_connection() as conn:
            conn.execute(SQL("LISTEN {0}").format(Identifier(self.view.feed_channel)))
            self._catch_up()
            self.listening.set()
            last_read = time.monotonic()
            while not self.stopping.is_set():
                notified = False
                for _ in conn.notifies(timeout=0.2, stop_after=1):
                    notified = True
                if notified or time.monotonic() - last_read > self.poll_interval:
                    self._catch_up()
                    last_read = time.monotonic()

    def _catch_up(self) -> None:
        while True:
            messages = self.view.select_feed(self.position, limit=500)
            if not messages:
                return
            self.position = messages[-1].position
            try:
                self.deliver(messages)
            except Exception:
                logger.exception("feed listener failed")


class PollingPostgresSubscription(PostgresSubscription):
    """The library's LISTEN/NOTIFY subscription, which also reads every few seconds.

    The library's subscription reads when a NOTIFY arrives; if one is lost
    (eventsourcing issue #305), it waits for the next, and events recorded meanwhile
    stay unprocessed while the system is idle. This one also wakes its reader every
    poll_interval seconds: a query that finds nothing when nothing was missed.
    """

    def __init__(
        self,
        recorder: PostgresApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
        *,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        """Subscribes after gt; reads on each NOTIFY and every poll_interval seconds."""
        # Before the library's threads start: one may stop the subscription at once.
        self._polling_stopped = threading.Event()
        self._poll_interval = poll_interval
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._poll_thread = threading.Thread(
            target=self._poll, name="subscription-poll", daemon=True
        )
        self._poll_thread.start()

    def stop(self) -> None:
        """Stops the subscription and its polling."""
        super().stop()
        self._polling_stopped.set()

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        """Stops, and waits for the threads."""
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._poll_thread.join()

    def _poll(self) -> None:
        while not self._polling_stopped.wait(self._poll_interval):
            self._has_been_notified.set()  # as a NOTIFY would

"""The feed hub: fans the interface's feed out to websocket clients and waiters.

Messages arrive on the runner's threads and are handed to the event loop with
call_soon_threadsafe, in commit order. Each client has a bounded queue; a client that
overruns it is told to reconnect and resumes from its last position, so a slow
client never holds up the runner or the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from bankaccounts.system.readmodel import FeedMessage, ReadModelRecorder

logger = logging.getLogger(__name__)

RECONNECT_CLOSE_CODE = 1013  # "Try Again Later": reconnect with ?after=<position>
FINISHED = ("transaction_succeeded", "transaction_failed")


class FeedClient:
    """One websocket connection's outgoing queue."""

    def __init__(self, queue_size: int) -> None:
        """Starts with an empty bounded queue."""
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self.overrun = asyncio.Event()

    def offer(self, message: dict[str, Any]) -> None:
        """Queues a message, or marks the client overrun if its queue is full."""
        if self.overrun.is_set():
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overrun.set()


class FeedHub:
    """Delivers every feed message to every connected client."""

    def __init__(self, view: ReadModelRecorder, queue_size: int = 1000) -> None:
        """Serves the feed of this read model."""
        self.view = view
        self.queue_size = queue_size
        self.clients: set[FeedClient] = set()
        self.waiters: dict[UUID, list[asyncio.Future[dict[str, Any]]]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Delivers on this event loop from now on."""
        self.loop = loop

    def receive(self, messages: Sequence[FeedMessage]) -> None:
        """Takes new messages on any thread and hands them to the event loop."""
        if self.loop is None or self.loop.is_closed():
            return
        payload = [message.to_json() for message in messages]
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(self._publish, payload)

    def _publish(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            for client in self.clients:
                client.offer(message)
            if message["type"] in FINISHED:
                self._resolve(message["transaction"])

    def _resolve(self, transaction: dict[str, Any]) -> None:
        from uuid import UUID

        for future in self.waiters.pop(UUID(transaction["id"]), []):
            if not future.done():
                future.set_result(transaction)

    def connect(self) -> FeedClient:
        """Registers a client; its queue takes every message published from now on."""
        client = FeedClient(self.queue_size)
        self.clients.add(client)
        return client

    def disconnect(self, client: FeedClient) -> None:
        """Forgets a client."""
        self.clients.discard(client)

    async def wait_for_transaction(
        self,
        transaction_id: UUID,
        timeout: float,
        current: Callable[[], dict[str, Any] | None],
    ) -> dict[str, Any] | None:
        """Waits until the transaction has finished; returns it, or None on timeout.

        The waiter is registered before the current state is read, so a transaction
        that finishes in between is not missed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.waiters.setdefault(transaction_id, []).append(future)
        try:
            transaction = await asyncio.to_thread(current)
            if transaction is not None and transaction["status"] != "pending":
                return transaction
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            futures = self.waiters.get(transaction_id, [])
            if future in futures:
                futures.remove(future)
                if not futures:
                    del self.waiters[transaction_id]

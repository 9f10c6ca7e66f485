"""The feed hub: fans the interface's feed out to websocket clients and waiters.

Messages arrive on the runner's threads, are encoded to JSON there, once each for
every client, and are handed to the event loop with call_soon_threadsafe, in commit
order. Each client gets only what its user may see: staff every message, a customer
those whose audience holds them (their accounts, the transactions that touch them).
Each client has a bounded queue of encoded messages; a client that overruns it is
told to reconnect and resumes from its last position, so a slow client never holds
up the runner or the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from bankaccounts.metrics import (
    TRANSACTIONS_FINISHED,
    WEBSOCKET_CLIENTS,
    WEBSOCKET_OVERRUNS,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from bankaccounts.readmodel import FeedMessage, ReadModelRecorder
    from bankaccounts.users import Actor

logger = logging.getLogger(__name__)

RECONNECT_CLOSE_CODE = 1013  # "Try Again Later": reconnect with ?after=<position>
#: The messages that finish a transaction, and its outcome in the metrics' label.
OUTCOMES = {"transaction_succeeded": "succeeded", "transaction_failed": "failed"}


def encode(message: dict[str, Any]) -> str:
    """A message as one websocket text frame (as Starlette's send_json writes it)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class Outgoing(NamedTuple):
    """An encoded message waiting in a client's queue.

    position is the feed position (None for a reply to the client's own request), so
    the sender can skip what it already sent from the backlog.
    """

    position: int | None
    text: str


class FeedClient:
    """One websocket connection's bounded queue of encoded messages, for one user.

    viewer_id is None for staff, who see every message, or the customer's id, who
    sees the messages whose audience holds it. The task that sends the queue
    registers itself as `sender`; when the queue overflows, the client is marked
    overrun and the sender is cancelled, whether it waits for a message or is stuck
    in a send, so that it closes the connection with RECONNECT_CLOSE_CODE.
    """

    def __init__(self, queue_size: int, actor: Actor) -> None:
        """Starts with an empty bounded queue and no sender."""
        self.actor = actor
        self.viewer_id: UUID | None = None if actor.is_staff else actor.id
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=queue_size)
        self.overrun = asyncio.Event()
        self.sender: asyncio.Task[Any] | None = None

    def sees(self, audience: tuple[UUID, ...]) -> bool:
        """True if this client's user may see a message with this audience."""
        return self.viewer_id is None or self.viewer_id in audience

    def offer(self, message: dict[str, Any]) -> None:
        """Queues a message (a reply to this client), encoding it."""
        self.offer_encoded(Outgoing(message.get("position"), encode(message)))

    def offer_encoded(self, outgoing: Outgoing) -> None:
        """Queues an encoded message, or marks the client overrun if its queue is full.

        Once overrun, the client takes nothing more: it is closed and resumes with a
        new connection from its last position.
        """
        if self.overrun.is_set():
            return
        try:
            self.queue.put_nowait(outgoing)
        except asyncio.QueueFull:
            self.overrun.set()
            WEBSOCKET_OVERRUNS.inc()
            if self.sender is not None:
                self.sender.cancel()


class FeedHub:
    """Delivers each feed message to every connected client that may see it."""

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
        """Takes new messages on any thread and hands them to the event loop.

        Each message is encoded here, once, off the event loop; the loop only puts
        the same text in every client's queue.
        """
        if self.loop is None or self.loop.is_closed():
            return
        outgoing: list[tuple[Outgoing, tuple[UUID, ...]]] = []
        finished: list[dict[str, Any]] = []
        for message in messages:
            text = encode(message.to_json())
            outgoing.append((Outgoing(message.position, text), message.audience))
            outcome = OUTCOMES.get(message.type)
            if outcome is not None:
                finished.append(message.data["transaction"])
                # Every feed message reaches each process's hub once.
                TRANSACTIONS_FINISHED.labels(outcome).inc()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(self._publish, outgoing, finished)

    def _publish(
        self,
        outgoing: list[tuple[Outgoing, tuple[UUID, ...]]],
        finished: list[dict[str, Any]],
    ) -> None:
        """On the event loop: queues each message for its clients, wakes waiters."""
        for message, audience in outgoing:
            for client in self.clients:
                if client.sees(audience):
                    client.offer_encoded(message)
        for transaction in finished:
            self._resolve(transaction)

    def _resolve(self, transaction: dict[str, Any]) -> None:
        from uuid import UUID

        for future in self.waiters.pop(UUID(transaction["id"]), []):
            if not future.done():
                future.set_result(transaction)

    def connect(self, actor: Actor) -> FeedClient:
        """Registers a user's client; its queue takes what they may see from now on."""
        client = FeedClient(self.queue_size, actor)
        self.clients.add(client)
        WEBSOCKET_CLIENTS.inc()
        return client

    def disconnect(self, client: FeedClient) -> None:
        """Forgets a client."""
        if client in self.clients:
            self.clients.discard(client)
            WEBSOCKET_CLIENTS.dec()

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

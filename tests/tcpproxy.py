"""A small TCP proxy that cuts its connections on demand, for fault injection.

The processes of a test cluster reach PostgreSQL through it. cut() closes live
connections at once, in both directions, whatever is in flight: a statement half
sent, or a COMMIT that reached the server whose answer now reaches nobody.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

BUFFER_SIZE = 65536


class Pair:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.closed = threading.Event()

    def close(self) -> None:
        """Closes both sides; the pumps' blocked reads return."""
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TCPProxy:
    """Listens on a free local port and forwards each connection to host:port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.pairs: set[Pair] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.accepted = 0
        self.cuts = 0  # connections cut
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def cut(self, rng: random.Random, share: float = 1.0) -> int:
        """Cuts a random share of the live connections; returns how many."""
        with self.lock:
            pairs = [pair for pair in self.pairs if rng.random() < share]
        for pair in pairs:
            pair.close()
        self.cuts += len(pairs)
        return len(pairs)

    def close(self) -> None:
        """Stops accepting and cuts every connection."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            pair.close()
        self.thread.join(5)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            pair = Pair(client, server)
            with self.lock:
                self.pairs.add(pair)
                self.accepted += 1
            for source, sink in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(pair, source, sink), daemon=True
                ).start()

    def _pump(self, pair: Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not pair.closed.is_set():
                data = source.recv(BUFFER_SIZE)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            pair.close()
            with self.lock:
                self.pairs.discard(pair)

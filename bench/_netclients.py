"""Many websocket clients in one process: `python -m bench._netclients JSON`.

Each client is a bare asyncio protocol speaking just enough RFC 6455 to receive
the feed (handshake, unmasked server frames, ping/pong, close), so that one
process can take tens of thousands of messages a second and the measurement is
the server's, not the client library's.

Every message is JSON with a "position"; its delivery latency is the time it is
received here minus the `updated_at` of its transaction or account (wall clock,
same machine): for the bank, when the event behind the message was created, just
before it was recorded; for the bare broadcast, when the server sent it.

The config's "headers" (the signed-in user's `Authorization: Bearer ...`) go with
every client's handshake: the bank refuses an unsigned one with HTTP 401.

Driven by JSON lines: it prints {"event": "ready"} once every client is connected
and has had its "ready" message, then answers commands read from stdin:
{"cmd": "mark"} starts a new phase (counts and latencies from zero),
{"cmd": "until", "position": P, "timeout": S} waits until every open client has
received position P and answers the phase's figures, {"cmd": "quit"}.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import struct
import sys
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

BATCH = 50  # clients connecting at the same time


class Phase:
    """What every client received since the last mark."""

    def __init__(self) -> None:
        """Nothing received yet."""
        self.count = 0
        self.bytes = 0
        self.first = float("inf")
        self.last = 0.0
        self.latencies: list[float] = []


class Client(asyncio.Protocol):
    """One websocket connection that records what it receives."""

    def __init__(self, group: Group, request: bytes) -> None:
        """Sends the request once connected."""
        self.group = group
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.position = 0
        self.closed: int | None = None
        self.fragments = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Sends the upgrade request."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        """Parses the handshake answer, then frames."""
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:end]).split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                self._fail(f"handshake refused: {status.decode(errors='replace')}")
                return
            del self.buffer[: end + 4]
            self.upgraded = True
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                if size - start < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            if second & 0x80:
                start += 4  # a masked server frame: not expected, skip the key
            end = start + length
            if end > size:
                break
            self._frame(first & 0x0F, bool(first & 0x80), bytes(buffer[start:end]))
            offset = end
        del buffer[:offset]

    def _frame(self, opcode: int, final: bool, payload: bytes) -> None:
        if opcode in (0, 1, 2):
            self.fragments += payload
            if final:
                message = bytes(self.fragments)
                self.fragments.clear()
                self.group.received(self, message)
        elif opcode == 8:
            code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
            self.closed = code
            self._send(8, payload[:2])
            if self.transport is not None:
                self.transport.close()
            if not self.ready.done():
                self.ready.set_exception(RuntimeError(f"closed with {code}"))
        elif opcode == 9:
            self._send(10, payload)

    def _send(self, opcode: int, payload: bytes) -> None:
        """Sends one masked frame (payloads here are short)."""
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(
            bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked
        )

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(reason))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Notes the end."""
        if self.closed is None:
            self.closed = 1006
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"connection lost: {exc}"))


class Group:
    """Every client, and the figures of the current phase."""

    def __init__(self) -> None:
        """No clients yet."""
        self.clients: list[Client] = []
        self.phase = Phase()

    def received(self, client: Client, message: bytes) -> None:
        """Counts one message and its latency."""
        now = time.time()
        data = json.loads(message)
        if data.get("type") == "ready":
            client.position = max(client.position, data.get("last_position", 0))
            if not client.ready.done():
                client.ready.set_result(None)
            return
        position = data.get("position")
        if position is None:
            return
        client.position = position
        phase = self.phase
        phase.count += 1
        phase.bytes += len(message)
        phase.first = min(phase.first, now)
        phase.last = now
        subject = data.get("transaction") or data.get("account")
        if subject and subject.get("updated_at"):
            stamp = datetime.fromisoformat(subject["updated_at"]).timestamp()
            phase.latencies.append(now - stamp)

    def figures(self, position: int, complete: int) -> dict[str, Any]:
        """The current phase's figures."""
        phase = self.phase
        ordered = sorted(phase.latencies)

        def at(fraction: float) -> float:
            if not ordered:
                return float("nan")
            index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
            return ordered[index] * 1000

        open_clients = [c for c in self.clients if c.closed is None]
        seconds = phase.last - phase.first if phase.count else 0.0
        return {
            "clients": len(self.clients),
            "open": len(open_clients),
            "closed_codes": sorted({c.closed for c in self.clients if c.closed}),
            "complete": complete,
            "position": position,
            "messages": phase.count,
            "per_client": phase.count / len(self.clients) if self.clients else 0,
            "seconds": seconds,
            "mean_bytes": phase.bytes / phase.count if phase.count else 0,
            "p50_ms": at(0.5),
            "p99_ms": at(0.99),
            "max_ms": at(1.0),
            "first": phase.first if phase.count else None,
            "last": phase.last,
        }


def raise_file_limit(needed: int) -> None:
    """Raises the soft limit on open files towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed + 100
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


async def connect(
    group: Group, host: str, port: int, path: str, origin: str, extra: str = ""
) -> None:
    """Opens one client and waits for its "ready"; extra: more header lines."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n{extra}\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(group, request), host, port)
    group.clients.append(client)
    await asyncio.wait_for(client.ready, 60)


def say(answer: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    print(json.dumps(answer), flush=True)


async def main_async(config: dict[str, Any]) -> None:
    """Connects the clients, then answers commands until quit."""
    base = urlsplit(config["base"])
    host, port = base.hostname or "127.0.0.1", base.port or 80
    count: int = config["clients"]
    path: str = config.get("path", "/ws")
    origin = f"http://{host}:{port}"
    headers: dict[str, str] = config.get("headers") or {}
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    raise_file_limit(count)
    group = Group()
    started = time.perf_counter()
    try:
        for first in range(0, count, BATCH):
            batch = range(first, min(count, first + BATCH))
            await asyncio.gather(
                *(connect(group, host, port, path, origin, extra) for _ in batch)
            )
    except Exception as error:  # reported to the parent
        say({"error": f"connecting: {error!r}"})
        return
    say({"event": "ready", "clients": count, "seconds": time.perf_counter() - started})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        if command["cmd"] == "mark":
            group.phase = Phase()
            say({"ok": True})
        elif command["cmd"] == "until":
            position = command["position"]
            deadline = time.monotonic() + command.get("timeout", 120)
            while True:
                open_clients = [c for c in group.clients if c.closed is None]
                complete = sum(c.position >= position for c in open_clients)
                if complete == len(open_clients) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)  # polling interval
            say(group.figures(position, complete))
        else:
            say({"ok": True})
            break
    for client in group.clients:
        if client.transport is not None:
            client.transport.close()


def main() -> None:
    """Reads the JSON config from argv[1]."""
    asyncio.run(main_async(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()

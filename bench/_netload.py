"""HTTP load generator, run as a process of its own: `python -m bench._netload JSON`.

A minimal HTTP/1.1 keep-alive client on asyncio streams (cheaper per request than
httpx, so the generator leaves the CPU to the server): `concurrency` connections
(spread over the servers in "bases", if given), each sending its next request as
soon as the previous answer is in (closed loop), or at a fixed rate when `rate` is
given. Prints one JSON line: counts, statuses, wall
times and latency percentiles.

Modes: "transfers" (POST /api/transfers between the given accounts, optionally
`?wait=true`, then optionally one sentinel transfer with `?wait=true`, whose answer
means the system has processed everything before it) and "get" (GET a path).
Every request carries the config's "headers" (the signed-in user's Authorization).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

IDLE = 2.0  # seconds; uvicorn closes keep-alive connections idle for 5


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(
        self, host: str, port: int, headers: dict[str, str] | None = None
    ) -> None:
        """Not connected until open(); headers go with every request."""
        self.host = host
        self.port = port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0  # when the last answer came

    async def open(self) -> None:
        """Connects."""
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, limit=2**24
        )

    async def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        """Sends one request; returns the status and the body."""
        if time.monotonic() - self.used > IDLE:
            await self.close()  # the server may be closing it (keep-alive timeout)
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.writer is not None
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += self.extra
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            payload = await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            payload = await self._chunked()
        else:
            payload = b""
        self.used = time.monotonic()
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, payload

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(part[:-2] for part in parts)

    async def close(self) -> None:
        """Closes the connection."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.reader = None


def percentile_ms(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of seconds, in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index] * 1000


async def run(config: dict[str, Any]) -> dict[str, Any]:
    """Sends the requests; returns what happened."""
    addresses = []
    for url in config.get("bases") or [config["base"]]:
        base = urlsplit(url)
        addresses.append((base.hostname or "127.0.0.1", base.port or 80))
    count: int = config["count"]
    concurrency: int = config.get("concurrency", 16)
    rate: float | None = config.get("rate")
    mode: str = config["mode"]
    accounts: list[str] = config.get("accounts", [])
    path: str = config.get("path", "/api/transfers")
    if mode == "transfers" and config.get("wait"):
        path += "?wait=true"

    def body(index: int) -> bytes | None:
        if mode != "transfers":
            return None
        debit = accounts[index % len(accounts)]
        credit = accounts[(index + 1) % len(accounts)]
        return json.dumps(
            {"debit_account_id": debit, "credit_account_id": credit, "amount": "1.00"}
        ).encode()

    method = "POST" if mode == "transfers" else "GET"
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    ids: list[str] = []
    sizes: list[int] = []
    indexes = itertools.count()
    headers: dict[str, str] = config.get("headers") or {}
    connections = [
        Connection(*addresses[index % len(addresses)], headers)
        for index in range(concurrency)
    ]
    start = time.time()
    clock_start = time.perf_counter()

    async def worker(connection: Connection) -> None:
        while (index := next(indexes)) < count:
            if rate:
                delay = clock_start + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the offered load
            sent = time.perf_counter()
            status, payload = await connection.request(method, path, body(index))
            latencies.append(time.perf_counter() - sent)
            statuses[status] += 1
            sizes.append(len(payload))
            if mode == "transfers" and status in (200, 202):
                ids.append(json.loads(payload)["transaction_id"])

    await asyncio.gather(*(worker(c) for c in connections))
    end = time.time()
    seconds = time.perf_counter() - clock_start
    answer: dict[str, Any] = {
        "count": count,
        "statuses": {str(k): v for k, v in statuses.items()},
        "ok": sum(v for k, v in statuses.items() if 200 <= k < 300),
        "start": start,
        "end": end,
        "seconds": seconds,
        "rate": count / seconds if seconds > 0 else float("nan"),
        "p50_ms": percentile_ms(latencies, 0.5),
        "p99_ms": percentile_ms(latencies, 0.99),
        "mean_bytes": sum(sizes) / len(sizes) if sizes else 0,
        "last_ids": ids[-concurrency:],
    }
    if mode == "transfers" and config.get("sentinel"):
        status, payload = await connections[0].request(
            "POST", "/api/transfers?wait=true", body(count)
        )
        sentinel = json.loads(payload)
        deadline = time.monotonic() + config.get("drain_timeout", 300)
        while status in (200, 202) and sentinel.get("status") == "pending":
            # ?wait=true gave up (10 s): poll the transaction until it has finished
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)  # polling interval
            tid = sentinel.get("transaction_id") or sentinel.get("id")
            status, payload = await connections[0].request(
                "GET", f"/api/transactions/{tid}"
            )
            sentinel = {"transaction_id": tid, **json.loads(payload)}
        answer["sentinel_status"] = status
        answer["sentinel"] = sentinel
        answer["drained_seconds"] = time.perf_counter() - clock_start
    for connection in connections:
        await connection.close()
    return answer


def main() -> None:
    """Reads the JSON config from argv[1]; prints one JSON line."""
    config = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run(config))), flush=True)


if __name__ == "__main__":
    main()

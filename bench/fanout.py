"""Benchmark 7: the websocket feed fanned out to many clients.

The bank is `python -m bankaccounts serve` in memory (POPO, so that storage does
not set the pace; the embedded deployment, SingleThreadedRunner). N websocket
clients (100 and 1,000; 100 and 300 with --quick) connect from a process of their
own (bench/_netclients.py: a bare asyncio websocket client per connection), and a
load generator in a third process sends transfers over HTTP; both as the bank's
first user (staff, who sees every feed message), signed in with a bearer token.

- Rate: transfers as fast as the bank takes them (16 in flight); the figure is
  feed messages delivered per client per second (from the first message any
  client received to the last), compared with the bare broadcast: a minimal
  FastAPI app on the same uvicorn websocket stack (bench/_netbare.py) that sends
  as many messages of the same mean size to the same number of clients as fast as
  it can, each encoded once and sent to every socket in turn, measured in the
  same run.
- Latency: 10 transfers a second for a few seconds; the delivery latency of a
  message is the time a client received it minus the `updated_at` of its
  transaction or account, i.e. from the moment the event behind it was created in
  the server, just before it was recorded, to the client having it (wall clock,
  same machine). The bare broadcast's latency, at the same message rate, is from
  its send. p50 and p99 are over every message at every client.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from bench import _net
from bench.common import Chart, Options, Result, Row, ratio_row
from bench.http import CONCURRENCY, open_funded_accounts

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

KEY = "fanout"
RATE_TARGET = 0.8
P99_TARGET_MS = 200.0
LATENCY_RATE = 10  # transfers a second
POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


def state_position(base: str, headers: Mapping[str, str]) -> int:
    """The bank's last feed position."""
    state = _net.http_json("GET", f"{base}/api/state", headers=headers)
    position: int = state["position"]
    return position


def bank_run(
    workdir: Path, clients: int, transfers: int, seconds: int, timeout: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bank: a rate phase and a latency phase; the clients' figures of each."""
    with _net.bank_server(workdir, POPO, name=f"fanout-{clients}") as base:
        headers = _net.sign_in(base)
        accounts = open_funded_accounts(base, headers)
        after = state_position(base, headers)
        config = {
            "base": base,
            "clients": clients,
            "path": f"/ws?after={after}",
            "headers": headers,
        }
        with _net.clients(config) as group:
            group.ready()
            group.ask({"cmd": "mark"})
            load = {
                "mode": "transfers",
                "base": base,
                "headers": headers,
                "accounts": accounts,
                "count": transfers,
                "concurrency": CONCURRENCY,
                "sentinel": True,
            }
            _net.run_load(load)
            position = state_position(base, headers)
            rate = group.ask({"cmd": "until", "position": position, "timeout": timeout})
            group.ask({"cmd": "mark"})
            load.update(count=LATENCY_RATE * seconds, concurrency=4, rate=LATENCY_RATE)
            _net.run_load(load)
            position = state_position(base, headers)
            latency = group.ask(
                {"cmd": "until", "position": position, "timeout": timeout}
            )
    return rate, latency


def bare_run(
    workdir: Path,
    clients: int,
    messages: int,
    latency_messages: int,
    latency_rate: float,
    size: int,
    timeout: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bare broadcast: the same phases with the same numbers of messages."""
    results = []
    with (
        _net.bare_server(workdir) as base,
        _net.clients({"base": base, "clients": clients}) as group,
    ):
        group.ready()
        for count, rate in ((messages, 0.0), (latency_messages, latency_rate)):
            group.ask({"cmd": "mark"})
            last = _net.http_json(
                "POST", f"{base}/broadcast?count={count}&rate={rate}&size={size}"
            )["last"]
            results.append(
                group.ask({"cmd": "until", "position": last, "timeout": timeout})
            )
    return results[0], results[1]


def per_client_rate(figures: dict[str, Any]) -> float:
    """Messages delivered per client per second."""
    seconds = figures["seconds"]
    return figures["per_client"] / seconds if seconds > 0 else float("nan")


def check(figures: dict[str, Any], what: str) -> None:
    """Fails if a client missed messages (closed, or not at the last position)."""
    if figures["complete"] != figures["clients"]:
        msg = (
            f"{what}: only {figures['complete']} of {figures['clients']} clients got "
            f"every message (closed: {figures['closed_codes']})"
        )
        raise RuntimeError(msg)


def run(options: Options) -> Result:
    """Runs benchmark 7."""
    sizes = (100, 300) if options.quick else (100, 1000)
    seconds = options.size(3, 2)  # of the latency phase
    deliveries = options.size(100_000, 20_000)  # per rate phase, all clients
    rows: list[Row] = []
    chart: dict[str, list[float]] = {
        "bank, messages/s per client": [],
        "bare broadcast, messages/s per client": [],
    }
    notes = []
    for clients in sizes:
        workdir = options.workdir / f"fanout-{clients}"
        workdir.mkdir(parents=True, exist_ok=True)
        transfers = max(20, math.ceil(deliveries / clients / 4))
        timeout = 180.0
        options.progress(f"fanout: bank, {clients} clients, {transfers} transfers")
        bank_rate, bank_latency = bank_run(
            workdir, clients, transfers, seconds, timeout
        )
        check(bank_rate, f"bank, {clients} clients, rate")
        check(bank_latency, f"bank, {clients} clients, latency")
        size = round(bank_rate["mean_bytes"])
        latency_messages = bank_latency["per_client"]
        options.progress(
            f"fanout: bare broadcast, {clients} clients, "
            f"{bank_rate['per_client']:.0f} messages of {size} bytes"
        )
        bare_rate, bare_latency = bare_run(
            workdir,
            clients,
            round(bank_rate["per_client"]),
            round(latency_messages),
            latency_messages / seconds,
            size,
            timeout,
        )
        check(bare_rate, f"bare, {clients} clients, rate")
        check(bare_latency, f"bare, {clients} clients, latency")
        bank_figure = per_client_rate(bank_rate)
        bare_figure = per_client_rate(bare_rate)
        options.progress(
            f"fanout: {clients} clients: bank {bank_figure:.0f}/s per client, "
            f"bare {bare_figure:.0f}/s; p99 bank {bank_latency['p99_ms']:.0f} ms, "
            f"bare {bare_latency['p99_ms']:.0f} ms"
        )
        chart["bank, messages/s per client"].append(bank_figure)
        chart["bare broadcast, messages/s per client"].append(bare_figure)
        label = f"{clients:,} clients"
        rows.append(
            ratio_row(
                f"{label}: feed messages delivered, per client",
                bank_figure,
                "messages/s",
                bare_figure,
                "bare broadcast",
                at_least=RATE_TARGET if clients == sizes[0] else None,
            )
        )
        rows.append(
            Row(
                f"{label}: feed messages delivered, all clients",
                bank_figure * clients,
                "messages/s",
                bare_figure * clients,
                "bare broadcast",
                bank_figure / bare_figure if bare_figure else None,
            )
        )
        at_rate = f"{label}, {LATENCY_RATE} transfers/s"
        rows.append(
            Row(
                f"{at_rate}: p50 latency",
                bank_latency["p50_ms"],
                "ms",
                bare_latency["p50_ms"],
                "bare broadcast p50",
                bank_latency["p50_ms"] / bare_latency["p50_ms"],
            )
        )
        p99 = bank_latency["p99_ms"]
        is_last = clients == sizes[-1]
        rows.append(
            Row(
                f"{at_rate}: p99 latency",
                p99,
                "ms",
                bare_latency["p99_ms"],
                "bare broadcast p99",
                p99 / bare_latency["p99_ms"],
                f"p99 <= {P99_TARGET_MS:g} ms" if is_last else "",
                p99 <= P99_TARGET_MS if is_last else None,
            )
        )
        notes.append(
            f"{label}: {bank_latency['messages'] / clients / seconds:.0f} feed "
            f"messages/s per client at {LATENCY_RATE} transfers/s; mean message "
            f"{size} bytes; bank rate phase {transfers} transfers in "
            f"{bank_rate['seconds']:.1f} s."
        )
    if options.quick:
        notes.append(
            "--quick: 300 clients stand in for 1,000; the p99 target is checked there."
        )
    return Result(
        key=KEY,
        title="7. Websocket fan-out",
        description=" ".join((__doc__ or "").split("\n\n")[1:]).replace("\n", " "),
        rows=rows,
        chart=Chart(
            kind="bar",
            title="Feed messages delivered per client per second",
            xlabel="connected clients",
            ylabel="messages/s per client",
            x=[f"{n:,}" for n in sizes],
            series=chart,
        ),
        notes=notes,
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)

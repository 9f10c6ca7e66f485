"""Benchmark 6: the REST API under load from another process.

For each store, the server is `python -m bankaccounts serve` (the embedded
deployment: one web process that also runs the system with the
SingleThreadedRunner). A load generator in a process of its own
(bench/_netload.py, a minimal keep-alive HTTP/1.1 client on asyncio) keeps 16
`POST /api/transfers` in flight among 8 funded accounts, then sends one more with
`?wait=true`: its answer means every transfer before it has finished.

The limit, measured in the same run on the same store: `Commands.transfer_funds`
called directly in one process, in a loop, on a `Bank` with the same runner (there
the call returns when the saga and the read model are done). The figure compared
with it is the rate of transfers finished over HTTP (requests until the sentinel
has finished); the rate at which the POSTs were answered (202) and their p50/p99
latency are shown too.

With the distributed deployment (PostgreSQL, `serve --distributed --workers 4`, the
system in worker processes) the POST only records the command, so its limit is the
`Commands` application alone recording transfers in one process.

`GET /api/accounts` is timed with 10,000 accounts in an SQLite file (1,000 with
--quick): its first page and its last (keyset paging: the same cost), each next to
the in-process rate of reading that page and encoding the JSON.

Every request is signed in: the benchmark signs up its user (the first on a server
listening on a loopback address: staff, who may use every account) and sends the
token with each request.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bench import _net
from bench.common import (
    STORE_LABELS,
    Chart,
    Options,
    Result,
    Row,
    postgres_env,
    ratio_row,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

KEY = "http"
PAGE = 100  # accounts a page of GET /api/accounts
ACCOUNTS = 8
CONCURRENCY = 16
TARGET = 0.5
AMOUNT = Decimal("1.00")


@contextmanager
def store_settings(store: str) -> Iterator[dict[str, str]]:
    """The library's settings for a store (a fresh schema for PostgreSQL)."""
    if store == "postgres":
        with postgres_env() as env:
            yield env
    elif store == "popo":
        yield {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    else:
        yield {}  # SQLite files in the data directory


def bank_env(store: str, settings: Mapping[str, str], data_dir: Path) -> dict[str, str]:
    """The env a Bank in this process takes for the store."""
    from bankaccounts.deploy.bootstrap import system_env

    if store == "sqlite":
        return system_env(data_dir, environ={})
    return dict(settings)


def limit_rate(
    store: str, settings: Mapping[str, str], workdir: Path, seconds: float
) -> float:
    """Commands.transfer_funds called directly in one process (SingleThreadedRunner)."""
    from bankaccounts.deploy.bootstrap import Bank

    bank = Bank(bank_env(store, settings, workdir / "limit-data"), runner="single")
    bank.start()
    try:
        ids = [bank.accounts.create_account(f"bench {i}") for i in range(ACCOUNTS)]
        for account_id in ids:
            bank.commands.deposit_funds(account_id, Decimal(1_000_000))

        def transfer(index: int) -> None:
            bank.commands.transfer_funds(
                ids[index % ACCOUNTS], ids[(index + 1) % ACCOUNTS], AMOUNT
            )

        return loop_rate(transfer, seconds)
    finally:
        bank.stop()


def commands_only_rate(settings: Mapping[str, str], seconds: float) -> float:
    """The Commands application alone recording transfers (a distributed web)."""
    from uuid import uuid4

    from bankaccounts.system.commands import Commands

    commands = Commands(env=dict(settings))
    try:
        ids = [uuid4() for _ in range(ACCOUNTS)]

        def transfer(index: int) -> None:
            commands.transfer_funds(
                ids[index % ACCOUNTS], ids[(index + 1) % ACCOUNTS], AMOUNT
            )

        return loop_rate(transfer, seconds)
    finally:
        commands.close()


def loop_rate(operation: Callable[[int], object], seconds: float) -> float:
    """Calls operation(i) for i = 0, 1, ... for about `seconds` after a warm-up."""
    for index in range(10):
        operation(index)
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        operation(count)
        count += 1
        if count % 10 == 0 and time.perf_counter() >= deadline:
            break
    return count / (time.perf_counter() - started)


def open_funded_accounts(
    base: str, headers: Mapping[str, str], count: int = ACCOUNTS
) -> list[str]:
    """Opens accounts over HTTP and deposits 1,000,000.00 in each (waiting)."""
    ids = []
    for index in range(count):
        account = _net.http_json(
            "POST", f"{base}/api/accounts", {"name": f"load {index}"}, headers=headers
        )
        ids.append(account["id"])
    for account_id in ids:
        answer = _net.http_json(
            "POST",
            f"{base}/api/accounts/{account_id}/deposits?wait=true",
            {"amount": "1000000.00"},
            headers=headers,
        )
        if answer.get("status") != "succeeded":
            msg = f"deposit did not succeed: {answer}"
            raise RuntimeError(msg)
    return ids


def post_load(
    base: str,
    headers: Mapping[str, str],
    accounts: list[str],
    count: int,
    *,
    sentinel: bool = True,
    warmup: int = 50,
) -> dict[str, Any]:
    """A warm-up, then `count` transfers with 16 in flight (and the sentinel)."""
    config: dict[str, Any] = {
        "mode": "transfers",
        "base": base,
        "headers": dict(headers),
        "accounts": accounts,
        "count": warmup,
        "concurrency": CONCURRENCY,
        "sentinel": sentinel,
    }
    _net.run_load(config)
    config["count"] = count
    answer = _net.run_load(config)
    finished = (answer.get("sentinel") or {}).get("status")
    if answer["ok"] != count or (sentinel and finished != "succeeded"):
        msg = f"transfers failed: {answer['statuses']}, sentinel {finished}"
        raise RuntimeError(msg)
    if sentinel:
        answer["finished_rate"] = (count + 1) / answer["drained_seconds"]
    return answer


def post_rows(
    configuration: str,
    answer: dict[str, Any],
    limit: float,
    limit_name: str,
    *,
    finished: bool,
) -> list[Row]:
    """The rows of one POST load: the rate with the target, then the details."""
    rows = []
    if finished:
        rows.append(
            ratio_row(
                f"{configuration}: transfers finished",
                answer["finished_rate"],
                "transfers/s",
                limit,
                limit_name,
                at_least=TARGET,
            )
        )
        rows.append(
            ratio_row(
                f"{configuration}: POSTs answered",
                answer["rate"],
                "requests/s",
                limit,
                limit_name,
            )
        )
    else:
        rows.append(
            ratio_row(
                f"{configuration}: POSTs answered",
                answer["rate"],
                "requests/s",
                limit,
                limit_name,
                at_least=TARGET,
            )
        )
    rows.append(Row(f"{configuration}: POST p50 latency", answer["p50_ms"], "ms"))
    rows.append(Row(f"{configuration}: POST p99 latency", answer["p99_ms"], "ms"))
    return rows


def embedded(
    store: str, options: Options, seconds: float
) -> tuple[list[Row], float, float]:
    """1 web worker, the system in the web process; rows, figure, limit."""
    label = STORE_LABELS[store]
    workdir = options.workdir / f"http-{store}"
    workdir.mkdir(parents=True, exist_ok=True)
    with store_settings(store) as settings:
        options.progress(f"http: {label}: Commands.transfer_funds in one process")
        limit = limit_rate(store, settings, workdir, seconds)
    options.progress(f"http: {label}: limit {limit:.0f} transfers/s")
    count = max(options.size(100, 60), min(5000, int(limit * seconds * 1.5)))
    with store_settings(store) as settings, _net.bank_server(workdir, settings) as base:
        headers = _net.sign_in(base)
        accounts = open_funded_accounts(base, headers)
        options.progress(
            f"http: {label}: {count} POST /api/transfers, {CONCURRENCY} in flight"
        )
        answer = post_load(base, headers, accounts, count, warmup=options.size(50, 20))
    options.progress(
        f"http: {label}: {answer['finished_rate']:.0f} finished/s, "
        f"{answer['rate']:.0f} answered/s, p99 {answer['p99_ms']:.1f} ms"
    )
    rows = post_rows(
        f"{label}, 1 web worker (embedded)",
        answer,
        limit,
        "Commands.transfer_funds in one process",
        finished=True,
    )
    return rows, answer["finished_rate"], limit


def distributed(
    options: Options, seconds: float, workers: int
) -> tuple[list[Row], float, float]:
    """PostgreSQL, `serve --distributed --workers N` plus the system's workers."""
    workdir = options.workdir / f"http-distributed-{workers}"
    workdir.mkdir(parents=True, exist_ok=True)
    with postgres_env() as settings:
        options.progress("http: PostgreSQL: Commands alone recording transfers")
        limit = commands_only_rate(settings, seconds)
    options.progress(f"http: PostgreSQL: limit {limit:.0f} commands/s")
    count = max(
        options.size(100, 60), min(options.size(5000, 150), int(limit * seconds))
    )
    with (
        postgres_env() as settings,
        _net.distributed_system(workdir, settings, web_workers=workers) as bases,
    ):
        base = bases[0]
        headers = _net.sign_in(base)
        accounts = open_funded_accounts(base, headers)
        options.progress(f"http: PostgreSQL, {workers} web workers: {count} POSTs")
        answer = post_load(
            base,
            headers,
            accounts,
            count,
            sentinel=False,
            warmup=options.size(50, 20),
        )
    options.progress(
        f"http: PostgreSQL, {workers} web workers: {answer['rate']:.0f} answered/s"
    )
    rows = post_rows(
        f"PostgreSQL, {workers} web workers (distributed)",
        answer,
        limit,
        "Commands alone recording transfers",
        finished=False,
    )
    return rows, answer["rate"], limit


def list_accounts(options: Options) -> list[Row]:
    """GET /api/accounts, first and last page of many accounts in SQLite files, each
    next to reading the same page in-process."""
    from bankaccounts.deploy.bootstrap import Bank, system_env
    from bankaccounts.domainmodel import BankAccount

    count = options.size(10_000, 1_000)
    workdir = options.workdir / "http-accounts"
    data_dir = workdir / "data"
    options.progress(f"http: opening {count:,} accounts in SQLite files")
    bank = Bank(system_env(data_dir, environ={}), runner="single")
    bank.start()
    limits: dict[str, float] = {}
    cursors: dict[str, str | None] = {"first": None}
    try:
        for start in range(0, count, 1000):
            accounts = [
                BankAccount(name=f"account {i}")
                for i in range(start, min(count, start + 1000))
            ]
            with bank.accounts.writing():
                bank.accounts.save(*accounts)
        view = bank.interface.view
        # The cursor of the last page: walked to, page by page.
        cursor: str | None = None
        while True:
            _, after = view.list_accounts(after=cursor, limit=PAGE)
            if after is None:
                break
            cursors["last"] = cursor = after
        for name, page_cursor in cursors.items():

            def listing(_: int, after: str | None = page_cursor) -> None:
                page, _ = view.list_accounts(after=after, limit=PAGE)
                json.dumps([a.to_json() for a in page])

            limits[name] = loop_rate(listing, 2.0 if not options.quick else 1.0)
    finally:
        bank.stop()
    requests = options.size(200, 50)
    rows: list[Row] = []
    with _net.bank_server(workdir, {}, data_dir=data_dir) as base:
        headers = _net.sign_in(base)
        for name, page_cursor in cursors.items():
            path = f"/api/accounts?limit={PAGE}"
            if page_cursor is not None:
                path += f"&cursor={page_cursor}"
            answer = _net.run_load(
                {
                    "mode": "get",
                    "base": base,
                    "headers": headers,
                    "path": path,
                    "count": requests,
                    "concurrency": 4,
                }
            )
            if answer["ok"] != requests:
                msg = f"GET {path} failed: {answer['statuses']}"
                raise RuntimeError(msg)
            label = f"SQLite, 1 web worker: GET /api/accounts, {name} page of {count:,}"
            options.progress(
                f"http: {name} page {answer['rate']:.1f} GET/s, "
                f"in-process {limits[name]:.1f}/s"
            )
            rows += [
                ratio_row(
                    label,
                    answer["rate"],
                    "requests/s",
                    limits[name],
                    "the page + JSON in one process",
                ),
                Row(f"{label}: p50 latency", answer["p50_ms"], "ms"),
                Row(f"{label}: p99 latency", answer["p99_ms"], "ms"),
            ]
    return rows


def run(options: Options) -> Result:
    """Runs benchmark 6."""
    seconds = 0.75 if options.quick else 4.0
    rows: list[Row] = []
    labels: list[str] = []
    figures: list[float] = []
    limits: list[float] = []
    notes: list[str] = []
    for store in options.common_stores:
        store_rows, figure, limit = embedded(store, options, seconds)
        rows += store_rows
        labels.append(f"{STORE_LABELS[store]}, 1 worker")
        figures.append(figure)
        limits.append(limit)
    if "postgres" in options.common_stores:
        if _net.distributed_available():
            for workers in (4,):
                store_rows, figure, limit = distributed(options, seconds, workers)
                rows += store_rows
                labels.append(f"PostgreSQL, {workers} workers (distributed)")
                figures.append(figure)
                limits.append(limit)
        else:
            notes.append(
                "The 4-web-worker rows need `bankaccounts serve --distributed`, "
                "which this checkout does not have yet."
            )
    if "sqlite" in options.common_stores:
        rows += list_accounts(options)
    notes += [
        "The server, the load generator and (distributed) the workers share the "
        "machine's cores, so every figure is next to its limit from the same run.",
        "Embedded, 16 requests in flight can beat the one-at-a-time limit: the "
        "SingleThreadedRunner then pulls several commands per pass, so the saga "
        "steps of concurrent transfers share reads and prompts.",
        "Distributed, the POSTs are answered while the three workers process the "
        "same transfers on the same cores; the limit (Commands alone) has the "
        "machine to itself.",
    ]
    return Result(
        key=KEY,
        title="6. HTTP: POST /api/transfers and GET /api/accounts",
        description=" ".join((__doc__ or "").split("\n\n")[1:]).replace("\n", " "),
        rows=rows,
        chart=Chart(
            kind="bar",
            title="POST /api/transfers, 16 in flight",
            xlabel="deployment",
            ylabel="transfers/s",
            x=labels,
            series={"over HTTP": figures, "limit (in one process)": limits},
        ),
        notes=notes,
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)

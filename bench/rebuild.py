"""Benchmark 8: rebuilding the read model from scratch.

Seeds the Accounts application's store with N events (accounts opened and
transactions appended), then times a new InterfaceApplication pulling and
processing all of them (its read model rebuilt from nothing), next to the raw rate
of reading the same notifications with recorder.select_notifications in pages of
the follower's own section size, measured in the same run.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import uuid4

from eventsourcing.persistence import StoredEvent

from bankaccounts.deploy.bootstrap import APPLICATION_NAMES
from bankaccounts.domainmodel import BankAccount
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.interface import InterfaceApplication
from bench.common import STORE_LABELS, Chart, Options, Result, Row, rate, ratio_row
from bench.limits import apps_env

if TYPE_CHECKING:
    from eventsourcing.application import Application

KEY = "rebuild"
TARGET = 0.5
PER_ACCOUNT = 100  # events per account: Created and 99 transactions
INSERT_BATCH = 5000


def seed_account_events(
    app: Application, accounts: int, per_account: int = PER_ACCOUNT
) -> int:
    """Writes accounts x per_account BankAccount events straight to app's recorder.

    One account's events are made by the domain model and mapped once; every other
    account gets copies under its own id (the stored state holds no originator id).
    No snapshots are written. Returns the number of events written.
    """
    template = BankAccount(name="seed")
    for i in range(per_account - 1):
        template.append_transaction(Decimal(1) if i % 2 == 0 else Decimal(-1))
    stored = [app.mapper.to_stored_event(e) for e in template.collect_events()]
    batch: list[StoredEvent] = []
    written = 0
    for _ in range(accounts):
        account_id = uuid4()
        batch.extend(
            StoredEvent(
                originator_id=account_id,
                originator_version=e.originator_version,
                topic=e.topic,
                state=e.state,
            )
            for e in stored
        )
        if len(batch) >= INSERT_BATCH:
            app.recorder.insert_events(batch)
            written += len(batch)
            batch = []
    if batch:
        app.recorder.insert_events(batch)
        written += len(batch)
    return written


def read_rate(
    app: Application, topics: tuple[str, ...], page: int, *, decode: bool = False
) -> tuple[float, int]:
    """Notifications/s reading app's whole log in pages (and decoding each into a
    domain event with the library's mapper); and how many there were.
    """
    started = time.perf_counter()
    count = 0
    start = 1
    while True:
        notifications = app.recorder.select_notifications(start, page, topics=topics)
        if not notifications:
            break
        if decode:
            for notification in notifications:
                app.mapper.to_domain_event(notification)
        count += len(notifications)
        start = notifications[-1].id + 1
    return rate(count, time.perf_counter() - started), count


def replay_rate(env: dict[str, str], accounts: Accounts) -> tuple[float, int]:
    """Events/s for a new interface to pull and process the whole Accounts log."""
    interface = InterfaceApplication(env=env)
    try:
        interface.follow(accounts.name, accounts.notification_log)
        started = time.perf_counter()
        interface.pull_and_process(accounts.name)
        elapsed = time.perf_counter() - started
        processed = interface.recorder.max_tracking_id(accounts.name) or 0
        return rate(processed, elapsed), processed
    finally:
        interface.close()


def run(options: Options) -> Result:
    """Replay events/s per store against the raw notification read rate."""
    sizes = {"popo": 100_000, "sqlite": 30_000, "postgres": 10_000}
    if options.quick:
        sizes = dict.fromkeys(sizes, 5_000)
    rows: list[Row] = []
    replays: list[float] = []
    raws: list[float] = []
    decodes: list[float] = []
    page = InterfaceApplication.pull_section_size
    for store in options.common_stores:
        label = STORE_LABELS[store]
        options.progress(f"rebuild: {label}")
        with apps_env(store, options.workdir, APPLICATION_NAMES) as env:
            accounts = Accounts(env=env)
            try:
                started = time.perf_counter()
                written = seed_account_events(accounts, sizes[store] // PER_ACCOUNT)
                took = time.perf_counter() - started
                options.progress(f"  seeded {written:,} events in {took:.1f} s")
                raw, read = read_rate(accounts, InterfaceApplication.topics, page)
                options.progress(f"  raw read {raw:,.0f} notifications/s ({read:,})")
                decoded, _ = read_rate(
                    accounts, InterfaceApplication.topics, page, decode=True
                )
                options.progress(f"  read and decoded {decoded:,.0f} events/s")
                replay, processed = replay_rate(env, accounts)
                options.progress(f"  replay {replay:,.0f} events/s ({processed:,})")
            finally:
                accounts.close()
        replays.append(replay)
        raws.append(raw)
        decodes.append(decoded)
        rows.append(
            ratio_row(
                f"{label}: read and decode only (the library's mapper), "
                f"{processed:,} events",
                decoded,
                "events/s",
                raw,
                f"notifications/s read raw (pages of {page})",
                at_least=TARGET,
            )
        )
        rows.append(
            ratio_row(
                f"{label}: interface replays {processed:,} events",
                replay,
                "events/s",
                raw,
                f"notifications/s read raw (pages of {page})",
                at_least=TARGET,
            )
        )
    return Result(
        key=KEY,
        title="8. Read-model rebuild",
        description=(
            "The Accounts store is seeded with N events (accounts opened, each with "
            f"{PER_ACCOUNT - 1} transactions), then a new `InterfaceApplication` "
            "follows Accounts and pulls and processes every event from scratch "
            "(`pull_and_process`), rebuilding its read model. The limit is the raw "
            "rate of reading the same notifications from the same store with "
            "`recorder.select_notifications(start, limit, topics=...)` in pages of "
            f"the follower's own section size ({page}), measured just before. "
            f"Target: >= {TARGET} x the raw read rate."
        ),
        rows=rows,
        chart=Chart(
            kind="bar",
            title="Read-model rebuild: replay vs raw read",
            xlabel="store",
            ylabel="per second (log scale)",
            x=[STORE_LABELS[s] for s in options.common_stores],
            series={
                "replay events/s": replays,
                "read and decode events/s": decodes,
                "raw read notifications/s": raws,
            },
            logy=True,
        ),
        notes=[
            "Sizes measured: "
            + ", ".join(
                f"{STORE_LABELS[s]} {sizes[s]:,}" for s in options.common_stores
            )
            + " events. The issue's 1,000,000 does not fit the suite's 10-minute "
            "budget at the replay rates measured (that is the finding; no "
            "extrapolation is reported).",
            "The row 'read and decode only' reads the same pages and turns each "
            "notification into a domain event with the library's mapper "
            "(`mapper.to_domain_event`: JSON decoding and object construction), and "
            "does nothing else. Where it is below the target, no replay can meet "
            "the target: every replayed event must be decoded.",
            "Seeding: one account's events made by the domain model and mapped "
            "once, copied under new ids for the other accounts and inserted "
            f"{INSERT_BATCH:,} per `recorder.insert_events` call (no snapshots: "
            "the interface reads only notifications).",
        ],
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)

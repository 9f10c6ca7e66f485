"""Benchmark 10: a statement page deep in a long history costs what the first does.

One account gets 100,000 statement entries (every other one a transfer with another
account, so the page reads the counterparty's name and owner too), then the first
page (50 newest entries) and the 1,000th page (entries 50,050 to 50,001 from the
newest, reached by walking 999 cursors) are each read many times, alternately, in
the SQLite file and in PostgreSQL. Target: the 1,000th page takes at most 1.2 times
as long as the first (keyset pagination on (account_id, seq): no OFFSET).

The rows are written fast, not by the system: the interface's recorder writes
them through its own insert path (`write_changes`, the statement it runs for a page
of events) in batches of 10,000 entries per transaction, as a page of events would
have them. Processing 100,000 transactions through the sagas would take minutes
and measure something else.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from bankaccounts.deploy.bootstrap import APPLICATION_NAMES
from bankaccounts.domainmodel import UserRef
from bankaccounts.readmodel import AccountRef, AccountView, StatementEntry, ViewChanges
from bankaccounts.system.interface import InterfaceApplication
from bench.common import STORE_LABELS, Chart, Options, Result, Row, ratio_row
from bench.limits import apps_env

if TYPE_CHECKING:
    from uuid import UUID

    from bankaccounts.readmodel import ReadModelRecorder

KEY = "statement"
TARGET = 1.2
ENTRIES = 100_000
PAGE = 50
DEEP_PAGE = 1_000
BATCH = 10_000
STORES = ("sqlite", "postgres")


def seed_statement(recorder: Any, entries: int) -> tuple[UUID, float]:
    """Writes an account, its counterparty and `entries` statement entries through
    the recorder's own write path; returns the account id and the seconds taken."""
    owner = UserRef(uuid4(), "owner")
    payer = UserRef(uuid4(), "payer")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    account = AccountView(
        id=uuid4(),
        name="Long history",
        balance=Decimal(entries),
        overdraft_limit=Decimal(0),
        is_closed=False,
        opened_at=start,
        updated_at=start + timedelta(seconds=entries),
        owner=owner,
        statement_seq=entries,
    )
    other = AccountView(
        id=uuid4(),
        name="Counterparty",
        balance=Decimal(0),
        overdraft_limit=Decimal(0),
        is_closed=False,
        opened_at=start,
        updated_at=start,
        owner=payer,
    )
    started = time.perf_counter()
    write(recorder, ViewChanges(accounts=[account, other]))
    for first in range(1, entries + 1, BATCH):
        batch = [
            StatementEntry(
                account_id=account.id,
                seq=seq,
                transaction_id=uuid4(),
                kind="transfer" if seq % 2 else "deposit",
                amount=Decimal("1.00"),
                balance=Decimal(seq),
                counterparty=AccountRef(other.id) if seq % 2 else None,
                initiated_by=payer if seq % 2 else owner,
                at=start + timedelta(seconds=seq),
            )
            for seq in range(first, min(first + BATCH, entries + 1))
        ]
        write(recorder, ViewChanges(statement=batch))
    return account.id, time.perf_counter() - started


def write(recorder: Any, changes: ViewChanges) -> None:
    """One transaction of the recorder's own writes (SQLite or PostgreSQL)."""
    with recorder.datastore.transaction(commit=True) as cursor:
        recorder.write_changes(cursor, changes)


def deep_cursor(view: ReadModelRecorder, account_id: UUID, pages: int) -> str:
    """The cursor of page `pages`, reached by walking the cursors before it."""
    cursor: str | None = None
    for _ in range(pages - 1):
        _, cursor = view.select_statement(account_id, after=cursor, limit=PAGE)
        assert cursor is not None, "fewer pages than asked for"
    assert cursor is not None
    return cursor


def page_times(
    view: ReadModelRecorder, account_id: UUID, cursor: str, rounds: int
) -> tuple[float, float]:
    """Median seconds of the first page and of the page at cursor, read alternately."""
    first: list[float] = []
    deep: list[float] = []
    for _ in range(10):  # warm the caches and the connection
        view.select_statement(account_id, limit=PAGE)
        view.select_statement(account_id, after=cursor, limit=PAGE)
    for _ in range(rounds):
        started = time.perf_counter()
        view.select_statement(account_id, limit=PAGE)
        first.append(time.perf_counter() - started)
        started = time.perf_counter()
        view.select_statement(account_id, after=cursor, limit=PAGE)
        deep.append(time.perf_counter() - started)
    return statistics.median(first), statistics.median(deep)


def run(options: Options) -> Result:
    """First and 1,000th statement page at 100,000 entries, per store."""
    entries = options.size(ENTRIES, 20_000)
    deep_page = options.size(DEEP_PAGE, 200)
    rounds = options.size(300, 50)
    stores = [s for s in STORES if s in options.stores]
    rows: list[Row] = []
    firsts: list[float] = []
    deeps: list[float] = []
    for store in stores:
        label = STORE_LABELS[store]
        options.progress(f"statement: {label}")
        with apps_env(store, options.workdir, APPLICATION_NAMES) as env:
            interface = InterfaceApplication({**env, "CREATE_TABLE": "y"})
            try:
                view = interface.view
                account_id, took = seed_statement(view, entries)
                options.progress(f"  wrote {entries:,} entries in {took:.1f} s")
                started = time.perf_counter()
                cursor = deep_cursor(view, account_id, deep_page)
                walked = time.perf_counter() - started
                options.progress(
                    f"  walked {deep_page - 1:,} pages in {walked:.1f} s "
                    f"({1000 * walked / (deep_page - 1):.2f} ms a page)"
                )
                page, _ = view.select_statement(account_id, after=cursor, limit=PAGE)
                expected_top = entries - (deep_page - 1) * PAGE
                assert page[0].seq == expected_top, (page[0].seq, expected_top)
                first, deep = page_times(view, account_id, cursor, rounds)
            finally:
                interface.close()
        options.progress(
            f"  first page {1000 * first:.3f} ms, page {deep_page:,} "
            f"{1000 * deep:.3f} ms, ratio {deep / first:.2f}"
        )
        firsts.append(1000 * first)
        deeps.append(1000 * deep)
        rows.append(Row(f"{label}: first page ({PAGE} entries)", 1000 * first, "ms"))
        rows.append(
            ratio_row(
                f"{label}: page {deep_page:,} of {entries:,} entries",
                1000 * deep,
                "ms",
                1000 * first,
                "first page, ms",
                at_most=TARGET,
            )
        )
    return Result(
        key=KEY,
        title="10. Statement pages deep in history",
        description=(
            f"One account with {entries:,} statement entries (every other one a "
            "transfer, whose page row joins the counterparty's name and owner). "
            f"Median time of `select_statement(account_id, after=cursor, "
            f"limit={PAGE})` for the first page and for page {deep_page:,} "
            f"(cursor reached by walking the {deep_page - 1:,} pages before it), "
            f"{rounds} reads each, alternately, after 10 warm-up reads. "
            f"Target: page {deep_page:,} <= {TARGET} x the first page."
        ),
        rows=rows,
        chart=Chart(
            kind="bar",
            title="Statement page read time: first vs deep",
            xlabel="store",
            ylabel="ms (median)",
            x=[STORE_LABELS[s] for s in stores],
            series={"first page": firsts, f"page {deep_page:,}": deeps},
        ),
        notes=[
            "Seeding: the interface's recorder writes the rows through its own "
            f"write path (`write_changes`), {BATCH:,} entries per transaction, not "
            "by processing 100,000 transactions through the system (minutes, and "
            "another measurement).",
            "The read is a keyset on the primary key (account_id, seq): "
            "`WHERE account_id = ? AND seq < cursor ORDER BY seq DESC LIMIT 51`.",
        ],
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)

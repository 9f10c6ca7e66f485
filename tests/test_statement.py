"""An account's statement in every store: each transaction with the balance after it,
newest first, paged by cursor and filtered by date, agreeing with the aggregates."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.system import SingleThreadedRunner

from bankaccounts.domainmodel import UserRef
from bankaccounts.exceptions import InvalidCursorError
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication

if TYPE_CHECKING:
    from collections.abc import Iterator

    from bankaccounts.readmodel import ReadModelRecorder, StatementEntry

ALICE = UserRef(uuid4(), "alice")
BOB = UserRef(uuid4(), "bob")


@pytest.fixture
def runner(persistence_env: dict[str, str]) -> Iterator[SingleThreadedRunner[Any]]:
    runner = SingleThreadedRunner(BankAccountSystem(), env=persistence_env)
    runner.start()
    yield runner
    runner.stop()


def history(runner: SingleThreadedRunner[Any]) -> dict[str, UUID]:
    """Deposits, withdrawals, transfers both ways, a refused withdrawal, a transfer
    refunded because its payee is closed."""
    accounts = runner.get(Accounts)
    commands = runner.get(Commands)
    ids = {
        "alice": accounts.create_account("Alice", owner=ALICE),
        "bob": accounts.create_account("Bob", owner=BOB),
        "closed": accounts.create_account("Closed", owner=BOB),
    }
    accounts.close_account(ids["closed"])
    commands.deposit_funds(ids["alice"], Decimal("100.00"), initiated_by=ALICE)
    for number in range(6):
        commands.transfer_funds(
            ids["alice"], ids["bob"], Decimal(f"{number + 1}.25"), initiated_by=ALICE
        )
        commands.withdraw_funds(ids["alice"], Decimal("0.50"), initiated_by=ALICE)
        commands.transfer_funds(
            ids["bob"], ids["alice"], Decimal("1.00"), initiated_by=BOB
        )
    commands.withdraw_funds(ids["bob"], Decimal("5000"), initiated_by=BOB)  # refused
    commands.transfer_funds(
        ids["alice"], ids["closed"], Decimal("7.00"), initiated_by=ALICE
    )  # refunded
    return ids


def whole_statement(
    view: ReadModelRecorder, account_id: UUID, limit: int = 4, **kwargs: Any
) -> list[StatementEntry]:
    entries: list[StatementEntry] = []
    cursor: str | None = None
    while True:
        page, cursor = view.select_statement(
            account_id, after=cursor, limit=limit, **kwargs
        )
        assert len(page) <= limit
        entries.extend(page)
        if cursor is None:
            return entries


def test_the_statement_runs_to_the_accounts_balance_newest_first(
    runner: SingleThreadedRunner[Any],
) -> None:
    ids = history(runner)
    view = runner.get(InterfaceApplication).view
    accounts = runner.get(Accounts)
    for name in ("alice", "bob"):
        entries = whole_statement(view, ids[name])
        # Every entry once, newest first, numbered 1, 2, ... from the oldest.
        assert [e.seq for e in entries] == list(range(len(entries), 0, -1))
        assert entries == view.select_statement(ids[name], limit=1000)[0]
        oldest_first = entries[::-1]
        balance = Decimal("0.00")
        for entry in oldest_first:
            balance += entry.amount
            assert entry.balance == balance
            assert entry.account_id == ids[name]
        assert balance == accounts.get_balance(ids[name])
        row = view.get_account(ids[name])
        assert row is not None
        assert row.balance == balance
        assert [e.at for e in oldest_first] == sorted(e.at for e in oldest_first)
    alices = whole_statement(view, ids["alice"])
    # Deposit, 6 x (transfer out, withdrawal, transfer in), the refunded transfer
    # out and its refund; the refused withdrawal was Bob's and left no entry.
    assert len(alices) == 1 + 6 * 3 + 2
    assert len(whole_statement(view, ids["bob"])) == 6 * 2
    assert whole_statement(view, ids["closed"]) == []
    assert view.select_statement(uuid4()) == ([], None)


def test_a_statement_entry_names_the_counterparty_and_who_initiated_it(
    runner: SingleThreadedRunner[Any],
) -> None:
    ids = history(runner)
    view = runner.get(InterfaceApplication).view
    bobs = whole_statement(view, ids["bob"])
    paid_in = [e for e in bobs if e.amount > 0]
    assert len(paid_in) == 6
    for entry in paid_in:
        assert entry.kind == "transfer"
        assert entry.initiated_by == ALICE
        assert entry.counterparty is not None
        assert entry.counterparty.to_json() == {
            "id": str(ids["alice"]),
            "name": "Alice",
            "owner": {"id": str(ALICE.id), "username": "alice"},
        }
    alices = whole_statement(view, ids["alice"])
    deposit = alices[-1]
    assert (deposit.kind, deposit.counterparty, deposit.initiated_by) == (
        "deposit",
        None,
        ALICE,
    )
    withdrawals = [e for e in alices if e.kind == "withdrawal"]
    assert {e.amount for e in withdrawals} == {Decimal("-0.50")}
    # The transfer to the closed account went out and came back.
    out, back = alices[1], alices[0]
    assert (out.amount, back.amount) == (Decimal("-7.00"), Decimal("7.00"))
    assert (out.kind, back.kind) == ("transfer", "refund")
    assert out.counterparty is not None
    assert out.counterparty.id == ids["closed"]
    assert back.balance == alices[2].balance
    json_entry = out.to_json()
    assert list(json_entry) == [
        "seq",
        "transaction_id",
        "kind",
        "at",
        "amount",
        "balance",
        "counterparty",
        "initiated_by",
    ]
    assert json_entry["amount"] == "-7.00"
    assert json_entry["at"].endswith("+00:00")
    assert json_entry["transaction_id"] == str(out.transaction_id)


def test_the_statement_filters_by_date_since_inclusive_until_exclusive(
    runner: SingleThreadedRunner[Any],
) -> None:
    ids = history(runner)
    view = runner.get(InterfaceApplication).view
    entries = whole_statement(view, ids["alice"])
    oldest_first = entries[::-1]
    since, until = oldest_first[3].at, oldest_first[12].at
    expected = [e for e in entries if since <= e.at < until]
    assert len(expected) == 9
    assert whole_statement(view, ids["alice"], since=since, until=until) == expected
    assert whole_statement(view, ids["alice"], limit=2, since=since) == [
        e for e in entries if e.at >= since
    ]
    assert whole_statement(view, ids["alice"], limit=5, until=until) == [
        e for e in entries if e.at < until
    ]
    later = entries[0].at + timedelta(seconds=1)
    earlier = entries[-1].at - timedelta(seconds=1)
    assert view.select_statement(ids["alice"], since=later) == ([], None)
    assert view.select_statement(ids["alice"], until=oldest_first[0].at) == ([], None)
    assert whole_statement(view, ids["alice"], since=earlier, until=later) == entries
    assert view.select_statement(ids["alice"], since=until, until=since) == ([], None)


def test_a_bad_statement_cursor_is_refused(runner: SingleThreadedRunner[Any]) -> None:
    ids = history(runner)
    view = runner.get(InterfaceApplication).view
    _, cursor = view.select_statement(ids["alice"], limit=2)
    assert cursor is not None
    for bad in (cursor[:-3], cursor + "x", "", "%%%", cursor.upper()):
        if bad == cursor:
            continue
        with pytest.raises(InvalidCursorError):
            view.select_statement(ids["alice"], after=bad or "=")


def test_a_transaction_appended_message_carries_its_statement_entry(
    runner: SingleThreadedRunner[Any],
) -> None:
    ids = history(runner)
    view = runner.get(InterfaceApplication).view
    newest, _ = view.select_statement(ids["bob"], limit=1)
    messages = [
        m
        for m in view.select_feed(0, limit=10_000, viewer_id=BOB.id)
        if m.type == "transaction_appended"
        and m.data["account"]["id"] == str(ids["bob"])
    ]
    assert messages[-1].data["entry"] == newest[0].to_json()
    assert [m.data["entry"]["seq"] for m in messages] == list(
        range(1, len(messages) + 1)
    )

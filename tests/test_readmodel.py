"""The read model in every store: keyset pages, search and sort, owners, the feed
per viewer, events of the older shape, and a view of the older shape refused.

Each test runs the system in one process (SingleThreadedRunner) on POPO, SQLite,
PostgreSQL and MariaDB, and reads what the interface made of it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.system import SingleThreadedRunner

from bankaccounts.domainmodel import BankAccount, UserRef
from bankaccounts.exceptions import InvalidCursorError
from bankaccounts.readmodel import ReadModelOutdatedError, paging
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from bankaccounts.readmodel import (
        AccountSort,
        AccountView,
        FeedMessage,
        ReadModelRecorder,
        TransactionView,
    )

ALICE = UserRef(uuid4(), "alice")
BOB = UserRef(uuid4(), "bob")
CAROL = UserRef(uuid4(), "carol")


@pytest.fixture
def runner(persistence_env: dict[str, str]) -> Iterator[SingleThreadedRunner[Any]]:
    runner = SingleThreadedRunner(BankAccountSystem(), env=persistence_env)
    runner.start()
    yield runner
    runner.stop()


def view_of(runner: SingleThreadedRunner[Any]) -> ReadModelRecorder:
    return runner.get(InterfaceApplication).view


def walk(read: Callable[[str | None], tuple[list[Any], str | None]]) -> list[Any]:
    """Every row of a paged read, following the cursors to the end."""
    rows: list[Any] = []
    cursor: str | None = None
    for _ in range(1000):
        page, cursor = read(cursor)
        rows.extend(page)
        if cursor is None:
            return rows
    pytest.fail("the pages never end")


NAMES = [
    "alice",
    "Alice",
    "ALICE",
    "Malika",
    "Zoë",
    "zoe",
    None,
    "bob",
    "Bob's savings",
    "100% fun_d",
    "ŝtono",
    "ärger",
]


def open_accounts(runner: SingleThreadedRunner[Any]) -> list[UUID]:
    """Accounts of three owners and none, with names alike and balances tied."""
    accounts = runner.get(Accounts)
    commands = runner.get(Commands)
    owners = [ALICE, BOB, None, CAROL]
    ids = []
    for number, name in enumerate(NAMES):
        owner = owners[number % len(owners)]
        account_id = accounts.create_account(name, owner=owner)
        ids.append(account_id)
        if number % 3:
            amount = Decimal(10 * (number % 4) + 1)
            commands.deposit_funds(account_id, amount, initiated_by=owner)
    return ids


SORT_KEYS: dict[str, Callable[[AccountView], Any]] = {
    "opened": lambda a: (a.opened_at, a.id),
    "name": lambda a: ((a.name or "").casefold(), a.id.hex),
}


def expected_order(accounts: list[AccountView], sort: AccountSort) -> list[UUID]:
    if sort == "balance":  # largest first, ties by id from the largest
        ordered = sorted(accounts, key=lambda a: (a.balance, a.id), reverse=True)
    else:
        ordered = sorted(accounts, key=SORT_KEYS[sort])
    return [a.id for a in ordered]


@pytest.mark.parametrize("sort", ["opened", "name", "balance"])
def test_pages_of_accounts_hold_every_account_once_in_each_order(
    runner: SingleThreadedRunner[Any], sort: AccountSort
) -> None:
    ids = open_accounts(runner)
    view = view_of(runner)
    everything = walk(lambda cursor: view.list_accounts(sort=sort, after=cursor))
    assert sorted(a.id for a in everything) == sorted(ids)
    for limit in (1, 3, 5, len(ids), len(ids) + 1):
        paged = walk(
            lambda cursor, limit=limit: view.list_accounts(
                sort=sort, after=cursor, limit=limit
            )
        )
        assert [a.id for a in paged] == expected_order(everything, sort)
    # One owner's accounts, in the same order, paged.
    alices = walk(
        lambda cursor: view.list_accounts(
            owner_id=ALICE.id, sort=sort, after=cursor, limit=2
        )
    )
    assert [a.id for a in alices] == expected_order(
        [a for a in everything if a.owner == ALICE], sort
    )
    assert {a.owner for a in alices} == {ALICE}
    assert view.list_accounts(owner_id=uuid4(), sort=sort) == ([], None)


def test_an_account_shows_its_owner_and_a_full_page_gives_a_cursor(
    runner: SingleThreadedRunner[Any],
) -> None:
    ids = open_accounts(runner)
    view = view_of(runner)
    first = view.get_account(ids[0])
    assert first is not None
    assert first.owner == ALICE
    assert first.to_json()["owner"] == {"id": str(ALICE.id), "username": "alice"}
    unowned = view.get_account(ids[2])
    assert unowned is not None
    assert unowned.owner is None
    assert unowned.to_json()["owner"] is None
    page, cursor = view.list_accounts(limit=len(ids))
    assert len(page) == len(ids)
    assert cursor is None  # exactly full: no empty page to ask for
    page, cursor = view.list_accounts(limit=len(ids) - 1)
    assert cursor is not None
    assert view.list_accounts(after=cursor)[0] == [
        a for a in view.list_accounts(limit=100)[0] if a.id not in {p.id for p in page}
    ]


def test_search_matches_a_name_anywhere_ignoring_case_or_the_start_of_the_number(
    runner: SingleThreadedRunner[Any],
) -> None:
    ids = open_accounts(runner)
    view = view_of(runner)

    def names(search: str, **kwargs: Any) -> list[str | None]:
        found = walk(
            lambda cursor: view.list_accounts(
                search=search, sort="name", after=cursor, limit=2, **kwargs
            )
        )
        return [a.name for a in found]

    assert sorted(names("ALI"), key=str) == ["ALICE", "Alice", "Malika", "alice"]
    assert sorted(names("alI", owner_id=ALICE.id), key=str) == ["alice"]
    assert names("zoë") == ["Zoë"]
    assert names("ÄRGER") == ["ärger"]
    # LIKE's wildcards are plain characters.
    assert names("100%") == ["100% fun_d"]
    assert names("%") == ["100% fun_d"]
    assert names("f_n") == []  # not "fun"
    assert names("_") == ["100% fun_d"]
    # The account number: its first hex digits, with or without hyphens.
    target = view.get_account(ids[6])
    assert target is not None
    for search in (ids[6].hex[:6], str(ids[6])[:13], str(ids[6]).upper()):
        found, _ = view.list_accounts(search=search)
        assert target in found
        assert all(
            a.id.hex.startswith(ids[6].hex[:6]) or _named(a, search) for a in found
        )
    assert view.list_accounts(search="no such name")[0] == []
    # Blank: no filter.
    assert len(view.list_accounts(search="  ")[0]) == len(ids)


def _named(account: AccountView, search: str) -> bool:
    return search.casefold() in (account.name or "").casefold()


@pytest.mark.parametrize(
    "cursor",
    [
        "x",
        "!!!!",
        "e30",  # {}
        paging.encode("accounts:name", "a", uuid4().hex),  # another order
        paging.encode("transactions", "2026-01-01T00:00:00+00:00", uuid4().hex),
        paging.encode("accounts:opened", "not a time", uuid4().hex),
        paging.encode("accounts:opened", "2026-01-01T00:00:00", uuid4().hex),
        paging.encode("accounts:opened", "2026-01-01T00:00:00+00:00", "not an id"),
        paging.encode("accounts:opened", "2026-01-01T00:00:00+00:00"),
        "a" * 5000,
    ],
)
def test_a_bad_account_cursor_is_refused(
    runner: SingleThreadedRunner[Any], cursor: str
) -> None:
    view = view_of(runner)
    with pytest.raises(InvalidCursorError):
        view.list_accounts(after=cursor)


def test_bad_transaction_and_statement_cursors_are_refused(
    runner: SingleThreadedRunner[Any],
) -> None:
    view = view_of(runner)
    for cursor in (
        "x",
        paging.encode("statement", 3),
        paging.encode("transactions", "yesterday", uuid4().hex),
    ):
        with pytest.raises(InvalidCursorError):
            view.list_transactions(after=cursor)
    for cursor in (
        "x",
        paging.encode("statement", 0),
        paging.encode("statement", -1),
        paging.encode("statement", "3"),
        paging.encode("statement", 2**70),
        paging.encode("transactions", "2026-01-01T00:00:00+00:00", uuid4().hex),
    ):
        with pytest.raises(InvalidCursorError):
            view.select_statement(uuid4(), after=cursor)
    with pytest.raises(ValueError, match="sort"):
        view.list_accounts(sort="size")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        view.list_accounts(limit=0)


def transfer_history(runner: SingleThreadedRunner[Any]) -> dict[str, UUID]:
    """Alice and Bob with two accounts each, an account of nobody's, and money
    moving between all of them."""
    accounts = runner.get(Accounts)
    commands = runner.get(Commands)
    ids = {
        "alice1": accounts.create_account("Alice main", owner=ALICE),
        "alice2": accounts.create_account("Alice savings", owner=ALICE),
        "bob": accounts.create_account("Bob", owner=BOB),
        "bank": accounts.create_account("Bank float"),
    }
    commands.deposit_funds(ids["alice1"], Decimal("100"), initiated_by=ALICE)
    commands.deposit_funds(ids["bob"], Decimal("50"), initiated_by=BOB)
    commands.deposit_funds(ids["bank"], Decimal("1000"))
    for _ in range(3):
        commands.transfer_funds(
            ids["alice1"], ids["bob"], Decimal("5"), initiated_by=ALICE
        )
        commands.transfer_funds(
            ids["bob"], ids["alice2"], Decimal("2"), initiated_by=BOB
        )
        commands.transfer_funds(
            ids["alice1"], ids["alice2"], Decimal("1"), initiated_by=ALICE
        )
        commands.transfer_funds(ids["bank"], ids["bob"], Decimal("3"))
    commands.withdraw_funds(ids["bob"], Decimal("10000"), initiated_by=BOB)  # fails
    return ids


def test_transactions_page_newest_first_and_a_viewer_sees_only_their_own(
    runner: SingleThreadedRunner[Any],
) -> None:
    ids = transfer_history(runner)
    view = view_of(runner)
    everything = walk(lambda cursor: view.list_transactions(after=cursor, limit=4))
    assert len(everything) == 3 + 12 + 1
    assert len({t.id for t in everything}) == len(everything)
    keys = [(t.created_at, t.id) for t in everything]
    assert keys == sorted(keys, reverse=True)
    assert everything == view.list_transactions(limit=100)[0]

    def visible(t: TransactionView, user: UserRef) -> bool:
        return user in (t.debit_owner, t.credit_owner)

    for user in (ALICE, BOB, CAROL):
        mine = walk(
            lambda cursor, user=user: view.list_transactions(
                viewer_id=user.id, after=cursor, limit=3
            )
        )
        assert mine == [t for t in everything if visible(t, user)]
    assert walk(lambda c: view.list_transactions(viewer_id=CAROL.id, after=c)) == []
    # One account's, as a viewer may see them (an own account to own account
    # transfer is listed once).
    alices = walk(
        lambda cursor: view.list_transactions(
            ids["alice2"], viewer_id=ALICE.id, after=cursor, limit=2
        )
    )
    assert alices == [
        t
        for t in everything
        if ids["alice2"] in (t.debit_account_id, t.credit_account_id)
    ]
    # Bob's account as Alice sees it: the transfers between them only.
    assert walk(
        lambda cursor: view.list_transactions(
            ids["bob"], viewer_id=ALICE.id, after=cursor, limit=2
        )
    ) == [
        t
        for t in everything
        if ids["bob"] in (t.debit_account_id, t.credit_account_id) and visible(t, ALICE)
    ]


def test_a_transaction_shows_who_initiated_it_and_both_owners(
    runner: SingleThreadedRunner[Any],
) -> None:
    ids = transfer_history(runner)
    view = view_of(runner)
    transfers = [
        t
        for t in view.list_transactions(limit=100)[0]
        if (t.debit_account_id, t.credit_account_id) == (ids["alice1"], ids["bob"])
    ]
    assert len(transfers) == 3
    for transfer in transfers:
        assert transfer.status == "succeeded"
        assert (transfer.initiated_by, transfer.debit_owner, transfer.credit_owner) == (
            ALICE,
            ALICE,
            BOB,
        )
        assert transfer.to_json()["debit_owner"] == {
            "id": str(ALICE.id),
            "username": "alice",
        }
    from_the_bank = [
        t
        for t in view.list_transactions(limit=100)[0]
        if t.debit_account_id == ids["bank"]
    ]
    assert {(t.initiated_by, t.debit_owner, t.credit_owner) for t in from_the_bank} == {
        (None, None, BOB)
    }


def feed_of(view: ReadModelRecorder, viewer: UserRef | None) -> list[FeedMessage]:
    """A viewer's whole feed, read in small pages resumed from the last position."""
    messages: list[FeedMessage] = []
    after = 0
    while True:
        page = view.select_feed(after, limit=3, viewer_id=viewer.id if viewer else None)
        if not page:
            return messages
        messages.extend(page)
        after = page[-1].position


def test_each_viewer_gets_the_messages_about_their_own_accounts_and_transactions(
    runner: SingleThreadedRunner[Any],
) -> None:
    ids = transfer_history(runner)
    view = view_of(runner)
    everything = feed_of(view, None)
    assert [m.position for m in everything] == list(range(1, len(everything) + 1))
    assert everything == view.select_feed(0, limit=10_000)
    for viewer in (ALICE, BOB, CAROL):
        mine = feed_of(view, viewer)
        # Exactly the messages whose audience holds them, in order, none twice.
        assert mine == [m for m in everything if viewer.id in m.audience]
        positions = [m.position for m in mine]
        assert positions == sorted(set(positions))
        # Resuming after any position gives the rest, with no gap or duplicate.
        for cut in (0, 1, positions[len(positions) // 2] if positions else 0):
            rest = view.select_feed(cut, limit=10_000, viewer_id=viewer.id)
            assert rest == [m for m in mine if m.position > cut]
    own = {
        ALICE.id: {ids["alice1"], ids["alice2"]},
        BOB.id: {ids["bob"]},
    }
    for viewer in (ALICE, BOB):
        for message in feed_of(view, viewer):
            if "account" in message.data:  # with a balance: own accounts only
                assert UUID(message.data["account"]["id"]) in own[viewer.id]
                assert message.audience == (viewer.id,)
            else:
                transaction = message.data["transaction"]
                owners = {
                    (transaction[side] or {}).get("id")
                    for side in ("debit_owner", "credit_owner")
                }
                assert str(viewer.id) in owners
    assert feed_of(view, CAROL) == []
    # The account nobody owns: staff only.
    about_the_bank = [
        m for m in everything if m.data.get("account", {}).get("id") == str(ids["bank"])
    ]
    assert about_the_bank
    assert all(m.audience == () for m in about_the_bank)


def test_a_transfer_between_two_owners_goes_to_both_without_the_payers_balance(
    runner: SingleThreadedRunner[Any],
) -> None:
    accounts = runner.get(Accounts)
    commands = runner.get(Commands)
    alice = accounts.create_account("Alice", owner=ALICE)
    bob = accounts.create_account("Bob", owner=BOB)
    commands.deposit_funds(alice, Decimal("40"), initiated_by=ALICE)
    view = view_of(runner)
    before = view.max_feed_position()
    transfer = commands.transfer_funds(alice, bob, Decimal("15"), initiated_by=ALICE)
    new = view.select_feed(before)
    by_type = {(m.type, m.data.get("account", {}).get("id")): m for m in new}
    for status in ("pending", "succeeded"):
        message = by_type[(f"transaction_{status}", None)]
        assert set(message.audience) == {ALICE.id, BOB.id}
        assert message.data["transaction"]["id"] == str(transfer)
        assert message.data["transaction"]["debit_owner"]["username"] == "alice"
    debit = by_type[("transaction_appended", str(alice))]
    credit = by_type[("transaction_appended", str(bob))]
    assert debit.audience == (ALICE.id,)
    assert credit.audience == (BOB.id,)
    assert credit.data["entry"]["amount"] == "15.00"
    assert credit.data["entry"]["counterparty"] == {
        "id": str(alice),
        "name": "Alice",
        "owner": {"id": str(ALICE.id), "username": "alice"},
    }
    # Bob's feed of it: the transaction (who paid) and his own balance only.
    bobs = view.select_feed(before, viewer_id=BOB.id)
    assert {m.type for m in bobs} == {
        "transaction_pending",
        "transaction_appended",
        "transaction_succeeded",
    }
    assert "25.00" not in json.dumps([m.to_json() for m in bobs])  # Alice's balance
    assert [m.data["account"]["balance"] for m in bobs if "account" in m.data] == [
        "15.00"
    ]


def test_a_saga_seen_before_its_account_gets_the_owner_when_the_account_opens(
    persistence_env: dict[str, str],
) -> None:
    """Accounts and Sagas are followed apart: the Created event may come second."""
    env = {**persistence_env, "CREATE_TABLE": "y"}
    commands, sagas, accounts = Commands(env), Sagas(env), Accounts(env)
    interface = InterfaceApplication(env)
    try:
        sagas.follow(commands.name, commands.notification_log)
        accounts.follow(sagas.name, sagas.notification_log)
        sagas.follow(accounts.name, accounts.notification_log)
        interface.follow(sagas.name, sagas.notification_log)
        interface.follow(accounts.name, accounts.notification_log)
        account = accounts.create_account("Late", owner=ALICE)
        deposit = commands.deposit_funds(account, Decimal("5"), initiated_by=ALICE)
        sagas.pull_and_process(commands.name)
        interface.pull_and_process(sagas.name)  # before the account is known
        pending = interface.view.get_transaction(deposit)
        assert pending is not None
        assert pending.credit_owner is None
        assert interface.view.select_feed(0, viewer_id=ALICE.id) == []
        interface.pull_and_process(accounts.name)  # Created: the owner fills in
        filled = interface.view.get_transaction(deposit)
        assert filled is not None
        assert filled.credit_owner == ALICE
        assert filled.initiated_by == ALICE
        alices = interface.view.select_feed(0, viewer_id=ALICE.id)
        assert [m.type for m in alices] == ["account_opened", "transaction_pending"]
    finally:
        for app in (commands, sagas, accounts, interface):
            app.close()


def old_shape(accounts: Accounts, *events: Any) -> list[StoredEvent]:
    """Stored events as the previous version wrote them: no owner, no initiator,
    no counterparty."""
    stored = []
    for event in events:
        item = accounts.mapper.to_stored_event(event)
        state = accounts.mapper.transcoder.decode(item.state)
        for name in ("owner", "initiated_by", "counterparty_id"):
            state.pop(name, None)
        stored.append(
            StoredEvent(
                originator_id=item.originator_id,
                originator_version=item.originator_version,
                topic=item.topic,
                state=accounts.mapper.transcoder.encode(state),
            )
        )
    return stored


def test_events_of_the_older_shape_still_project(
    persistence_env: dict[str, str],
) -> None:
    env = {**persistence_env, "CREATE_TABLE": "y"}
    accounts = Accounts(env)
    interface = InterfaceApplication(env)
    try:
        account = BankAccount("Seed")
        account.append_transaction(Decimal("12.50"), uuid4())
        account.append_transaction(Decimal("-2.50"), uuid4())
        account.set_overdraft_limit(Decimal("10"))
        accounts.recorder.insert_events(old_shape(accounts, *account.collect_events()))
        interface.follow(accounts.name, accounts.notification_log)
        interface.pull_and_process(accounts.name)
        row = interface.view.get_account(account.id)
        assert row is not None
        assert (row.name, row.owner, row.balance, row.overdraft_limit) == (
            "Seed",
            None,
            Decimal("10.00"),
            Decimal("10.00"),
        )
        entries, cursor = interface.view.select_statement(account.id)
        assert cursor is None
        assert [(e.seq, e.kind, e.amount, e.balance) for e in entries] == [
            (2, "withdrawal", Decimal("-2.50"), Decimal("10.00")),
            (1, "deposit", Decimal("12.50"), Decimal("12.50")),
        ]
        assert {(e.initiated_by, e.counterparty) for e in entries} == {(None, None)}
        # Nobody's account: in the staff feed only.
        feed = interface.view.select_feed(0)
        assert len(feed) == 4
        assert {m.audience for m in feed} == {()}
    finally:
        accounts.close()
        interface.close()


@pytest.mark.parametrize(
    "store",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def test_a_view_of_the_older_shape_is_refused_until_it_is_rebuilt(
    store: str, request: pytest.FixtureRequest
) -> None:
    env = {**request.getfixturevalue(f"{store}_env"), "CREATE_TABLE": "y"}
    interface = InterfaceApplication(env)
    view: Any = interface.view
    try:
        # The previous version's view had no version table.
        drop_version_table(view)
    finally:
        interface.close()
    with pytest.raises(ReadModelOutdatedError, match="rebuild-read-model"):
        InterfaceApplication(env)
    with pytest.raises(ReadModelOutdatedError, match="rebuild-read-model"):
        InterfaceApplication({**env, "CREATE_TABLE": "n"})
    interface = InterfaceApplication(
        {**env, "CREATE_TABLE": "n"}, check_read_model=False
    )
    try:
        interface.view.reset_view(["Accounts", "Sagas"])  # type: ignore[attr-defined]
    finally:
        interface.close()
    InterfaceApplication(env).close()


def drop_version_table(view: Any) -> None:
    """Makes a view look like one the previous version made."""
    datastore = view.datastore
    if hasattr(view, "version_table") and hasattr(datastore, "schema"):
        with datastore.transaction(commit=True) as cursor:
            cursor.execute(f'DROP TABLE "{datastore.schema}"."{view.version_table}"')
    elif hasattr(view, "version_table"):
        from sqlalchemy import text

        with view.transaction(commit=True) as session:
            session.execute(text(f"DROP TABLE {view.version_table}"))
    else:
        with datastore.transaction(commit=True) as cursor:
            cursor.execute("DROP TABLE view_version")

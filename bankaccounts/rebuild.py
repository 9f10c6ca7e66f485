"""`bankaccounts rebuild-read-model`: the interface's view and feed, made again.

The view is a projection of the events of Accounts and Sagas: if it is lost or
wrong (a bug fixed since, a table changed, a row edited by hand), it can be dropped
and made again from them. The check compares the view with the aggregates
themselves (each account's name, owner, balance, limit and closed flag, and its
statement's length and last balance; each transaction's kind, amount and status),
not with another projection, so it also finds a fault of the projection.

A view made by an older version (read model version 1: no owners, statements or
feed audiences) is refused by the server and the workers, which say to run this
command: the rebuild drops those tables and makes them in the current shape, then
fills them (statements and audiences included) from the events.

A rebuild resets the view in one transaction (tables dropped and made again, the
positions in the upstreams forgotten), then follows Accounts, then Sagas, a page per
commit: stopped halfway, the view is consistent with its tracking records, and the
Interface worker or the embedded server carries on from where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from eventsourcing.utils import get_topic

from bankaccounts.domainmodel import OPENED_TOPIC, BankAccount
from bankaccounts.readmodel import AccountView, ReadModelOutdatedError
from bankaccounts.system.interface import SAGA_KINDS
from bankaccounts.system.sagas import AbortedTransaction
from bankaccounts.validation import ZERO

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from decimal import Decimal
    from uuid import UUID

    from eventsourcing.application import Application

    from bankaccounts.readmodel import ReadModelRecorder, TransactionView
    from bankaccounts.system.accounts import Accounts
    from bankaccounts.system.interface import InterfaceApplication
    from bankaccounts.system.sagas import Saga, Sagas

logger = logging.getLogger("bankaccounts.rebuild")

#: Rows read per page when the check walks the whole view.
CHECK_PAGE = 1000

#: Differences listed in full; beyond, only counted.
SHOWN_DIFFERENCES = 50


class ResettableView(Protocol):
    """A recorder whose view can be dropped and made again (SQLite, PostgreSQL)."""

    def reset_view(self, upstreams: Sequence[str]) -> None:
        """Drops the view's tables and forgets the upstreams' positions."""


class Progress:
    """ "Accounts: 1500 of 4000 events (37%)", on one line of a terminal, or a line
    a second (and the last) in a log."""

    def __init__(self, stream: TextIO | None = None, interval: float = 1.0) -> None:
        """Writes to stream (stderr)."""
        self.stream = stream or sys.stderr
        self.interval = interval
        self.is_terminal = self.stream.isatty()
        self.last = time.monotonic()

    def update(self, label: str, done: int, total: int, *, final: bool = False) -> None:
        """Shows how far label has got."""
        now = time.monotonic()
        if not final and now - self.last < self.interval:
            return
        self.last = now
        percent = f" ({100 * done // total}%)" if total else ""
        line = f"{label}: event {done} of {total}{percent}"
        if self.is_terminal:
            end = "\n" if final else ""
            self.stream.write(f"\r\x1b[K{line}{end}")
        else:
            self.stream.write(f"{line}\n")
        self.stream.flush()


@dataclass
class Comparison:
    """What the check found: the differences, and how much it compared."""

    accounts: int = 0
    transactions: int = 0
    differences: list[str] = field(default_factory=list)

    def report(self) -> str:
        """The differences in words, at most SHOWN_DIFFERENCES of them."""
        compared = (
            f"{_count(self.accounts, 'account')} and "
            f"{_count(self.transactions, 'transaction')} compared"
        )
        if not self.differences:
            return f"The view agrees with the aggregates ({compared})."
        lines = [
            f"The view differs from the aggregates in {len(self.differences)} "
            f"{'place' if len(self.differences) == 1 else 'places'} ({compared}):",
            *(f"  {line}" for line in self.differences[:SHOWN_DIFFERENCES]),
        ]
        if len(self.differences) > SHOWN_DIFFERENCES:
            lines.append(f"  ... and {len(self.differences) - SHOWN_DIFFERENCES} more")
        return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _notifications(
    app: Application[Any], topics: Sequence[str], page: int = 500
) -> Iterator[tuple[int, Any]]:
    """The app's events of these topics, with their positions, a page at a time."""
    position = 0
    while True:
        notifications = app.recorder.select_notifications(
            start=position, limit=page, topics=topics, inclusive_of_start=False
        )
        if not notifications:
            return
        for notification in notifications:
            yield notification.id, app.mapper.to_domain_event(notification)
        position = notifications[-1].id


def _differ(
    differences: list[str], what: str, field_name: str, in_view: Any, actual: Any
) -> None:
    if in_view != actual:
        differences.append(
            f"{what}: {field_name} is {in_view} in the view, {actual} in the events"
        )


def compare(
    view: ReadModelRecorder,
    accounts: Accounts,
    sagas: Sagas,
    progress: Progress | None = None,
) -> Comparison:
    """Compares each account and transaction of the view with its aggregate."""
    result = Comparison()
    differences = result.differences
    in_view = {account.id: account for account in _all_accounts(view)}
    total = accounts.recorder.max_notification_id() or 0
    opened = [get_topic(BankAccount.Created), OPENED_TOPIC]  # and its old name
    for position, event in _notifications(accounts, opened):
        account: BankAccount = accounts.repository.get(event.originator_id)
        row = in_view.pop(account.id, None)
        result.accounts += 1
        what = f"account {account.id} ({account.name or 'no name'})"
        if row is None:
            differences.append(f"{what}: missing from the view")
        else:
            actual = AccountView.from_account(account)
            for name in ("name", "owner", "balance", "overdraft_limit", "is_closed"):
                _differ(
                    differences, what, name, getattr(row, name), getattr(actual, name)
                )
            _check_statement(differences, what, view, account, row)
        if progress is not None:
            progress.update("checking Accounts", position, total)
    if progress is not None:
        progress.update("checking Accounts", total, total, final=True)
    differences.extend(
        f"account {account_id}: in the view, but never opened" for account_id in in_view
    )

    transactions = {t.id: t for t in _all_transactions(view)}
    total = sagas.recorder.max_notification_id() or 0
    for position, transaction_id, kind, amount, status in _transactions(sagas):
        result.transactions += 1
        what = f"{kind} {transaction_id}"
        transaction = transactions.pop(transaction_id, None)
        if transaction is None:
            differences.append(f"{what}: missing from the view")
        else:
            _differ(differences, what, "kind", transaction.kind, kind)
            _differ(differences, what, "amount", transaction.amount, amount)
            _differ(differences, what, "status", transaction.status, status)
        if progress is not None:
            progress.update("checking Sagas", position, total)
    if progress is not None:
        progress.update("checking Sagas", total, total, final=True)
    differences.extend(
        f"transaction {transaction_id}: in the view, but never requested"
        for transaction_id in transactions
    )
    return result


def _all_accounts(view: ReadModelRecorder) -> Iterator[AccountView]:
    cursor: str | None = None
    while True:
        page, cursor = view.list_accounts(after=cursor, limit=CHECK_PAGE)
        yield from page
        if cursor is None:
            return


def _all_transactions(view: ReadModelRecorder) -> Iterator[TransactionView]:
    cursor: str | None = None
    while True:
        page, cursor = view.list_transactions(after=cursor, limit=CHECK_PAGE)
        yield from page
        if cursor is None:
            return


def _check_statement(
    differences: list[str],
    what: str,
    view: ReadModelRecorder,
    account: BankAccount,
    row: AccountView,
) -> None:
    """The statement's newest entry: the account's balance after it, and the seq
    the account's row counts up to."""
    entries, _ = view.select_statement(account.id, limit=1)
    last_balance = entries[0].balance if entries else ZERO
    last_seq = entries[0].seq if entries else 0
    _differ(differences, what, "statement's balance", last_balance, account.balance)
    if last_seq != row.statement_seq:
        differences.append(
            f"{what}: the statement ends at entry {last_seq}, the account's row "
            f"counts {row.statement_seq}"
        )


def _transactions(sagas: Sagas) -> Iterator[tuple[int, UUID, str, Decimal, str]]:
    """Each transaction clients see: id, kind, amount, and status from its saga."""
    created = {get_topic(cls.Created): kind for cls, kind in SAGA_KINDS.items()}
    aborted = get_topic(AbortedTransaction.Recorded)
    for position, event in _notifications(sagas, [*created, aborted]):
        if get_topic(type(event)) == aborted:
            yield position, event.transaction_id, event.kind, event.amount, "failed"
            continue
        saga: Saga = sagas.get_saga(event.originator_id)
        status = (
            "succeeded"
            if saga.has_succeeded
            else "failed"
            if saga.has_errored
            else "pending"
        )
        kind = created[get_topic(type(event))]
        yield position, saga.id, kind, event.amount, status


def rebuild(
    interface: InterfaceApplication,
    upstreams: Sequence[Application[Any]],
    progress: Progress | None = None,
) -> int:
    """Resets the view, then processes every event of the upstreams; counts them.

    Accounts comes first, so that a saga's error message names its account.
    """
    recorder: ResettableView = interface.recorder  # type: ignore[assignment]
    recorder.reset_view([upstream.name for upstream in upstreams])
    processed = 0
    for upstream in upstreams:
        interface.follow(upstream.name, upstream.notification_log)
        total = upstream.recorder.max_notification_id() or 0
        position = 0
        for notifications in interface.pull_notifications(
            upstream.name, start=0, stop=total, inclusive_of_start=False
        ):
            jobs = interface.convert_notifications(
                upstream.name, interface.filter_received_notifications(notifications)
            )
            if jobs:
                interface.process_events(jobs)
                processed += len(jobs)
            position = notifications[-1].id
            if progress is not None:
                progress.update(f"rebuilding from {upstream.name}", position, total)
        if progress is not None:
            progress.update(
                f"rebuilding from {upstream.name}", total, total, final=True
            )
    return processed


def run(*, dry_run: bool, data_dir: str | None, out: TextIO | None = None) -> int:
    """The command: 0 if the view (rebuilt or not) agrees with the aggregates, 1 if
    not or if it may not be rebuilt now, 2 if there is nothing to rebuild."""
    from bankaccounts.deploy.bootstrap import data_directory, system_env

    out = out or sys.stdout
    environ = dict(os.environ)
    module = environ.get("PERSISTENCE_MODULE", "")
    with contextlib.ExitStack() as stack:
        if module == "eventsourcing.postgres":
            env = _postgres_env(environ)
            status = _hold_interface_lock(stack, env, dry_run=dry_run)
        elif module in ("", "eventsourcing.sqlite"):
            directory = data_directory(data_dir)
            env = system_env(data_dir) if directory is not None else environ
            status = _hold_data_directory(stack, directory, env, dry_run=dry_run)
        else:
            logger.error(
                "nothing to rebuild: %s keeps the events in memory only", module
            )
            return 2
        if status is not None:
            return status
        return _check_or_rebuild(env, dry_run=dry_run, out=out)
    return 1  # pragma: no cover (mypy: the with block always returns)


def _postgres_env(environ: Mapping[str, str]) -> dict[str, str]:
    from bankaccounts.deploy.bootstrap import distributed_env
    from bankaccounts.deploy.preflight import WORKER_POOL

    return distributed_env({**WORKER_POOL, **environ})


def _hold_interface_lock(
    stack: contextlib.ExitStack, env: Mapping[str, str], *, dry_run: bool
) -> int | None:
    """Takes the Interface worker's lock (a worker started meanwhile waits for it).

    None to go on, or the exit status if the database is unavailable or the worker
    runs (for a dry run, a note that the view may lag behind, and on).
    """
    from bankaccounts.deploy.preflight import (
        DISTRIBUTED_TABLES,
        DatabaseUnavailableError,
        check_database,
        connect,
        schema_of,
    )
    from bankaccounts.deploy.worker import lock_key

    schema = schema_of(env)
    try:
        check_database(env, tables=DISTRIBUTED_TABLES)
        connection = stack.enter_context(connect(env))
    except DatabaseUnavailableError as error:
        logger.error("%s", error)
        return 1
    row = connection.execute(
        "SELECT pg_try_advisory_lock(%s)", (lock_key(schema, "Interface"),)
    ).fetchone()
    if row and row[0]:
        return None
    if dry_run:
        logger.warning(
            "the Interface worker is running: the view may lag a moment behind "
            "the aggregates, and show differences that are only that"
        )
        return None
    logger.error(
        "the Interface worker is running (it holds its lock in schema %s): stop "
        "it first (and the Sagas and Accounts workers, so the events stay put), "
        "then run rebuild-read-model again",
        schema,
    )
    return 1


def _hold_data_directory(
    stack: contextlib.ExitStack,
    directory: Any,
    env: Mapping[str, str],
    *,
    dry_run: bool,
) -> int | None:
    """Takes the data directory's lock: the embedded server must not be running."""
    from bankaccounts.deploy.datalock import DataDirectoryInUseError, DataDirectoryLock

    if directory is None:
        # SQLite files named one by one: nothing tells whether a server uses them.
        logger.warning(
            "make sure no server uses %s", env.get("INTERFACE_SQLITE_DBNAME")
        )
        return None
    if not (directory / "interface.sqlite").exists():
        logger.error("nothing to rebuild: no bank in %s", directory)
        return 2
    lock = DataDirectoryLock(directory)
    try:
        lock.acquire()
    except DataDirectoryInUseError as error:
        if dry_run:
            logger.warning("%s: the view may lag a moment behind the aggregates", error)
            return None
        logger.error("%s: stop the server first", error)
        return 1
    stack.callback(lock.release)
    return None


def _check_or_rebuild(env: Mapping[str, str], *, dry_run: bool, out: TextIO) -> int:
    from bankaccounts.system.accounts import Accounts
    from bankaccounts.system.interface import InterfaceApplication
    from bankaccounts.system.sagas import Sagas

    progress = Progress()
    with contextlib.ExitStack() as apps:
        accounts = Accounts(env)
        apps.callback(accounts.close)
        sagas = Sagas(env)
        apps.callback(sagas.close)
        if dry_run:
            try:
                interface = InterfaceApplication(env)
            except ReadModelOutdatedError as error:
                print(f"The view cannot be checked: {error}.", file=out, flush=True)
                return 1
        else:
            # Tables of an older shape are dropped and made again by the reset
            # (the Interface makes none of its own, and takes them as they are).
            interface = InterfaceApplication(
                {**env, "INTERFACE_CREATE_TABLE": "n"}, check_read_model=False
            )
        apps.callback(interface.close)
        if not dry_run:
            started = time.monotonic()
            try:
                processed = rebuild(interface, [accounts, sagas], progress)
            except KeyboardInterrupt:
                logger.error(
                    "interrupted: the view is rebuilt in part; run "
                    "rebuild-read-model again, or start the Interface worker (or "
                    "the server), which carries on from where it stopped"
                )
                return 130
            print(
                f"Rebuilt the read model from {processed} events in "
                f"{time.monotonic() - started:.1f} s.",
                file=out,
                flush=True,
            )
        comparison = compare(interface.view, accounts, sagas, progress)
    print(comparison.report(), file=out, flush=True)
    return 1 if comparison.differences else 0

"""The interface's read model: account and transaction views and the live feed.

The views are written by a process recorder in the same transaction as the tracking
record of the event that changed them, so each event changes them exactly once and a
restart resumes where it stopped. This module holds the rows and messages;
recorder.py the recorder interface and the in-memory (POPO) recorder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    from bankaccounts.domainmodel import BankAccount, UserRef


TransactionKind = Literal["deposit", "withdrawal", "transfer"]
TransactionStatus = Literal["pending", "succeeded", "failed"]
#: What moved money on a statement line: a transaction's kind, or the refund of a
#: transfer whose credit failed.
EntryKind = Literal["deposit", "withdrawal", "transfer", "refund"]
#: How list_accounts orders: oldest first, by name, or largest balance first.
AccountSort = Literal["opened", "name", "balance"]
ACCOUNT_SORTS: tuple[AccountSort, ...] = ("opened", "name", "balance")
#: Names longer than this are sorted and searched by their first characters only.
SORT_NAME_LENGTH = 200


@dataclass(frozen=True)
class AccountView:
    """An account as clients see it."""

    id: UUID
    name: str | None
    balance: Decimal
    overdraft_limit: Decimal
    is_closed: bool
    opened_at: datetime
    updated_at: datetime
    owner: UserRef | None = None
    #: How many statement entries the account has: the seq of its last one.
    statement_seq: int = field(default=0, compare=False, repr=False)

    @classmethod
    def from_account(cls, account: BankAccount) -> AccountView:
        """The view of an aggregate (the one way to show one)."""
        return cls(
            id=account.id,
            name=account.name,
            balance=account.balance,
            overdraft_limit=account.overdraft_limit,
            is_closed=account.is_closed,
            opened_at=account.created_on,
            updated_at=account.modified_on,
            owner=getattr(account, "owner", None),
        )

    def to_json(self) -> dict[str, Any]:
        """The account as JSON-ready values, money as decimal strings."""
        return {
            "id": str(self.id),
            "name": self.name,
            "balance": str(self.balance),
            "overdraft_limit": str(self.overdraft_limit),
            "is_closed": self.is_closed,
            "opened_at": self.opened_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "owner": _user_json(self.owner),
        }

    @property
    def sort_name(self) -> str:
        """The name as the name sort and the search compare it (case folded)."""
        return sort_name(self.name)

    @property
    def audience(self) -> tuple[UUID, ...]:
        """Who may see the account besides staff: its owner."""
        return audience(self.owner)

    @property
    def label(self) -> str:
        """How an error message names the account."""
        return f"{self.name}'s account" if self.name else f"account {str(self.id)[:8]}"


@dataclass(frozen=True)
class TransactionView:
    """A deposit, withdrawal or transfer and how it ended."""

    id: UUID
    kind: TransactionKind
    debit_account_id: UUID | None
    credit_account_id: UUID | None
    amount: Decimal
    status: TransactionStatus
    error: str | None
    created_at: datetime
    updated_at: datetime
    initiated_by: UserRef | None = None
    debit_owner: UserRef | None = None
    credit_owner: UserRef | None = None

    def to_json(self) -> dict[str, Any]:
        """The transaction as JSON-ready values."""
        return {
            "id": str(self.id),
            "kind": self.kind,
            "debit_account_id": _str_or_none(self.debit_account_id),
            "credit_account_id": _str_or_none(self.credit_account_id),
            "amount": str(self.amount),
            "status": self.status,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "initiated_by": _user_json(self.initiated_by),
            "debit_owner": _user_json(self.debit_owner),
            "credit_owner": _user_json(self.credit_owner),
        }

    @property
    def audience(self) -> tuple[UUID, ...]:
        """Who may see the transaction besides staff: both accounts' owners."""
        return audience(self.debit_owner, self.credit_owner)


@dataclass(frozen=True)
class AccountRef:
    """The other account of a transfer, as a statement names it (no balance)."""

    id: UUID
    name: str | None = None
    owner: UserRef | None = None

    def to_json(self) -> dict[str, Any]:
        """{"id", "name", "owner"}."""
        return {"id": str(self.id), "name": self.name, "owner": _user_json(self.owner)}


@dataclass(frozen=True)
class StatementEntry:
    """One line of an account's statement: money in or out, and the balance after."""

    account_id: UUID
    seq: int  # 1, 2, ... per account
    transaction_id: UUID | None
    kind: EntryKind
    amount: Decimal  # signed: a debit is negative
    balance: Decimal  # after this entry
    counterparty: AccountRef | None
    initiated_by: UserRef | None
    at: datetime

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON-ready values, money as decimal strings."""
        return {
            "seq": self.seq,
            "transaction_id": _str_or_none(self.transaction_id),
            "kind": self.kind,
            "at": self.at.isoformat(),
            "amount": str(self.amount),
            "balance": str(self.balance),
            "counterparty": None
            if self.counterparty is None
            else self.counterparty.to_json(),
            "initiated_by": _user_json(self.initiated_by),
        }


@dataclass
class FeedMessage:
    """One change pushed to clients; the recorder gives it its position.

    The audience are the users who may see it besides staff (none: staff only).
    """

    type: str
    data: dict[str, Any]
    position: int = 0
    audience: tuple[UUID, ...] = ()

    @property
    def transaction_id(self) -> UUID | None:
        """The transaction the message is about (None: it is about no transaction)."""
        value = self.data.get("transaction_id")
        transaction = self.data.get("transaction")
        if value is None and isinstance(transaction, dict):
            value = transaction.get("id")
        return UUID(value) if isinstance(value, str) else None

    def is_for(self, viewer_id: UUID | None) -> bool:
        """True if the viewer may see it (None: staff, who see everything)."""
        return viewer_id is None or viewer_id in self.audience

    def to_json(self) -> dict[str, Any]:
        """The message as clients receive it."""
        return {"type": self.type, "position": self.position, **self.data}

    def encode(self) -> str:
        """The stored form: type and data without the position."""
        return json.dumps({"type": self.type, **self.data}, separators=(",", ":"))

    def encode_audience(self) -> str:
        """The stored form of the audience: hex ids, space-separated."""
        return " ".join(user_id.hex for user_id in self.audience)

    @classmethod
    def decode(cls, position: int, text: str, audience: str | None = "") -> FeedMessage:
        """Reads a stored message (and its stored audience) back."""
        data = json.loads(text)
        return cls(
            type=data.pop("type"),
            data=data,
            position=position,
            audience=tuple(UUID(user_id) for user_id in (audience or "").split()),
        )


@dataclass(frozen=True)
class TransactionEvent:
    """An upstream event of a transaction, where it is stored: the timeline's index.

    The interface writes one for each TransactionAppended and ErrorRecorded it
    processes, so a transaction's events in Accounts are found by its id alone.
    """

    transaction_id: UUID
    application: str  # the upstream that stored the event
    originator_id: UUID
    originator_version: int
    position: int  # the event's notification id in that application
    type: str  # the event class's name
    timestamp: datetime


@dataclass(frozen=True)
class FeedEntry:
    """A feed message about a transaction, and when the interface wrote it."""

    transaction_id: UUID
    at: datetime
    message: FeedMessage


@dataclass
class ViewChanges:
    """What one processed event, or a page of them, changes in the read model.

    Accounts and transactions hold one row each, as the changes leave them; the
    statement and the feed hold every entry and message, in order.
    """

    accounts: list[AccountView] = field(default_factory=list)
    transactions: list[TransactionView] = field(default_factory=list)
    feed: list[FeedMessage] = field(default_factory=list)
    statement: list[StatementEntry] = field(default_factory=list)
    transaction_events: list[TransactionEvent] = field(default_factory=list)
    _indexes: dict[int, dict[UUID, int]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __bool__(self) -> bool:
        """True if anything changes."""
        return bool(
            self.accounts
            or self.transactions
            or self.feed
            or self.statement
            or self.transaction_events
        )

    def extend(self, other: ViewChanges) -> None:
        """Adds the changes of a later event; its rows replace earlier ones."""
        _replace_rows(self.accounts, self._index(self.accounts), other.accounts)
        _replace_rows(
            self.transactions, self._index(self.transactions), other.transactions
        )
        self.feed.extend(other.feed)
        self.statement.extend(other.statement)
        self.transaction_events.extend(other.transaction_events)

    def get_account(self, account_id: UUID) -> AccountView | None:
        """The account as these changes leave it, or None if they don't touch it."""
        index = self._index(self.accounts).get(account_id)
        return None if index is None else self.accounts[index]

    def get_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The transaction as these changes leave it, or None if untouched."""
        index = self._index(self.transactions).get(transaction_id)
        return None if index is None else self.transactions[index]

    def _index(self, rows: list[Any]) -> dict[UUID, int]:
        index: dict[UUID, int] = self._indexes.setdefault(id(rows), {})
        if len(index) != len(rows):
            index.clear()
            index.update((row.id, position) for position, row in enumerate(rows))
        return index


def _replace_rows(rows: list[Any], index: dict[UUID, int], new_rows: list[Any]) -> None:
    for row in new_rows:
        position = index.get(row.id)
        if position is None:
            index[row.id] = len(rows)
            rows.append(row)
        else:
            rows[position] = row


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _user_json(user: UserRef | None) -> dict[str, str] | None:
    return None if user is None else user.to_json()


def sort_name(name: str | None) -> str:
    """A name as sorting and searching compare it: case folded, at most 200 chars."""
    return (name or "").casefold()[:SORT_NAME_LENGTH]


def audience(*users: UserRef | None) -> tuple[UUID, ...]:
    """The distinct ids of the users given, in order, without the unknown ones."""
    return tuple(dict.fromkeys(user.id for user in users if user is not None))

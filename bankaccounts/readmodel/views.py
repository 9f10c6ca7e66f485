"""The interface's read model: account and transaction views and the live feed.

The views are written by a process recorder in the same transaction as the tracking
record of the event that changed them, so each event changes them exactly once and a
restart resumes where it stopped. This module holds the rows, the recorder interface
and the in-memory (POPO) recorder; sqlite.py and postgres.py hold the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal
    from uuid import UUID


TransactionKind = Literal["deposit", "withdrawal", "transfer"]
TransactionStatus = Literal["pending", "succeeded", "failed"]


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
        }

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
        }


@dataclass
class FeedMessage:
    """One change pushed to clients; the recorder gives it its position."""

    type: str
    data: dict[str, Any]
    position: int = 0

    def to_json(self) -> dict[str, Any]:
        """The message as clients receive it."""
        return {"type": self.type, "position": self.position, **self.data}

    def encode(self) -> str:
        """The stored form: type and data without the position."""
        return json.dumps({"type": self.type, **self.data}, separators=(",", ":"))

    @classmethod
    def decode(cls, position: int, text: str) -> FeedMessage:
        """Reads a stored message back."""
        data = json.loads(text)
        return cls(type=data.pop("type"), data=data, position=position)


@dataclass
class ViewChanges:
    """What one processed event, or a page of them, changes in the read model.

    Accounts and transactions hold one row each, as the changes leave them; the feed
    holds every message, in order.
    """

    accounts: list[AccountView] = field(default_factory=list)
    transactions: list[TransactionView] = field(default_factory=list)
    feed: list[FeedMessage] = field(default_factory=list)
    _indexes: dict[int, dict[UUID, int]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __bool__(self) -> bool:
        """True if anything changes."""
        return bool(self.accounts or self.transactions or self.feed)

    def extend(self, other: ViewChanges) -> None:
        """Adds the changes of a later event; its rows replace earlier ones."""
        _replace_rows(self.accounts, self._index(self.accounts), other.accounts)
        _replace_rows(
            self.transactions, self._index(self.transactions), other.transactions
        )
        self.feed.extend(other.feed)

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

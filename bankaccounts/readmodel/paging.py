"""Page cursors: where the next page of a keyset read starts, as an opaque string.

A cursor holds the sort key of the last row of a page (and which read and order it
belongs to), as URL-safe base64 of a short JSON list. Every recorder makes and reads
the same cursors, so each of them pages by `WHERE key > cursor ORDER BY key LIMIT n`
on an index: the cost of a page does not grow with how far into the rows it is.
A cursor that is not one of ours, or of another read, raises InvalidCursorError.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from bankaccounts.exceptions import InvalidCursorError
from bankaccounts.readmodel.views import ACCOUNT_SORTS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from bankaccounts.readmodel.views import (
        AccountSort,
        AccountView,
        StatementEntry,
        TransactionView,
    )

T = TypeVar("T")

#: The longest cursor read (ours are under 200 characters).
MAX_CURSOR_LENGTH = 1000
#: Seq values are positive 63-bit integers in every store.
MAX_SEQ = 2**63 - 1
#: Balances in a cursor are whole cents below this (PostgreSQL's numeric(16,2)).
MAX_BALANCE = Decimal(10) ** 14
CENT = Decimal("0.01")


def encode(kind: str, *values: str | int) -> str:
    """An opaque URL-safe cursor of a read's kind and a row's sort key."""
    text = json.dumps([kind, *values], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str, kind: str, size: int) -> list[Any]:
    """The sort key in a cursor of this kind (size values); InvalidCursorError if
    it is not such a cursor."""
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        raise InvalidCursorError(_MESSAGE)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursorError(_MESSAGE) from None
    if (
        not isinstance(values, list)
        or len(values) != size + 1
        or values[0] != kind
        or not all(_is_key_value(v) for v in values)
    ):
        raise InvalidCursorError(_MESSAGE)
    return values[1:]


_MESSAGE = "cursor is not valid: use the one given with the previous page"


def _is_key_value(value: object) -> bool:
    """True for an int, or text every store can take as a parameter (no NUL, which
    PostgreSQL's text refuses, and no lone surrogate, which UTF-8 cannot encode)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return (
        isinstance(value, str)
        and "\x00" not in value
        and not any("\ud800" <= c <= "\udfff" for c in value)
    )


def timestamp(value: datetime) -> str:
    """A time as cursors (and SQLite's columns) hold it: UTC, in microseconds, so
    that the strings sort as the times do."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse(parse: Callable[[Any], T], value: Any) -> T:
    try:
        return parse(value)
    except (TypeError, ValueError, InvalidOperation, AttributeError, OverflowError):
        raise InvalidCursorError(_MESSAGE) from None


def _aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(value)
    return parsed.astimezone(UTC)


def account_cursor(sort: AccountSort, account: AccountView) -> str:
    """The cursor of the page after this account, in this order."""
    return encode(f"accounts:{sort}", *_account_key(sort, account), account.id.hex)


def _account_key(sort: AccountSort, account: AccountView) -> tuple[str]:
    if sort == "name":
        return (account.sort_name,)
    if sort == "balance":
        return (str(account.balance),)
    return (timestamp(account.opened_at),)


def read_account_cursor(
    sort: AccountSort, cursor: str
) -> tuple[datetime | str | Decimal, UUID]:
    """The sort key (opened_at, sort name or balance) and id an account cursor holds."""
    check_sort(sort)
    value, account_id = decode(cursor, f"accounts:{sort}", 2)
    key: datetime | str | Decimal
    if sort == "name":
        key = _parse(str, value)
    elif sort == "balance":
        key = _parse(_decimal, value)
    else:
        key = _parse(_aware, value)
    return key, _parse(UUID, account_id)


def _decimal(value: str) -> Decimal:
    """A balance as cursors hold it: cents, within what every store holds."""
    number = Decimal(value)
    if (
        not number.is_finite()
        or abs(number) >= MAX_BALANCE
        or number != number.quantize(CENT)
    ):
        raise ValueError(value)
    return number


def check_sort(sort: str) -> None:
    """Raises ValueError for an order list_accounts does not know."""
    if sort not in ACCOUNT_SORTS:
        msg = f"sort must be one of {', '.join(ACCOUNT_SORTS)}"
        raise ValueError(msg)


def transaction_cursor(transaction: TransactionView) -> str:
    """The cursor of the page after this transaction (newest first)."""
    return encode("transactions", timestamp(transaction.created_at), transaction.id.hex)


def read_transaction_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The created_at and id a transactions cursor holds."""
    created_at, transaction_id = decode(cursor, "transactions", 2)
    return _parse(_aware, created_at), _parse(UUID, transaction_id)


def statement_cursor(entry: StatementEntry) -> str:
    """The cursor of the page after this entry (newest first)."""
    return encode("statement", entry.seq)


def read_statement_cursor(cursor: str) -> int:
    """The seq a statement cursor holds."""
    (seq,) = decode(cursor, "statement", 1)
    if not isinstance(seq, int) or not 0 < seq <= MAX_SEQ:
        raise InvalidCursorError(_MESSAGE)
    return seq


def page(
    rows: Sequence[T], limit: int, cursor_of: Callable[[T], str]
) -> tuple[list[T], str | None]:
    """The first limit rows of limit + 1 read, and the next page's cursor if the
    extra row shows there is one."""
    if len(rows) > limit:
        shown = list(rows[:limit])
        return shown, cursor_of(shown[-1])
    return list(rows), None


def check_limit(limit: int) -> int:
    """The limit, if at least 1 (ValueError otherwise)."""
    if not isinstance(limit, int) or limit < 1:
        msg = "limit must be a positive integer"
        raise ValueError(msg)
    return limit


def hex_prefix_range(search: str) -> tuple[str, str] | None:
    """The lowest and highest hex ids that start with the search's hex digits
    (hyphens ignored), or None if it is not the start of an id."""
    digits = search.strip().replace("-", "").lower()
    if not 0 < len(digits) <= 32 or any(c not in "0123456789abcdef" for c in digits):
        return None
    return digits.ljust(32, "0"), digits.ljust(32, "f")


def like_pattern(search: str) -> str:
    """A LIKE pattern (escape character '!') for the case-folded search anywhere."""
    folded = search.strip().casefold()
    escaped = folded.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"

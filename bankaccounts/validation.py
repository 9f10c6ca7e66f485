"""Checks of input at the edge: sums of money, account names and ids."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from uuid import UUID

from bankaccounts.exceptions import (
    InvalidAccountIdError,
    InvalidAccountNameError,
    InvalidAmountError,
)

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MAX_AMOUNT = Decimal("1000000000000.00")
MAX_NAME_LENGTH = 100


def to_money(value: object, *, name: str = "amount") -> Decimal:
    """Converts a Decimal, str or int to a finite Decimal with two places, or raises."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, str, int)):
        msg = (
            f"{name} must be a decimal string or an integer, not {type(value).__name__}"
        )
        raise InvalidAmountError(msg)
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        msg = f"{name} is not a number: {value!r}"
        raise InvalidAmountError(msg) from None
    if not number.is_finite():
        msg = f"{name} must be finite, not {value!r}"
        raise InvalidAmountError(msg)
    if abs(number) > MAX_AMOUNT:
        msg = f"{name} must be at most {MAX_AMOUNT:,}"
        raise InvalidAmountError(msg)
    if number != number.quantize(CENT):
        msg = f"{name} must have at most 2 decimal places: {value!r}"
        raise InvalidAmountError(msg)
    money = number.quantize(CENT)
    # A negative zero ("-0") would otherwise show as "-0.00".
    return money.copy_abs() if money.is_zero() else money


def to_amount(value: object, *, name: str = "amount") -> Decimal:
    """Converts a deposit, withdrawal or transfer amount: strictly positive."""
    amount = to_money(value, name=name)
    if amount <= ZERO:
        msg = f"{name} must be greater than zero"
        raise InvalidAmountError(msg)
    return amount


def to_limit(value: object, *, name: str = "overdraft_limit") -> Decimal:
    """Converts an overdraft limit: zero or more."""
    limit = to_money(value, name=name)
    if limit < ZERO:
        msg = f"{name} must not be negative"
        raise InvalidAmountError(msg)
    return limit


def to_name(name: object) -> str | None:
    """Checks an optional display name: text of 1 to 100 printable characters."""
    if name is None:
        return None
    if not isinstance(name, str):
        msg = f"name must be text, not {type(name).__name__}"
        raise InvalidAccountNameError(msg)
    name = " ".join(name.split())
    if not name:
        return None
    if len(name) > MAX_NAME_LENGTH:
        msg = f"name must be at most {MAX_NAME_LENGTH} characters"
        raise InvalidAccountNameError(msg)
    if not name.isprintable():
        msg = "name must contain only printable characters"
        raise InvalidAccountNameError(msg)
    return name


def to_account_id(value: object, *, name: str = "account_id") -> UUID:
    """Converts a UUID or its string form to a UUID, or raises."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    msg = f"{name} is not a valid id (a UUID): {value!r}"
    raise InvalidAccountIdError(msg)

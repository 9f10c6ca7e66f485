"""Checks of input at the edge: sums of money, account names and ids.

Money is written one way everywhere (REST, websocket, the page's static/money.js
and the Python API), with the same words for what is refused: plain ASCII digits,
optionally a point and one or two digits (MONEY_PATTERN: "12", "12.5", "12.34"),
at most 1,000,000,000,000.00. No exponent ("1e3"), separator ("1_000", "1,000"),
sign, space, other scripts' digits (Arabic-Indic, full-width), "5." or ".5": each
could be read more than one way. Text is judged by regular expressions before
Decimal() sees it, so no input makes the decimal module overflow or work through a
million digits.
A Decimal or an int (what the domain passes, negative for a debit) must be finite,
bounded and have at most 2 places.
"""

from __future__ import annotations

import re
from decimal import Decimal
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
#: The one form of money as text (the OpenAPI schema shows it too).
MONEY_PATTERN = r"^[0-9]+(\.[0-9]{1,2})?$"
#: Digits of MAX_AMOUNT's whole part: more (after leading zeros) is too large.
MAX_WHOLE_DIGITS = len(str(int(MAX_AMOUNT)))

_PLAIN = re.compile(MONEY_PATTERN)
_SIGNED = re.compile(r"[-+][0-9]+(?:\.[0-9]+)?")
_TOO_PRECISE = re.compile(r"[0-9]+\.[0-9]{3,}")
# Spelled out, as static/money.js spells them: JavaScript's \s and Python's differ.
_SPACE = re.compile(
    "[\t\n\x0b\x0c\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
)


def _label(name: str) -> str:
    """A field's name as a sentence starts it: overdraft_limit -> Overdraft limit."""
    words = name.replace("_", " ")
    return words[:1].upper() + words[1:]


def _refuse(name: str, words: str) -> InvalidAmountError:
    return InvalidAmountError(f"{_label(name)} {words}")


NO_SIGN = "must be written without a sign, such as 12.34"
PLAIN_FORM = (
    "must be a plain decimal number such as 12.34: "
    "digits, optionally a point and 1 or 2 digits"
)
TOO_LARGE = f"must be at most {MAX_AMOUNT:,}"


def _text_to_decimal(text: str, name: str, negative: str) -> Decimal:
    """Reads money written as text, or says in words why it is not."""
    if _PLAIN.fullmatch(text) is None:
        if not text:
            raise _refuse(name, "is missing: write digits, such as 12.34")
        if _SIGNED.fullmatch(text):
            raise _refuse(name, negative if text[0] == "-" else NO_SIGN)
        if _SPACE.search(text):
            raise _refuse(name, "must not contain spaces")
        if any(char.isdecimal() and not char.isascii() for char in text):
            raise _refuse(name, "must be written with the digits 0 to 9")
        if _TOO_PRECISE.fullmatch(text):
            raise _refuse(name, "must have at most 2 decimal places")
        raise _refuse(name, PLAIN_FORM)
    whole, _, fraction = text.partition(".")
    whole = whole.lstrip("0")
    if len(whole) > MAX_WHOLE_DIGITS:
        raise _refuse(name, TOO_LARGE)
    return Decimal(f"{whole or '0'}.{fraction or '0'}")


def _to_decimal(value: object, name: str, negative: str) -> Decimal:
    """A Decimal, str or int as an exact Decimal (not yet bounded or rounded)."""
    if isinstance(value, str):
        return _text_to_decimal(value, name, negative)
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        words = f"must be a decimal string or an integer, not {type(value).__name__}"
        raise _refuse(name, words)
    if isinstance(value, int):
        # Compared as ints: Decimal() of a huge int would be slow for nothing.
        if abs(value) > int(MAX_AMOUNT):
            raise _refuse(name, TOO_LARGE)
        return Decimal(value)
    if not value.is_finite():
        raise _refuse(name, "must be a finite number")
    if value.is_zero():
        return ZERO  # 0E+999999 is zero, however large its exponent
    # adjusted() is the power of ten of the first digit: checked before any
    # arithmetic, which would overflow on Decimal("1e999999999999").
    if value.adjusted() >= MAX_WHOLE_DIGITS:
        raise _refuse(name, TOO_LARGE)
    return value  # bounded exactly by the caller


def _to_money(value: object, name: str, negative: str) -> Decimal:
    number = _to_decimal(value, name, negative)
    if number > MAX_AMOUNT or number < -MAX_AMOUNT:
        raise _refuse(name, TOO_LARGE)
    money = number.quantize(CENT)
    if money != number:
        raise _refuse(name, "must have at most 2 decimal places")
    # A negative zero ("-0") would otherwise show as "-0.00".
    return money.copy_abs() if money.is_zero() else money


def to_money(value: object, *, name: str = "amount") -> Decimal:
    """Converts a Decimal, str or int to a Decimal with two places, or raises.

    Numbers keep their sign (the domain debits with negative amounts); text has none.
    """
    return _to_money(value, name, NO_SIGN)


def to_amount(value: object, *, name: str = "amount") -> Decimal:
    """Converts a deposit, withdrawal or transfer amount: strictly positive."""
    positive = "must be greater than zero"
    amount = _to_money(value, name, positive)
    if amount <= ZERO:
        raise _refuse(name, positive)
    return amount


def to_limit(value: object, *, name: str = "overdraft_limit") -> Decimal:
    """Converts an overdraft limit: zero or more."""
    not_negative = "must not be negative"
    limit = _to_money(value, name, not_negative)
    if limit < ZERO:
        raise _refuse(name, not_negative)
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
    # The value is not repeated: it may be anything a client sent, of any size.
    msg = f"{name} is not a valid id (a UUID)"
    raise InvalidAccountIdError(msg)

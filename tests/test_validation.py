"""Checks of input at the edge: sums of money, account names and account ids."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from bankaccounts.exceptions import (
    InvalidAccountIdError,
    InvalidAccountNameError,
    InvalidAmountError,
)
from bankaccounts.validation import (
    MAX_AMOUNT,
    to_account_id,
    to_amount,
    to_limit,
    to_money,
    to_name,
)

#: Not a sum of money at all, whatever its sign.
NOT_MONEY: list[object] = [
    1.5,
    0.0,
    float("nan"),
    float("inf"),
    True,
    False,
    None,
    [],
    {},
    b"10",
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    "NaN",
    "nan",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "",
    "   ",
    "abc",
    "ten",
    "1,000",
    "1.2.3",
    "0x10",
    "£5",
    "5 EUR",
    "1000000000000.01",
    "-1000000000000.01",
    "1e13",
    10**13,
    Decimal("1000000000000.01"),
    "0.001",
    "1.005",
    "-0.001",
    Decimal("0.001"),
    Decimal("1E-10"),
    # Not the plain decimal form: no exponent, separator, sign, space or other digits.
    "1e3",
    "1E3",
    "1_000",
    "\u0661\u0662",  # Arabic-Indic 12
    "\uff15",  # full-width 5
    " 5",
    "5 ",
    "5\n",
    "5.",
    ".5",
    "+5",
    "1.000",
    "0x10",
    "\u22125",
    # Too large to be money, without making the decimal module overflow.
    "1e999999999999",
    "9" * 1_000_001,
    "1" * 14,
    Decimal("1e999999999999"),
    Decimal("-1e999999999999"),
    10**1000,
]

#: Sums of money that are not positive: refused as amounts, fine as a balance change.
NOT_POSITIVE: list[object] = [
    0,
    "0",
    "0.00",
    Decimal("0"),
    Decimal("-0"),
    -1,
    "-0.01",
    "-5",
]


def ids(value: object) -> str:
    return f"{type(value).__name__}:{value!r}"


@pytest.mark.parametrize("value", NOT_MONEY, ids=ids)
def test_to_money_refuses_what_is_not_money(value: object) -> None:
    with pytest.raises(InvalidAmountError):
        to_money(value)


@pytest.mark.parametrize("value", NOT_MONEY + NOT_POSITIVE, ids=ids)
def test_to_amount_refuses_bad_and_non_positive_amounts(value: object) -> None:
    with pytest.raises(InvalidAmountError):
        to_amount(value)


@pytest.mark.parametrize("value", [*NOT_MONEY, -1, "-0.01", "-100"], ids=ids)
def test_to_limit_refuses_bad_and_negative_limits(value: object) -> None:
    with pytest.raises(InvalidAmountError):
        to_limit(value)


def test_invalid_amount_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Amount"):
        to_amount(-1)


def test_the_message_names_the_argument() -> None:
    with pytest.raises(InvalidAmountError, match="Overdraft limit"):
        to_limit("-1")
    with pytest.raises(InvalidAmountError, match="Price"):
        to_amount(1.5, name="price")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1.00"),
        ("1", "1.00"),
        ("1.5", "1.50"),
        ("0.01", "0.01"),
        ("1.00", "1.00"),
        ("12.34", "12.34"),
        ("0001.10", "1.10"),
        (Decimal("7"), "7.00"),
        (Decimal("1.000"), "1.00"),
        (Decimal("1E+3"), "1000.00"),
        (Decimal("7.10"), "7.10"),
        (1_000_000_000_000, "1000000000000.00"),
        ("1000000000000.00", "1000000000000.00"),
    ],
    ids=ids,
)
def test_amounts_normalise_to_two_places(value: object, expected: str) -> None:
    amount = to_amount(value)
    assert type(amount) is Decimal
    assert amount == Decimal(expected)
    assert str(amount) == expected
    assert amount.as_tuple().exponent == -2


def test_the_largest_amount_is_one_trillion() -> None:
    assert str(MAX_AMOUNT) == "1000000000000.00"
    assert to_amount(MAX_AMOUNT) == MAX_AMOUNT
    with pytest.raises(InvalidAmountError):
        to_amount(MAX_AMOUNT + Decimal("0.01"))


def test_to_money_keeps_the_sign_of_numbers_not_of_text() -> None:
    """The domain debits with negative Decimals; a person writes no sign."""
    assert to_money(Decimal("-12.5")) == Decimal("-12.50")
    assert to_money(-3) == Decimal("-3.00")
    assert to_money(0) == Decimal("0.00")
    with pytest.raises(InvalidAmountError, match="without a sign"):
        to_money("-12.5")


@pytest.mark.parametrize(
    "value", [0, "0", "0.00", "000", Decimal("-0"), Decimal("0E+99")]
)
def test_a_zero_limit_is_zero(value: object) -> None:
    limit = to_limit(value)
    assert limit == 0
    assert str(limit) == "0.00"


def test_limits_normalise_to_two_places() -> None:
    assert str(to_limit("250")) == "250.00"
    assert str(to_limit(Decimal("0.5"))) == "0.50"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("Alice", "Alice"),
        ("  Alice   Smith ", "Alice Smith"),
        ("Zoë 💰", "Zoë 💰"),
        ("x" * 100, "x" * 100),
    ],
)
def test_names_are_tidied(name: object, expected: str | None) -> None:
    assert to_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [1, 1.5, b"Alice", ["Alice"], True, "x" * 101, "Al\x00ice", "Al\x1bice", "\u200e"],
    ids=ids,
)
def test_bad_names_are_refused(name: object) -> None:
    with pytest.raises(InvalidAccountNameError):
        to_name(name)


def test_account_ids_are_uuids() -> None:
    account_id = uuid4()
    assert to_account_id(account_id) is account_id
    assert to_account_id(str(account_id)) == account_id
    assert to_account_id(account_id.hex) == account_id
    assert isinstance(to_account_id(str(account_id).upper()), UUID)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "abc",
        "1234",
        1234,
        uuid4().int,
        uuid4().bytes,
        1.5,
        [],
        str(uuid4())[:-1],
    ],
    ids=ids,
)
def test_bad_account_ids_are_refused(value: object) -> None:
    with pytest.raises(InvalidAccountIdError):
        to_account_id(value)


def test_the_message_names_the_id() -> None:
    with pytest.raises(InvalidAccountIdError, match="debit_account_id"):
        to_account_id("nope", name="debit_account_id")


#: What a person may type as an amount and what the bank answers, in its words. The
#: page (static/money.js) gives the same answers: tests/test_browser.py checks it.
AMOUNT_WORDS: dict[str, str] = {
    "": "Amount is missing: write digits, such as 12.34",
    "12.345": "Amount must have at most 2 decimal places",
    "1.0000000000000001": "Amount must have at most 2 decimal places",
    "-5": "Amount must be greater than zero",
    "-0.01": "Amount must be greater than zero",
    "0": "Amount must be greater than zero",
    "0.00": "Amount must be greater than zero",
    "+5": "Amount must be written without a sign, such as 12.34",
    " 5": "Amount must not contain spaces",
    "5 ": "Amount must not contain spaces",
    "1 000": "Amount must not contain spaces",
    "\u0661\u0662": "Amount must be written with the digits 0 to 9",
    "\uff15": "Amount must be written with the digits 0 to 9",
    "1e3": "Amount must be a plain decimal number such as 12.34: "
    "digits, optionally a point and 1 or 2 digits",
    "1_000": "Amount must be a plain decimal number such as 12.34: "
    "digits, optionally a point and 1 or 2 digits",
    "1,000": "Amount must be a plain decimal number such as 12.34: "
    "digits, optionally a point and 1 or 2 digits",
    "5.": "Amount must be a plain decimal number such as 12.34: "
    "digits, optionally a point and 1 or 2 digits",
    ".5": "Amount must be a plain decimal number such as 12.34: "
    "digits, optionally a point and 1 or 2 digits",
    "NaN": "Amount must be a plain decimal number such as 12.34: "
    "digits, optionally a point and 1 or 2 digits",
    "ten": "Amount must be a plain decimal number such as 12.34: "
    "digits, optionally a point and 1 or 2 digits",
    "1000000000000.01": "Amount must be at most 1,000,000,000,000.00",
    "99999999999999": "Amount must be at most 1,000,000,000,000.00",
    "1e999999999999": "Amount must be a plain decimal number such as 12.34: "
    "digits, optionally a point and 1 or 2 digits",
    "9" * 1_000_001: "Amount must be at most 1,000,000,000,000.00",
}
#: The same for an overdraft limit, where zero is fine.
LIMIT_WORDS: dict[str, str] = {
    "-1": "Overdraft limit must not be negative",
    "1.234": "Overdraft limit must have at most 2 decimal places",
    "1e3": "Overdraft limit must be a plain decimal number such as 12.34: "
    "digits, optionally a point and 1 or 2 digits",
    "1000000000000.01": "Overdraft limit must be at most 1,000,000,000,000.00",
}
#: What a person may type, and the amount it is.
AMOUNTS_READ: dict[str, str] = {
    "12.5": "12.50",
    "0.01": "0.01",
    "7": "7.00",
    "0001.10": "1.10",
    "1000000000000": "1000000000000.00",
    "1000000000000.00": "1000000000000.00",
}


def short(value: str) -> str:
    return repr(value) if len(value) < 20 else f"{value[:8]!r}...({len(value)})"


@pytest.mark.parametrize(("text", "words"), AMOUNT_WORDS.items(), ids=short)
def test_amounts_are_refused_in_clear_words(text: str, words: str) -> None:
    with pytest.raises(InvalidAmountError) as refused:
        to_amount(text)
    assert str(refused.value) == words


@pytest.mark.parametrize(("text", "words"), LIMIT_WORDS.items())
def test_limits_are_refused_in_clear_words(text: str, words: str) -> None:
    with pytest.raises(InvalidAmountError) as refused:
        to_limit(text)
    assert str(refused.value) == words


@pytest.mark.parametrize(("text", "expected"), AMOUNTS_READ.items())
def test_plain_decimals_are_read(text: str, expected: str) -> None:
    assert str(to_amount(text)) == expected
    assert str(to_limit(text)) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (Decimal("1.005"), "Amount must have at most 2 decimal places"),
        (Decimal("NaN"), "Amount must be a finite number"),
        (Decimal("1e999999999999"), "Amount must be at most 1,000,000,000,000.00"),
        (10**13, "Amount must be at most 1,000,000,000,000.00"),
        (1.5, "Amount must be a decimal string or an integer, not float"),
    ],
    ids=ids,
)
def test_numbers_are_refused_in_the_same_words(value: object, words: str) -> None:
    with pytest.raises(InvalidAmountError) as refused:
        to_amount(value)
    assert str(refused.value) == words


def test_the_message_never_repeats_the_input() -> None:
    """A refused million digits must not come back in the answer."""
    for value in ("1" * 10_000, "x" * 10_000, Decimal("1." + "1" * 10_000)):
        with pytest.raises(InvalidAmountError) as refused:
            to_amount(value)
        assert len(str(refused.value)) < 200

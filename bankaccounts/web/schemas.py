"""Shapes of what clients send, checked at the edge with the bank's own rules.

Request bodies (REST and websocket) are parsed by load_json, which keeps a JSON
number with a fraction or an exponent as the text that was sent (NumberLiteral),
so that 1.0000000000000001 is refused for its 16 places instead of becoming 1.00
through a float, and 1e3 is refused for not being the plain decimal form.

Also the shapes of the list answers, for the OpenAPI docs only: those endpoints
encode the read model's JSON themselves.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Query
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from bankaccounts.validation import (
    MAX_AMOUNT,
    MONEY_PATTERN,
    to_amount,
    to_limit,
    to_name,
)

#: Longer integer literals are kept as text: int() refuses more than 4,300 digits
#: (a ValueError that would not say which field), and money stops at 13 anyway.
MAX_INT_DIGITS = 20
MAX_REQUEST_ID_LENGTH = 64
MAX_REQUEST_ID_NUMBER = 2**53  # what a JavaScript number holds exactly
#: The longest search text taken (a name has at most 100 characters).
MAX_SEARCH_LENGTH = 100
#: Statement bounds outside these years select the same rows as these (no bank
#: history lies outside them), and every store can compare them.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_INSTANT_LENGTH = 40
_ISO_DATE = re.compile(r"[0-9]{4}-?[0-9]{2}-?[0-9]{2}")


class NumberLiteral:
    """A JSON number as the client wrote it: a fraction, an exponent, NaN or long."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        """Keeps the literal text."""
        self.text = text

    def __repr__(self) -> str:
        """Shows the start of the literal (it may be long)."""
        return f"NumberLiteral({self.text[:24]!r})"


def _integer(text: str) -> int | NumberLiteral:
    return int(text) if len(text) <= MAX_INT_DIGITS else NumberLiteral(text)


def load_json(document: str | bytes) -> Any:
    """Parses a request body; numbers with a fraction or exponent stay as their text.

    Raises json.JSONDecodeError for anything that is not JSON, including nesting
    too deep for the parser (RecursionError) and bytes that are not UTF-8.
    """
    try:
        return json.loads(
            document,
            parse_float=NumberLiteral,
            parse_int=_integer,
            parse_constant=NumberLiteral,
        )
    except json.JSONDecodeError:
        raise
    except RecursionError:
        msg = "JSON nested too deeply"
        raise json.JSONDecodeError(msg, "", 0) from None
    except ValueError as error:  # not UTF-8
        raise json.JSONDecodeError(str(error)[:200], "", 0) from None


def _money_input(value: Any) -> Any:
    """A JSON number is judged by its text, like a string: never through a float."""
    return value.text if isinstance(value, NumberLiteral) else value


def _amount(value: Any) -> Decimal:
    return to_amount(_money_input(value))


def _limit(value: Any) -> Decimal:
    return to_limit(_money_input(value))


def to_request_id(value: Any) -> str | int | None:
    """A websocket request's id: text of at most 64 characters or a safe integer."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= MAX_REQUEST_ID_LENGTH:
        return value
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and abs(value) <= MAX_REQUEST_ID_NUMBER
    ):
        return value
    msg = (
        f"request_id must be text of at most {MAX_REQUEST_ID_LENGTH} characters "
        "or a whole number between -2**53 and 2**53"
    )
    raise ValueError(msg)


INSTANT_RULE = (
    "an ISO 8601 date (2026-01-31) or date-time (2026-01-31T09:30:00+01:00; "
    "UTC if no offset is given)"
)


def to_instant(value: Any, *, end: bool = False) -> datetime | None:
    """A statement bound: a date or date-time, as an aware UTC date-time.

    A date is its first moment (UTC), or as an end (exclusive) the first moment of
    the next day, so that it includes that whole day. None: no bound.
    """
    if value is None:
        return None
    msg = f"must be {INSTANT_RULE}"
    if not isinstance(value, str) or len(value) > MAX_INSTANT_LENGTH:
        raise ValueError(msg)
    text = value.strip()
    try:
        if _ISO_DATE.fullmatch(text):
            instant = datetime.combine(date.fromisoformat(text), time(), UTC)
            shift = timedelta(days=1) if end else timedelta()
        else:
            instant = datetime.fromisoformat(text)
            shift = timedelta()
    except ValueError:
        raise ValueError(msg) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    try:
        instant = instant.astimezone(UTC) + shift
    except OverflowError:  # past the first or the last day a datetime holds
        instant = LATEST if instant.year > LATEST.year else EARLIEST
    if end:
        return None if instant >= LATEST else max(instant, EARLIEST)
    return None if instant <= EARLIEST else min(instant, LATEST)


StatementFrom = Annotated[
    datetime | None,
    BeforeValidator(lambda value: to_instant(value)),
    WithJsonSchema({"type": "string", "examples": ["2026-01-01"]}),
    Query(
        alias="from",
        description=f"The earliest entry's time (inclusive): {INSTANT_RULE}",
    ),
]
StatementTo = Annotated[
    datetime | None,
    BeforeValidator(lambda value: to_instant(value, end=True)),
    WithJsonSchema({"type": "string", "examples": ["2026-01-31"]}),
    Query(
        alias="to",
        description="The end (exclusive; a date includes that whole day): "
        + INSTANT_RULE,
    ),
]
AccountSortIn = Literal["opened", "name", "balance"]


MONEY_RULE = (
    "A plain decimal number: digits, optionally a point and 1 or 2 digits "
    f'(`{MONEY_PATTERN}`), at most {MAX_AMOUNT:,}, as a string (`"12.34"`) '
    "or a JSON number judged by its literal text (`12.34` is read as written, "
    "`1e3` and `1.0000000000000001` are refused). No sign, spaces, exponent, "
    "separators or digits other than 0-9."
)


def _money_schema(description: str, minimum: int) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": MONEY_PATTERN},
                {"type": "integer", "minimum": minimum, "maximum": int(MAX_AMOUNT)},
            ],
            "description": f"{description} {MONEY_RULE}",
            "examples": ["12.34"],
        }
    )


Amount = Annotated[
    Decimal,
    BeforeValidator(_amount),
    _money_schema("Greater than zero.", minimum=1),
]
Limit = Annotated[
    Decimal,
    BeforeValidator(_limit),
    _money_schema("Zero or more.", minimum=0),
]
Name = Annotated[str | None, BeforeValidator(to_name)]
RequestId = Annotated[
    str | int | None,
    BeforeValidator(to_request_id),
    Field(
        default=None,
        description=(
            "Repeated in the ack or error: text of at most 64 characters or a "
            "whole number between -2**53 and 2**53."
        ),
    ),
]


class Strict(BaseModel):
    """Refuses unknown fields."""

    model_config = ConfigDict(extra="forbid")


class AccountIn(Strict):
    """Opens an account."""

    name: Name = None


class AmountIn(Strict):
    """A deposit or a withdrawal."""

    amount: Amount


class TransferIn(Strict):
    """A transfer between two different accounts."""

    debit_account_id: UUID
    credit_account_id: UUID
    amount: Amount

    @field_validator("credit_account_id")
    @classmethod
    def check_different_accounts(cls, value: UUID, info: ValidationInfo) -> UUID:
        """A transfer to the same account is refused."""
        if value == info.data.get("debit_account_id"):
            msg = "must differ from debit_account_id (no transfer to the same account)"
            raise ValueError(msg)
        return value


class OverdraftLimitIn(Strict):
    """A new overdraft limit."""

    overdraft_limit: Limit


class DepositMessage(Strict):
    """Websocket request to deposit."""

    type: Literal["deposit"]
    credit_account_id: UUID
    amount: Amount
    request_id: RequestId


class WithdrawMessage(Strict):
    """Websocket request to withdraw."""

    type: Literal["withdraw"]
    debit_account_id: UUID
    amount: Amount
    request_id: RequestId


class TransferMessage(TransferIn):
    """Websocket request to transfer."""

    type: Literal["transfer"]
    request_id: RequestId


ClientMessage = Annotated[
    DepositMessage | WithdrawMessage | TransferMessage, Field(discriminator="type")
]
CLIENT_MESSAGE: TypeAdapter[DepositMessage | WithdrawMessage | TransferMessage] = (
    TypeAdapter(ClientMessage)
)


class UserRefOut(BaseModel):
    """Who: a user's id and username (documentation)."""

    id: UUID
    username: str = Field(examples=["alice"])


class ActorOut(UserRefOut):
    """The signed-in user (documentation)."""

    role: Literal["staff", "customer"]


class AccountOut(BaseModel):
    """An account as the API shows it (documentation of the answers)."""

    id: UUID
    name: str | None
    balance: str = Field(description="Decimal string", examples=["12.30"])
    overdraft_limit: str = Field(description="Decimal string", examples=["0.00"])
    is_closed: bool
    opened_at: datetime
    updated_at: datetime
    owner: UserRefOut | None = Field(
        description="The customer it belongs to (null: opened without one)"
    )


class PayeeOut(BaseModel):
    """An account as a payer sees it: no balance (documentation)."""

    id: UUID
    name: str | None
    owner: UserRefOut | None
    is_closed: bool


class TransactionOut(BaseModel):
    """A transaction as the API shows it (documentation of the answers)."""

    id: UUID
    kind: Literal["deposit", "withdrawal", "transfer"]
    debit_account_id: UUID | None
    credit_account_id: UUID | None
    amount: str = Field(description="Decimal string", examples=["12.30"])
    status: Literal["pending", "succeeded", "failed"]
    error: str | None
    created_at: datetime
    updated_at: datetime
    initiated_by: UserRefOut | None = Field(description="Who asked for it")
    debit_owner: UserRefOut | None = Field(description="The debit account's owner")
    credit_owner: UserRefOut | None = Field(description="The credit account's owner")


class AccountRefOut(BaseModel):
    """The other account of a transfer, as a statement names it (documentation)."""

    id: UUID
    name: str | None
    owner: UserRefOut | None


class StatementEntryOut(BaseModel):
    """One line of a statement (documentation)."""

    seq: int = Field(description="1, 2, ... per account, in the order applied")
    transaction_id: UUID
    kind: str
    at: datetime = Field(description="When it was applied (ISO 8601, with offset)")
    amount: str = Field(description="Signed decimal string: a debit is negative")
    balance: str = Field(description="The balance after it (decimal string)")
    counterparty: AccountRefOut | None
    initiated_by: UserRefOut | None


class StatementOut(BaseModel):
    """A page of an account's statement, newest first (documentation)."""

    account_id: UUID
    entries: list[StatementEntryOut]
    next_cursor: str | None = Field(description="The next (older) page's cursor")


class StateOut(BaseModel):
    """What a page starts from (documentation of the answer)."""

    position: int = Field(description="The feed position the lists are as of")
    user: ActorOut
    accounts: list[AccountOut] = Field(description="The first page of accounts")
    accounts_next: str | None = Field(
        description="The cursor of the next page of accounts (GET /api/accounts)"
    )
    transactions: list[TransactionOut] = Field(
        description="The 50 most recent transactions the user may see"
    )


class CommandOut(BaseModel):
    """The answer to a deposit, withdrawal or transfer (documentation)."""

    transaction_id: UUID
    status: Literal["pending", "succeeded", "failed"]
    error: str | None = Field(description="Why it failed, in words")


class ErrorOut(BaseModel):
    """An error in words (documentation)."""

    detail: str = Field(examples=["Account not found: account 3f2b9c1e-..."])


class FieldError(BaseModel):
    """One invalid field: where, which and why."""

    loc: list[str | int]
    field: str | None
    msg: str = Field(examples=["Amount must be greater than zero"])
    type: str


class InvalidOut(BaseModel):
    """Invalid input, field by field (documentation)."""

    detail: list[FieldError]

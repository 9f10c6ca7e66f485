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
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

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


class AccountOut(BaseModel):
    """An account as the API shows it (documentation of the answers)."""

    id: UUID
    name: str | None
    balance: str = Field(description="Decimal string", examples=["12.30"])
    overdraft_limit: str = Field(description="Decimal string", examples=["0.00"])
    is_closed: bool
    opened_at: datetime
    updated_at: datetime


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


class StateOut(BaseModel):
    """What a page starts from (documentation of the answer)."""

    position: int = Field(description="The feed position the lists are as of")
    accounts: list[AccountOut]
    transactions: list[TransactionOut]


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

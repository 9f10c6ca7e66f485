"""Shapes of what clients send, checked at the edge with the bank's own rules.

Also the shapes of the list answers, for the OpenAPI docs only: those endpoints
encode the read model's JSON themselves.
"""

from __future__ import annotations

import math
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
    field_validator,
)

from bankaccounts.validation import to_amount, to_limit, to_name


def _decimal_text(value: Any) -> Any:
    """A JSON number arrives as a float: use its shortest decimal form (12.34)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            msg = "must be a finite number"
            raise ValueError(msg)
        return repr(value)
    return value


def _amount(value: Any) -> Decimal:
    return to_amount(_decimal_text(value))


def _limit(value: Any) -> Decimal:
    return to_limit(_decimal_text(value))


Amount = Annotated[Decimal, BeforeValidator(_amount)]
Limit = Annotated[Decimal, BeforeValidator(_limit)]
Name = Annotated[str | None, BeforeValidator(to_name)]
RequestId = Annotated[str | int | None, Field(default=None)]


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

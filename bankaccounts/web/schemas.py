"""Shapes of what clients send, checked at the edge with the bank's own rules."""

from __future__ import annotations

import math
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

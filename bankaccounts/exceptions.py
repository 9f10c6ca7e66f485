"""Errors of the bank: domain rule violations and bad input."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uuid import UUID


class TransactionError(Exception):
    """A transaction could not be applied to an account."""

    reason = "The transaction could not be applied"

    def __init__(self, account_id: UUID) -> None:
        """Records the account the error concerns."""
        super().__init__(account_id)
        self.account_id = account_id

    def __str__(self) -> str:
        """Says in words what went wrong."""
        return f"{self.reason}: account {self.account_id}"

    def __repr__(self) -> str:
        """Shows the type and the account."""
        return f"{type(self).__name__}({self.account_id!r})"

    def __eq__(self, other: object) -> bool:
        """Equal to an error of the same type about the same account."""
        return type(self) is type(other) and self.account_id == getattr(
            other, "account_id", None
        )

    def __hash__(self) -> int:
        """Hashes by type and account."""
        return hash((type(self).__name__, self.account_id))


class AccountClosedError(TransactionError):
    """The account is closed."""

    reason = "Account is closed"


class InsufficientFundsError(TransactionError):
    """The transaction would take the balance below the overdraft limit."""

    reason = "Insufficient funds"


class BalanceLimitError(TransactionError):
    """The transaction would take the balance above the most an account may hold."""

    reason = "Balance limit reached"
    #: domainmodel.MAX_BALANCE in words (kept equal by a test; this module imports
    #: nothing of the domain's).
    limit = "10,000,000,000,000.00"

    def __str__(self) -> str:
        """Says in words what went wrong."""
        return (
            f"Account {self.account_id} would hold more than {self.limit}, "
            "the most an account may hold"
        )


class AccountNotFoundError(TransactionError, LookupError):
    """No account has this id."""

    reason = "Account not found"


class InvalidAmountError(ValueError):
    """An amount or limit is not a valid sum of money."""


class InvalidTransferError(InvalidAmountError):
    """A transfer names the same account twice."""


class CommandConflictError(ValueError):
    """An idempotency key was reused with a different request."""


class InvalidIdempotencyKeyError(ValueError):
    """An idempotency key is not 1 to 64 characters of the allowed kinds."""


class ProcessingError(TransactionError):
    """The bank failed to process the transaction (a fault, not the customer's)."""

    reason = "The bank could not process the transaction"


class InvalidAccountNameError(ValueError):
    """An account name is not acceptable text."""


class InvalidAccountIdError(ValueError):
    """A value that should be an account id is not a UUID."""

"""Errors of the bank: domain rule violations and bad input."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uuid import UUID

#: The most an account may hold. The read model's columns must hold any balance:
#: PostgreSQL's numeric(16,2) holds less than 10**14, SQLite keeps text. A refund is
#: never refused (it returns money that left the account), so refunds in flight may
#: take a balance past this bound; the columns leave ten times as much room.
MAX_BALANCE = Decimal("10000000000000.00")


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


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

    def describe(self, label: str) -> str:
        """Says in words what went wrong, naming the account by label."""
        return str(self)

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

    def describe(self, label: str) -> str:
        """'Alice's account is closed'."""
        return f"{_capitalized(label)} is closed"


class InsufficientFundsError(TransactionError):
    """The transaction would take the balance below the overdraft limit."""

    reason = "Insufficient funds"

    def describe(self, label: str) -> str:
        """'Insufficient funds in Alice's account'."""
        return f"Insufficient funds in {label}"


class BalanceLimitError(TransactionError):
    """The transaction would take the balance above the most an account may hold."""

    reason = "Balance limit reached"

    def __str__(self) -> str:
        """Says in words what went wrong."""
        return self.describe(f"account {self.account_id}")

    def describe(self, label: str) -> str:
        """'Alice's account would hold more than 10,000,000,000,000.00, ...'."""
        return (
            f"{_capitalized(label)} would hold more than {MAX_BALANCE:,}, "
            "the most an account may hold"
        )


class AccountNotFoundError(TransactionError, LookupError):
    """No account has this id."""

    reason = "Account not found"

    def describe(self, label: str) -> str:
        """Names the id: an account that does not exist has no name."""
        return f"Account {self.account_id} does not exist"


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

    def describe(self, label: str) -> str:
        """'The bank could not process this transaction on Alice's account'."""
        return f"The bank could not process this transaction on {label}"


class InvalidAccountNameError(ValueError):
    """An account name is not acceptable text."""


class InvalidAccountIdError(ValueError):
    """A value that should be an account id is not a UUID."""


class ForbiddenError(Exception):
    """The acting user may not do this (HTTP 403)."""


class AccountNotEmptyError(Exception):
    """An account with money in it, or a debt, cannot be closed here (HTTP 409)."""


class AuthenticationError(Exception):
    """No valid credentials: a missing, wrong, expired or revoked token (HTTP 401)."""


class SignInError(AuthenticationError):
    """A sign-in failed: one message for an unknown user and a wrong password."""


class SignInThrottledError(Exception):
    """Too many failed sign-ins for a username or from a client (HTTP 429)."""

    def __init__(self, retry_after: int) -> None:
        """Records how many seconds the client should wait."""
        super().__init__(
            f"Too many failed sign-ins: try again in {retry_after} seconds"
        )
        self.retry_after = retry_after


class UsernameTakenError(ValueError):
    """A username is taken, ignoring case (HTTP 409)."""


class InvalidUsernameError(ValueError):
    """A username is not 3-32 characters of a-z 0-9 . _ - (HTTP 422)."""


class InvalidPasswordError(ValueError):
    """A password is too short or too long (HTTP 422)."""


class UserNotFoundError(LookupError):
    """No user has this username or id."""


class InvalidCursorError(ValueError):
    """A page cursor is not one this server gave (HTTP 422)."""


class BusyError(Exception):
    """Too many commands wait to be processed: a money request is refused (503)."""

    def __init__(self, retry_after: int) -> None:
        """Records how many seconds the client should wait."""
        unit = "second" if retry_after == 1 else "seconds"
        super().__init__(f"The bank is busy: try again in {retry_after} {unit}")
        self.retry_after = retry_after

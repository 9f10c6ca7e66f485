"""Commands: records each client request as a command aggregate, for availability."""

from __future__ import annotations

from decimal import Decimal  # noqa: TC003 (event annotations are resolved at runtime)
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

from bankaccounts.domainmodel import UserRef, ValueCopy
from bankaccounts.exceptions import CommandConflictError, InvalidTransferError
from bankaccounts.ids import command_id_for_key, command_id_for_user_key
from bankaccounts.infrastructure import BankApplication
from bankaccounts.validation import to_account_id, to_amount

if TYPE_CHECKING:
    from bankaccounts.readmodel import TransactionKind


class Command(ValueCopy, Aggregate):
    """A client's request; its id is the id of the saga that carries it out.

    The id is new (uuid4), or derived from the client's idempotency key in a
    namespace of its own (see bankaccounts.ids), never chosen by the client.
    Each kind declares its Created event, with a default for who initiated it:
    a command recorded before initiators were is read as initiated by nobody.
    """

    def arguments(self) -> dict[str, Any]:
        """The request's arguments (and who made it), to compare a retry with."""
        return {
            key: value
            for key, value in vars(self).items()
            if key.endswith("_account_id") or key in {"amount", "initiated_by"}
        }


class DepositFundsCommand(Command):
    """Asks for money to be paid into an account."""

    class Created(Command.Created):
        """A deposit was requested."""

        credit_account_id: UUID
        amount: Decimal
        initiated_by: UserRef | None = None

    @event(Created)
    def __init__(
        self,
        id: UUID,  # noqa: A002
        credit_account_id: UUID,
        amount: Decimal,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Records the request."""
        self.credit_account_id = credit_account_id
        self.amount = amount
        self.initiated_by = initiated_by


class WithdrawFundsCommand(Command):
    """Asks for money to be taken from an account."""

    class Created(Command.Created):
        """A withdrawal was requested."""

        debit_account_id: UUID
        amount: Decimal
        initiated_by: UserRef | None = None

    @event(Created)
    def __init__(
        self,
        id: UUID,  # noqa: A002
        debit_account_id: UUID,
        amount: Decimal,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Records the request."""
        self.debit_account_id = debit_account_id
        self.amount = amount
        self.initiated_by = initiated_by


class TransferFundsCommand(Command):
    """Asks for money to be moved from one account to another."""

    class Created(Command.Created):
        """A transfer was requested."""

        debit_account_id: UUID
        credit_account_id: UUID
        amount: Decimal
        initiated_by: UserRef | None = None

    @event(Created)
    def __init__(
        self,
        id: UUID,  # noqa: A002
        debit_account_id: UUID,
        credit_account_id: UUID,
        amount: Decimal,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Records the request."""
        self.debit_account_id = debit_account_id
        self.credit_account_id = credit_account_id
        self.amount = amount
        self.initiated_by = initiated_by


#: The kind of transaction each command asks for, as clients see it.
COMMAND_KINDS: dict[type[Command], TransactionKind] = {
    DepositFundsCommand: "deposit",
    WithdrawFundsCommand: "withdrawal",
    TransferFundsCommand: "transfer",
}


class Commands(BankApplication):
    """Checks and records client requests; the Sagas application carries them out.

    Each request may carry an idempotency key: the same key with the same request
    returns the same transaction id and records nothing new; with another request
    it raises CommandConflictError. A request may name the user who initiated it:
    the command, its saga and the accounts' events record them, and the user's
    keys are the user's own (another user's same key is another request).
    """

    def deposit_funds(
        self,
        credit_account_id: UUID,
        amount: Decimal | str | int,
        idempotency_key: str | None = None,
        *,
        initiated_by: UserRef | None = None,
    ) -> UUID:
        """Records a deposit request and returns its transaction id."""
        return self._record_command(
            DepositFundsCommand,
            idempotency_key,
            initiated_by,
            credit_account_id=to_account_id(
                credit_account_id, name="credit_account_id"
            ),
            amount=to_amount(amount),
        )

    def withdraw_funds(
        self,
        debit_account_id: UUID,
        amount: Decimal | str | int,
        idempotency_key: str | None = None,
        *,
        initiated_by: UserRef | None = None,
    ) -> UUID:
        """Records a withdrawal request and returns its transaction id."""
        return self._record_command(
            WithdrawFundsCommand,
            idempotency_key,
            initiated_by,
            debit_account_id=to_account_id(debit_account_id, name="debit_account_id"),
            amount=to_amount(amount),
        )

    def transfer_funds(
        self,
        debit_account_id: UUID,
        credit_account_id: UUID,
        amount: Decimal | str | int,
        idempotency_key: str | None = None,
        *,
        initiated_by: UserRef | None = None,
    ) -> UUID:
        """Records a transfer request and returns its transaction id."""
        debit_account_id = to_account_id(debit_account_id, name="debit_account_id")
        credit_account_id = to_account_id(credit_account_id, name="credit_account_id")
        amount = to_amount(amount)
        if debit_account_id == credit_account_id:
            msg = "a transfer needs two different accounts"
            raise InvalidTransferError(msg)
        return self._record_command(
            TransferFundsCommand,
            idempotency_key,
            initiated_by,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount=amount,
        )

    @staticmethod
    def command_id_for(idempotency_key: str, initiated_by: UUID | None = None) -> UUID:
        """The transaction id that a request with this idempotency key gets.

        initiated_by: the id of the user whose key it is (None: a key of no user's).
        """
        if initiated_by is None:
            return command_id_for_key(idempotency_key)
        return command_id_for_user_key(idempotency_key, initiated_by)

    def get_command(self, command_id: UUID) -> Command | None:
        """Returns the recorded command with this id, or None."""
        try:
            command: object = self.repository.get(command_id)
        except AggregateNotFoundError:
            return None
        return command if isinstance(command, Command) else None

    def _record_command(
        self,
        command_class: type[Command],
        idempotency_key: str | None,
        initiated_by: UserRef | None,
        **arguments: Any,
    ) -> UUID:
        if initiated_by is not None and not isinstance(initiated_by, UserRef):
            msg = f"initiated_by must be a UserRef or None, not {initiated_by!r}"
            raise TypeError(msg)
        arguments["initiated_by"] = initiated_by
        if idempotency_key is None:
            command_id = uuid4()
        else:
            command_id = self.command_id_for(
                idempotency_key, None if initiated_by is None else initiated_by.id
            )
            existing = self.get_command(command_id)
            if existing is not None:
                return self._check_retry(existing, command_class, arguments)
        command = command_class(id=command_id, **arguments)  # type: ignore[call-arg]
        try:
            self.save(command)
        except IntegrityError:
            if idempotency_key is None:
                raise
            # Taken since we looked: a concurrent retry of the same request is
            # answered with its id; anything else is a conflict, never swallowed.
            existing = self.get_command(command_id)
            if existing is None:
                raise
            return self._check_retry(existing, command_class, arguments)
        return command_id

    @staticmethod
    def _check_retry(
        existing: Command, command_class: type[Command], arguments: dict[str, Any]
    ) -> UUID:
        if type(existing) is not command_class or existing.arguments() != arguments:
            msg = "this Idempotency-Key was already used for a different request"
            raise CommandConflictError(msg)
        return existing.id

"""The bank's use cases: what a signed-in user may see and do, decided in one place.

The REST API and the websocket call these, each with the acting user; they return
the read model's views, never aggregates. The rules of who may do what:

- A customer sees and changes only their own accounts, and sees the transactions
  that touch them. Another customer's account or transaction is answered as if it
  did not exist (AccountNotFoundError, or None for a transaction): the answer gives
  no hint that it does.
- A transfer must debit one of the customer's own accounts and may credit any
  account of the bank (the payee is entered by account number).
- Staff see and may do everything, across all customers.

An account's owner never changes, so owners once looked up are remembered (in a
bounded map), and checking a command costs no database round trip after the first.

A money request is refused with BusyError, before anything is recorded, while the
backlog of commands waiting for the Sagas has passed its bound (bankaccounts.
backpressure). A retry of a request already recorded (the same idempotency key) is
answered all the same: it records nothing, so it adds nothing to the backlog, and
its client learns the transaction id it is waiting for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bankaccounts.accountapplication import retry_on_conflict
from bankaccounts.exceptions import (
    AccountClosedError,
    AccountNotEmptyError,
    AccountNotFoundError,
    BusyError,
    ForbiddenError,
)
from bankaccounts.metrics import COMMANDS_RECORDED
from bankaccounts.readmodel import AccountView, TransactionView
from bankaccounts.system.commands import COMMAND_KINDS, Commands

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal
    from uuid import UUID

    from bankaccounts.accountapplication import AccountApplication
    from bankaccounts.backpressure import Backpressure
    from bankaccounts.domainmodel import BankAccount, UserRef
    from bankaccounts.readmodel import (
        AccountSort,
        FeedMessage,
        ReadModelRecorder,
        StatementEntry,
    )
    from bankaccounts.users import Actor

T = TypeVar("T")

#: The most rows a page holds, whatever a client asks for.
MAX_PAGE = 500
#: What a page starts from (GET /api/state): its first page of accounts, and the
#: most recent transactions.
STATE_ACCOUNTS = 100
STATE_TRANSACTIONS = 50
#: Owners remembered by account id (emptied when full; each is looked up again).
KNOWN_OWNERS_LIMIT = 100_000


class HasView(Protocol):
    """What keeps the read model (the Interface application)."""

    @property
    def view(self) -> ReadModelRecorder:
        """The read model's recorder."""
        ...


class BankPort(Protocol):
    """The bank as the use cases need it (deploy.bootstrap.Bank or DistributedBank)."""

    @property
    def commands(self) -> Commands:
        """Records client requests."""
        ...

    @property
    def accounts(self) -> AccountApplication:
        """Keeps the accounts."""
        ...

    @property
    def interface(self) -> HasView:
        """Keeps the read model."""
        ...

    def wait_for_read_model(self) -> bool:
        """Waits (bounded) until the read model shows this thread's account write."""
        ...


@dataclass(frozen=True)
class Page(Generic[T]):
    """Rows of a list, and the cursor of the next page (None: this is the last)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Payee:
    """An account as someone paying into it sees it: whose, and open or not."""

    id: UUID
    name: str | None
    owner: UserRef | None
    is_closed: bool

    def to_json(self) -> dict[str, Any]:
        """{"id", "name", "owner", "is_closed"}: no balance, no limit."""
        return {
            "id": str(self.id),
            "name": self.name,
            "owner": None if self.owner is None else self.owner.to_json(),
            "is_closed": self.is_closed,
        }


@dataclass(frozen=True)
class Statement:
    """A page of an account's statement, newest first."""

    account_id: UUID
    entries: list[StatementEntry]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        """{"account_id", "entries", "next_cursor"}."""
        return {
            "account_id": str(self.account_id),
            "entries": [entry.to_json() for entry in self.entries],
            "next_cursor": self.next_cursor,
        }


@dataclass(frozen=True)
class State:
    """What a page starts from: the feed position its lists are as of, and them."""

    position: int
    user: Actor
    accounts: Page[AccountView]
    transactions: list[TransactionView]

    def to_json(self) -> dict[str, Any]:
        """{"position", "user", "accounts", "accounts_next", "transactions"}."""
        return {
            "position": self.position,
            "user": self.user.to_json(),
            "accounts": [account.to_json() for account in self.accounts.items],
            "accounts_next": self.accounts.next_cursor,
            "transactions": [t.to_json() for t in self.transactions],
        }


class Banking:
    """The use cases, each taking the acting user first; authorization lives here."""

    def __init__(
        self, bank: BankPort, backpressure: Backpressure | None = None
    ) -> None:
        """Serves the users of this bank; backpressure refuses money when busy."""
        self.bank = bank
        self.backpressure = backpressure
        self._owners: dict[UUID, UserRef | None] = {}

    @property
    def _view(self) -> ReadModelRecorder:
        return self.bank.interface.view

    # Accounts

    def open_account(self, actor: Actor, name: str | None = None) -> AccountView:
        """Opens an account owned by the actor."""
        accounts = self.bank.accounts
        account_id = accounts.create_account(name, owner=actor.ref)
        self._remember(account_id, actor.ref)
        self.bank.wait_for_read_model()  # it is listed when the answer comes
        return AccountView.from_account(accounts.get_account(account_id))

    def account(self, actor: Actor, account_id: UUID) -> AccountView:
        """One of the actor's accounts (any account, for staff)."""
        account = self._view.get_account(account_id)
        if account is None:  # opened a moment ago: the read model follows
            account = AccountView.from_account(
                self.bank.accounts.get_account(account_id)
            )
        self._remember(account_id, account.owner)
        self._authorize(actor, account_id, account.owner)
        return account

    def payee(self, actor: Actor, account_id: UUID) -> Payee:
        """Any account, as a payer sees it (to show whom a transfer would pay)."""
        account = self._view.get_account(account_id)
        if account is None:
            account = AccountView.from_account(
                self.bank.accounts.get_account(account_id)
            )
        self._remember(account_id, account.owner)
        return Payee(account.id, account.name, account.owner, account.is_closed)

    def list_accounts(
        self,
        actor: Actor,
        search: str | None = None,
        sort: AccountSort = "opened",
        cursor: str | None = None,
        limit: int = STATE_ACCOUNTS,
    ) -> Page[AccountView]:
        """A page of the actor's accounts (all accounts, for staff)."""
        items, next_cursor = self._view.list_accounts(
            owner_id=None if actor.is_staff else actor.id,
            search=search or None,
            sort=sort,
            after=cursor,
            limit=_bounded(limit),
        )
        return Page(items, next_cursor)

    def set_overdraft_limit(
        self, actor: Actor, account_id: UUID, limit: Decimal
    ) -> AccountView:
        """Sets how far below zero one of the actor's accounts may go."""
        self._check_account(actor, account_id)
        accounts = self.bank.accounts
        accounts.set_overdraft_limit(account_id, limit)
        self.bank.wait_for_read_model()
        return AccountView.from_account(accounts.get_account(account_id))

    def close_account(self, actor: Actor, account_id: UUID) -> AccountView:
        """Closes one of the actor's accounts, if its balance is zero.

        AccountClosedError if it is closed already; AccountNotEmptyError if money
        is in it (or owed), which must first be moved so that none vanishes from
        the books. The balance is checked in the same write as the close, so a
        transaction that lands in between makes the write conflict and the check
        is made again.
        """
        self._check_account(actor, account_id)
        accounts = self.bank.accounts

        def write() -> BankAccount:
            with accounts.writing():
                account = accounts.get_account(account_id)
                if account.is_closed:
                    raise AccountClosedError(account_id)
                if account.balance:
                    raise AccountNotEmptyError(_not_empty(account))
                account.close()
                accounts.save(account)
                return account

        closed = retry_on_conflict(accounts, write)
        self.bank.wait_for_read_model()
        return AccountView.from_account(closed)

    def statement(
        self,
        actor: Actor,
        account_id: UUID,
        cursor: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Statement:
        """A page of one of the actor's accounts' statement, newest first.

        since is inclusive, until exclusive; cursor continues a page before.
        """
        self._check_account(actor, account_id)
        entries, next_cursor = self._view.select_statement(
            account_id, after=cursor, limit=_bounded(limit), since=since, until=until
        )
        return Statement(account_id, entries, next_cursor)

    # Money

    def deposit(
        self,
        actor: Actor,
        account_id: UUID,
        amount: Decimal,
        idempotency_key: str | None = None,
    ) -> UUID:
        """Records a deposit into one of the actor's accounts; its transaction id."""
        self._check_account(actor, account_id)
        self._check_not_busy(actor, idempotency_key)
        transaction_id = self.bank.commands.deposit_funds(
            account_id, amount, idempotency_key, initiated_by=actor.ref
        )
        COMMANDS_RECORDED.labels("deposit").inc()
        return transaction_id

    def withdraw(
        self,
        actor: Actor,
        account_id: UUID,
        amount: Decimal,
        idempotency_key: str | None = None,
    ) -> UUID:
        """Records a withdrawal from one of the actor's accounts."""
        self._check_account(actor, account_id)
        self._check_not_busy(actor, idempotency_key)
        transaction_id = self.bank.commands.withdraw_funds(
            account_id, amount, idempotency_key, initiated_by=actor.ref
        )
        COMMANDS_RECORDED.labels("withdrawal").inc()
        return transaction_id

    def transfer(
        self,
        actor: Actor,
        debit_account_id: UUID,
        credit_account_id: UUID,
        amount: Decimal,
        idempotency_key: str | None = None,
    ) -> UUID:
        """Records a transfer from one of the actor's accounts to any account."""
        self._check_account(actor, debit_account_id)
        self._owner(credit_account_id)  # it exists (a closed one refunds the debit)
        self._check_not_busy(actor, idempotency_key)
        transaction_id = self.bank.commands.transfer_funds(
            debit_account_id,
            credit_account_id,
            amount,
            idempotency_key,
            initiated_by=actor.ref,
        )
        COMMANDS_RECORDED.labels("transfer").inc()
        return transaction_id

    def _check_not_busy(self, actor: Actor, idempotency_key: str | None) -> None:
        """BusyError if the backlog has passed its bound, unless this is a retry."""
        if self.backpressure is None:
            return
        try:
            self.backpressure.check()
        except BusyError:
            # Read only when busy: a retry of a recorded request adds nothing.
            if idempotency_key is None or not self.is_recorded(actor, idempotency_key):
                raise

    def is_recorded(self, actor: Actor, idempotency_key: str) -> bool:
        """True if the actor made a request with this idempotency key before."""
        commands = self.bank.commands
        command_id = Commands.command_id_for(idempotency_key, initiated_by=actor.id)
        return commands.get_command(command_id) is not None

    # Transactions and the feed

    def transaction(self, actor: Actor, transaction_id: UUID) -> TransactionView | None:
        """A transaction the actor may see, or None (none, or not theirs to see).

        Pending if only its command has been recorded so far.
        """
        transaction = self._view.get_transaction(transaction_id)
        if transaction is None:
            transaction = self._pending_transaction(transaction_id)
        if transaction is None or not self._may_see(actor, transaction):
            return None
        return transaction

    def list_transactions(
        self,
        actor: Actor,
        account_id: UUID | None = None,
        cursor: str | None = None,
        limit: int = STATE_TRANSACTIONS,
    ) -> Page[TransactionView]:
        """The most recent transactions the actor may see, optionally of one account."""
        viewer_id = None if actor.is_staff else actor.id
        if account_id is not None:
            self._check_account(actor, account_id)
            viewer_id = None  # every transaction of one's own account is one's own
        items, next_cursor = self._view.list_transactions(
            account_id, viewer_id=viewer_id, after=cursor, limit=_bounded(limit)
        )
        return Page(items, next_cursor)

    def state(self, actor: Actor) -> State:
        """What a page starts from: feed position, first accounts, recent activity."""
        position = self.feed_position()  # first: later messages may repeat, not skip
        return State(
            position=position,
            user=actor,
            accounts=self.list_accounts(actor, limit=STATE_ACCOUNTS),
            transactions=self.list_transactions(actor, limit=STATE_TRANSACTIONS).items,
        )

    def feed(self, actor: Actor, after: int, limit: int) -> list[FeedMessage]:
        """The feed messages after a position that the actor may see, in order."""
        viewer_id = None if actor.is_staff else actor.id
        return self._view.select_feed(after, limit, viewer_id=viewer_id)

    def feed_position(self) -> int:
        """The last position in the whole feed."""
        return self._view.max_feed_position()

    # Authorization

    def _check_account(self, actor: Actor, account_id: UUID) -> None:
        """AccountNotFoundError unless the account exists and the actor may use it."""
        self._authorize(actor, account_id, self._owner(account_id))

    @staticmethod
    def _authorize(actor: Actor, account_id: UUID, owner: UserRef | None) -> None:
        if actor.is_staff:
            return
        if owner is None or owner.id != actor.id:
            raise AccountNotFoundError(account_id)  # as if it did not exist

    def _owner(self, account_id: UUID) -> UserRef | None:
        """The account's owner (None: opened without one); AccountNotFoundError."""
        try:
            return self._owners[account_id]
        except KeyError:
            pass
        account = self._view.get_account(account_id)
        if account is None:  # opened a moment ago: the read model follows
            account = AccountView.from_account(
                self.bank.accounts.get_account(account_id)
            )
        self._remember(account_id, account.owner)
        return account.owner

    def _remember(self, account_id: UUID, owner: UserRef | None) -> None:
        if len(self._owners) >= KNOWN_OWNERS_LIMIT:
            self._owners.clear()
        self._owners[account_id] = owner

    def _may_see(self, actor: Actor, transaction: TransactionView) -> bool:
        """True if the transaction touches one of the actor's accounts, or staff.

        Not for having initiated it: a customer's own requests always touch their
        accounts, and one made as staff is not theirs to see once they are not.
        """
        if actor.is_staff:
            return True
        known = (transaction.debit_owner, transaction.credit_owner)
        if any(user is not None and user.id == actor.id for user in known):
            return True
        # An owner the read model has not filled in yet: ask the accounts.
        for account_id in (transaction.debit_account_id, transaction.credit_account_id):
            if account_id is None:
                continue
            try:
                owner = self._owner(account_id)
            except AccountNotFoundError:
                continue
            if owner is not None and owner.id == actor.id:
                return True
        return False

    def _pending_transaction(self, transaction_id: UUID) -> TransactionView | None:
        """The read model's shape of a recorded command not yet carried out."""
        command = self.bank.commands.get_command(transaction_id)
        if command is None:
            return None
        arguments = command.arguments()
        debit_account_id: UUID | None = arguments.get("debit_account_id")
        credit_account_id: UUID | None = arguments.get("credit_account_id")
        return TransactionView(
            id=transaction_id,
            kind=COMMAND_KINDS[type(command)],
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount=arguments["amount"],
            status="pending",
            error=None,
            created_at=command.created_on,
            updated_at=command.modified_on,
            initiated_by=arguments.get("initiated_by"),
            debit_owner=self._owner_or_none(debit_account_id),
            credit_owner=self._owner_or_none(credit_account_id),
        )

    def _owner_or_none(self, account_id: UUID | None) -> UserRef | None:
        if account_id is None:
            return None
        try:
            return self._owner(account_id)
        except AccountNotFoundError:
            return None


def require_staff(actor: Actor, what: str) -> None:
    """ForbiddenError unless the actor is staff ("Only staff may <what>")."""
    if not actor.is_staff:
        msg = f"Only staff may {what}"
        raise ForbiddenError(msg)


def _bounded(limit: int) -> int:
    """A page size between 1 and MAX_PAGE."""
    return min(max(limit, 1), MAX_PAGE)


def _not_empty(account: BankAccount) -> str:
    """Why the account cannot be closed, and what to do first."""
    label = AccountView.from_account(account).label
    label = label[:1].upper() + label[1:]
    if account.balance > 0:
        return (
            f"{label} holds {account.balance}: move the balance to another "
            "of the owner's accounts first, then close it"
        )
    return (
        f"{label} owes {-account.balance}: pay the debt in first "
        "(a deposit or a transfer into it), then close it"
    )

"""Account keeping shared by the simple application and the Accounts process."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from eventsourcing.application import AggregateNotFoundError

from bankaccounts.domainmodel import BankAccount, UserRef
from bankaccounts.exceptions import AccountNotFoundError
from bankaccounts.infrastructure import BankApplication, VersionConflictError
from bankaccounts.metrics import CONFLICT_RETRIES, VERSION_CONFLICTS
from bankaccounts.validation import to_account_id, to_limit, to_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from decimal import Decimal
    from uuid import UUID

    from eventsourcing.application import Application, ProcessingEvent
    from eventsourcing.domain import MutableOrImmutableAggregate
    from eventsourcing.persistence import Recording
    from eventsourcing.utils import EnvType

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: How often a client's write is tried while other writers take its versions first.
CONFLICT_ATTEMPTS = 8
#: The wait before the second attempt; it doubles with each conflict, jittered, up to
#: MAX_CONFLICT_DELAY, so that writers that collided do not collide again in step.
FIRST_CONFLICT_DELAY = 0.002
MAX_CONFLICT_DELAY = 0.25
#: A follower's page that has conflicted this many times in a row says so (and again
#: at every further multiple).
CONFLICT_WARNING_AFTER = CONFLICT_ATTEMPTS


def conflict_delays() -> Iterator[float]:
    """Seconds to wait after each conflict: exponential, jittered, capped."""
    delay = FIRST_CONFLICT_DELAY
    while True:
        yield delay * random.uniform(0.5, 1.5)  # noqa: S311 (jitter, not secrecy)
        delay = min(delay * 2, MAX_CONFLICT_DELAY)


def retry_on_conflict(application: Application[Any], write: Callable[[], T]) -> T:
    """Calls write again when another writer saved the same aggregate version first.

    Optimistic concurrency: the library refuses a second event at the same version,
    the application evicts the stale aggregates, and the next attempt reads them
    again, after a jittered, growing wait. Only a refused write of this application
    is retried: a conflict that arises elsewhere (in a follower the runner prompts
    after the commit) is not. A client's write gives up after CONFLICT_ATTEMPTS. A
    follower's page does not: each conflict means another writer changed an
    aggregate it needs (progress, which a fresh read takes up), and tearing the
    follower down would only bring it back to the same page. A page whose position
    another instance recorded is refused otherwise (PositionTakenError), and not
    retried. A closing application stops retrying.
    """
    delays = conflict_delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            return write()
        except VersionConflictError as error:
            if error.application_name != application.name:
                raise
            VERSION_CONFLICTS.labels(application.name).inc()
            if not error.is_page and attempt >= CONFLICT_ATTEMPTS:
                raise
            if error.is_page and attempt % CONFLICT_WARNING_AFTER == 0:
                logger.warning(
                    "%s: a page has conflicted %d times in a row with other "
                    "writers of its aggregates; still retrying",
                    application.name,
                    attempt,
                )
            if application.closing.wait(next(delays)):
                raise
            CONFLICT_RETRIES.labels(application.name).inc()


class AccountApplication(BankApplication):
    """Opens, finds, limits and closes bank accounts."""

    snapshotting_intervals: ClassVar[
        dict[type[MutableOrImmutableAggregate[UUID]], int]
    ] = {BankAccount: 100}

    def __init__(self, env: EnvType | None = None) -> None:
        """Remembers, per thread, where its last write landed in its log."""
        super().__init__(env)
        self._written = threading.local()

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        recordings = super()._record(processing_event)
        if recordings:
            self._written.position = recordings[-1].notification.id
        return recordings

    def last_written_position(self) -> int | None:
        """The notification id of the last event this thread recorded (or None).

        A client that wrote an account waits for a follower (the read model) to
        have processed that far before it is answered: it reads its own writes.
        """
        position: int | None = getattr(self._written, "position", None)
        return position

    def writing(self) -> contextlib.AbstractContextManager[object]:
        """Guards a read-modify-write of accounts; subclasses with threads lock it."""
        return contextlib.nullcontext()

    def create_account(
        self, name: str | None = None, *, owner: UserRef | None = None
    ) -> UUID:
        """Opens an account with an optional display name and owner; returns its id."""
        if owner is not None and not isinstance(owner, UserRef):
            msg = f"owner must be a UserRef or None, not {owner!r}"
            raise TypeError(msg)
        account = BankAccount(name=to_name(name), owner=owner)
        with self.writing():
            self.save(account)
        return account.id

    def get_account(self, account_id: UUID) -> BankAccount:
        """Returns the account, or raises AccountNotFoundError."""
        account_id = to_account_id(account_id)
        try:
            return cast("BankAccount", self.repository.get(account_id))
        except AggregateNotFoundError:
            raise AccountNotFoundError(account_id) from None

    def get_balance(self, account_id: UUID) -> Decimal:
        """Returns the account's balance."""
        return self.get_account(account_id).balance

    def get_overdraft_limit(self, account_id: UUID) -> Decimal:
        """Returns the account's overdraft limit."""
        return self.get_account(account_id).overdraft_limit

    def set_overdraft_limit(
        self, account_id: UUID, overdraft_limit: Decimal | str | int
    ) -> None:
        """Sets how far below zero the account's balance may go."""
        limit = to_limit(overdraft_limit)

        def write() -> None:
            with self.writing():
                account = self.get_account(account_id)
                account.set_overdraft_limit(limit)
                self.save(account)

        retry_on_conflict(self, write)

    def close_account(self, account_id: UUID) -> None:
        """Closes the account; closing it again does nothing."""

        def write() -> None:
            with self.writing():
                account = self.get_account(account_id)
                account.close()
                self.save(account)

        retry_on_conflict(self, write)

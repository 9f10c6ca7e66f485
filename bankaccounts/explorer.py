"""Looking inside: an account's stored events and snapshots, its state at any version
or time, and the applications' notification logs.

Everything is read back through the applications' own recorders and decoded by
their own mappers (the library's transcoders and the bank's transcodings), so there
is no second copy of the stored formats; `event_json` is the one conversion of an
event's attributes to JSON, which the journey's timeline uses too.

Who may see what is decided as everywhere else, by the use cases (`Banking`): a
customer explores their own accounts (another's is 404, as if it did not exist);
the notification logs show every customer's events, so they are for staff only.

Time travel is rebuilt from the events, never from the read model: the library's
`repository.get(id, version=N)` starts from the nearest snapshot at or below N (the
Accounts application takes one every 100 events), so it costs one snapshot read and
at most 99 events whatever N is. A time is turned into a version by a binary search
over single-event reads: about 17 reads for 100,000 events.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, cast
from uuid import UUID

from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic

from bankaccounts.domainmodel import OPENED_TOPIC, BankAccount, UserRef
from bankaccounts.exceptions import InvalidCursorError, TransactionError
from bankaccounts.readmodel import AccountView
from bankaccounts.usecases import MAX_PAGE, Page, require_staff

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from eventsourcing.application import Application
    from eventsourcing.persistence import StoredEvent

    from bankaccounts.accountapplication import AccountApplication
    from bankaccounts.usecases import Banking
    from bankaccounts.users import Actor

#: The applications whose notification logs staff may read: the system's four.
#: (Users is not offered: its events hold password hashes and token digests.)
LOGGED_APPLICATIONS = ("Commands", "Sagas", "Accounts", "Interface")
#: The most notifications one request reads while filtering by aggregate id.
MAX_SCANNED = 10 * MAX_PAGE
#: Attributes every event has, shown beside its data rather than in it.
ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp"})
#: Topics that events were stored under before their class was renamed.
OLD_TOPICS: dict[str, tuple[str, ...]] = {
    get_topic(BankAccount.Created): (OPENED_TOPIC,)
}


class VersionNotFoundError(LookupError):
    """The account had no such version (or did not exist yet at that time): 404."""


class ApplicationNotFoundError(LookupError):
    """No application of this name offers its notification log: 404."""


class ExplorerBank(Protocol):
    """The bank as the explorer needs it (deploy.bootstrap.Bank or DistributedBank)."""

    @property
    def accounts(self) -> AccountApplication:
        """Keeps the accounts."""
        ...

    def applications(self) -> dict[str, Application[Any]]:
        """The system's applications by name."""
        ...


@dataclass(frozen=True)
class StoredEventView:
    """One stored event of an aggregate, decoded: its place, kind, time and data."""

    version: int
    type: str
    timestamp: datetime
    data: dict[str, Any]
    snapshot: bool = False

    def to_json(self) -> dict[str, Any]:
        """{"version", "type", "timestamp", "data"} (+ "snapshot": true)."""
        answer: dict[str, Any] = {
            "version": self.version,
            "type": self.type,
            "timestamp": self.timestamp.isoformat(),
            "data": self.data,
        }
        if self.snapshot:
            answer["snapshot"] = True
        return answer


@dataclass(frozen=True)
class NotificationView:
    """One event of an application's notification log, decoded."""

    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    type: str
    timestamp: datetime
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """{"id", "originator_id", "originator_version", "topic", "type", ...}."""
        return {
            "id": self.id,
            "originator_id": str(self.originator_id),
            "originator_version": self.originator_version,
            "topic": self.topic,
            "type": self.type,
            "timestamp": self.timestamp.isoformat(),
            "data": self.data,
        }


@dataclass(frozen=True)
class AccountAtVersion:
    """An account as it was after its first `version` events."""

    account: AccountView
    version: int

    def to_json(self) -> dict[str, Any]:
        """The account's JSON (the one serializer) and "version"."""
        return {**self.account.to_json(), "version": self.version}


class Explorer:
    """The explorer's use cases, each taking the acting user first."""

    def __init__(self, bank: ExplorerBank, banking: Banking) -> None:
        """Reads this bank's applications; `banking` decides who may see what."""
        self.bank = bank
        self.banking = banking

    # An account's events and snapshots

    def account_events(
        self,
        actor: Actor,
        account_id: UUID,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[StoredEventView]:
        """A page of the account's stored events in version order.

        The cursor is the last version of the previous page (as text); the next
        page's cursor is None after the last event.
        """
        self.banking.account(actor, account_id)
        accounts = self.bank.accounts
        after = version_cursor(cursor)
        limit = bounded(limit)
        stored = accounts.recorder.select_events(account_id, gt=after, limit=limit + 1)
        items = [event_view(accounts.mapper.to_domain_event(s)) for s in stored[:limit]]
        more = len(stored) > limit
        return Page(items, str(items[-1].version) if more and items else None)

    def account_snapshots(
        self,
        actor: Actor,
        account_id: UUID,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[StoredEventView]:
        """A page of the account's snapshots in version order (none: an empty page)."""
        self.banking.account(actor, account_id)
        accounts = self.bank.accounts
        if accounts.snapshots is None:
            return Page([], None)
        after = version_cursor(cursor)
        limit = bounded(limit)
        store = accounts.snapshots
        stored = store.recorder.select_events(account_id, gt=after, limit=limit + 1)
        items = [
            event_view(store.mapper.to_domain_event(s), snapshot=True)
            for s in stored[:limit]
        ]
        more = len(stored) > limit
        return Page(items, str(items[-1].version) if more and items else None)

    # Time travel

    def account_at_version(
        self, actor: Actor, account_id: UUID, version: int
    ) -> AccountAtVersion:
        """The account as it was after its first `version` events.

        VersionNotFoundError past its last version; ValueError below 1.
        """
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            msg = f"version must be a whole number of at least 1, not {version!r}"
            raise ValueError(msg)
        self.banking.account(actor, account_id)
        account = cast(
            "BankAccount",
            self.bank.accounts.repository.get(account_id, version=version),
        )
        if account.version != version:
            msg = f"Account {account_id} has {account.version} versions, not {version}"
            raise VersionNotFoundError(msg)
        return AccountAtVersion(AccountView.from_account(account), version)

    def account_at_time(
        self, actor: Actor, account_id: UUID, at: datetime
    ) -> AccountAtVersion:
        """The account as it was at a time (its last event then, and those before).

        VersionNotFoundError if it did not exist yet. A time without an offset is
        taken as UTC.
        """
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        self.banking.account(actor, account_id)
        version = self.version_at(account_id, at)
        if version is None:
            msg = f"Account {account_id} did not exist at {at.isoformat()}"
            raise VersionNotFoundError(msg)
        return self.account_at_version(actor, account_id, version)

    def version_at(self, account_id: UUID, at: datetime) -> int | None:
        """The last version whose event is timed at or before `at` (None: none).

        A binary search over single-event reads: log2(versions) + 1 reads.
        """
        accounts = self.bank.accounts
        recorder = accounts.recorder
        last = recorder.select_events(account_id, desc=True, limit=1)
        if not last:
            return None

        def timestamp(version: int) -> datetime:
            stored = recorder.select_events(
                account_id, gt=version - 1, lte=version, limit=1
            )
            when: datetime = _decoded(accounts, stored[0]).timestamp
            return when

        low, high = 0, last[0].originator_version  # low: known <= at (0: none yet)
        if _decoded(accounts, last[0]).timestamp <= at:
            return high
        high -= 1  # the last is after `at`: the answer is below it
        while low < high:
            middle = (low + high + 1) // 2
            if timestamp(middle) <= at:
                low = middle
            else:
                high = middle - 1
        return low or None

    # Notification logs

    def notifications(
        self,
        actor: Actor,
        app_name: str,
        after: int = 0,
        limit: int = 100,
        type: str | None = None,  # noqa: A002 (the query's name)
        originator_id: UUID | None = None,
    ) -> Page[NotificationView]:
        """A section of an application's notification log after a position (staff).

        `type` keeps the events of that name (`Created`, or qualified:
        `BankAccount.Created`); `originator_id` keeps one aggregate's. Filtering by
        aggregate reads at most MAX_SCANNED notifications per page, so a page may
        hold fewer than `limit` (even none) and still have a next one. The next
        page's cursor is the last notification id read.
        """
        require_staff(actor, "read the notification logs")
        if app_name not in LOGGED_APPLICATIONS:
            msg = f"No notification log named {app_name!r}"
            raise ApplicationNotFoundError(msg)
        app = self.bank.applications()[app_name]
        limit = bounded(limit)
        topics: Sequence[str] = ()
        if type is not None:
            topics = topics_of(type)
            if not topics:
                return Page([], None)
        recorder = app.recorder
        # Filtered by aggregate, whole pages are read and the wanted kept.
        size = limit if originator_id is None else MAX_PAGE
        items: list[NotificationView] = []
        position = max(after, 0)
        scanned = 0
        while True:
            section = recorder.select_notifications(
                position, size, topics=topics, inclusive_of_start=False
            )
            for notification in section:
                position = notification.id
                scanned += 1
                if originator_id is None or _same_id(
                    notification.originator_id, originator_id
                ):
                    items.append(notification_view(app, notification))
                    if len(items) == limit:
                        break
            if len(items) == limit:
                more = position < (recorder.max_notification_id() or 0)
                break
            if len(section) < size:
                more = False
                break
            if scanned >= MAX_SCANNED:
                more = True
                break
        return Page(items, str(position) if more else None)


def event_view(domain_event: Any, *, snapshot: bool = False) -> StoredEventView:
    """A decoded event (or snapshot) as the explorer shows it."""
    return StoredEventView(
        version=domain_event.originator_version,
        type="Snapshot" if snapshot else type(domain_event).__name__,
        timestamp=domain_event.timestamp,
        data=event_json(domain_event),
        snapshot=snapshot,
    )


def notification_view(app: Application[Any], notification: Any) -> NotificationView:
    """A notification decoded by its application's own mapper."""
    domain_event = _decoded(app, notification)
    return NotificationView(
        id=notification.id,
        originator_id=domain_event.originator_id,
        originator_version=domain_event.originator_version,
        topic=notification.topic,
        type=type(domain_event).__name__,
        timestamp=domain_event.timestamp,
        data=event_json(domain_event),
    )


def event_json(domain_event: Any) -> dict[str, Any]:
    """An event's attributes as JSON-ready values (not its id, version or time).

    Money and ids are strings, times ISO 8601, a user {"id", "username"}, a
    transaction error {"type", "message"}; lists and dicts are converted within.
    """
    return {
        name: json_value(value)
        for name, value in vars(domain_event).items()
        if name not in ENVELOPE
    }


def json_value(value: Any) -> Any:
    """One attribute's value as JSON."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UserRef):
        return value.to_json()
    if isinstance(value, TransactionError):
        return {"type": type(value).__name__, "message": str(value)}
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(item) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_value(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": str(value)}
    return str(value)


def topics_of(type_name: str) -> tuple[str, ...]:
    """The topics of the bank's event classes of this name (and their old topics).

    A bare name (`Created`) or one qualified by its aggregate (`BankAccount.Created`).
    """
    topics: list[str] = []
    cls: type
    for cls in _event_classes(DomainEvent):
        if not cls.__module__.startswith("bankaccounts."):
            continue
        if type_name in (cls.__name__, cls.__qualname__):
            # Not get_topic: the library's decorators make subclasses of the same
            # name, and get_topic would register each, refusing the second.
            topic = f"{cls.__module__}:{cls.__qualname__}"
            topics.extend((topic, *OLD_TOPICS.get(topic, ())))
    return tuple(dict.fromkeys(topics))


def _event_classes(base: type) -> Iterable[type]:
    subclass: type
    for subclass in base.__subclasses__():
        yield subclass
        yield from _event_classes(subclass)


def _decoded(app: Application[Any], stored: StoredEvent) -> Any:
    """The domain event (or snapshot) that the application's own mapper makes."""
    return app.mapper.to_domain_event(stored)


def version_cursor(cursor: str | None) -> int:
    """The version a page starts after (0: the first page); InvalidCursorError."""
    if cursor is None or cursor == "":
        return 0
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 15:
        msg = "cursor must be one this server gave (a version)"
        raise InvalidCursorError(msg)
    return int(cursor)


def bounded(limit: int) -> int:
    """A page size between 1 and MAX_PAGE."""
    return min(max(limit, 1), MAX_PAGE)


def _same_id(stored: object, wanted: UUID) -> bool:
    """Whether a notification's originator id (UUID or a store's text) is wanted."""
    if isinstance(stored, UUID):
        return stored == wanted
    try:
        return UUID(str(stored)) == wanted
    except ValueError:
        return False

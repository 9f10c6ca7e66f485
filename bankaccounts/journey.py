"""A transaction's journey: every stored event of it, in every application, in order.

A transfer is a command in Commands, a saga in Sagas (and, if its credit fails, a
refund saga), transactions appended to accounts in Accounts, and messages in the
interface's feed. Each is found by an indexed read, never a scan, so a timeline
costs the same whatever the size of the stores:

- the command and the sagas by their ids, which are the transaction's id or derived
  from it (RefundFundsSaga.create_id, AbortedTransaction.create_id,
  RejectedTransaction.create_id): the events' primary key, with their
  notification ids (storedevents.select_aggregate_notifications);
- the accounts' events through the index the interface writes as it processes them
  (transaction id -> account, version, notification id), then each by its key;
- the feed's messages through the feed's index by transaction id.

Every event is decoded by its application's own mapper (transcoder, cipher and
compressor included), as the application itself would read it, and its attributes
shown as the explorer shows them (explorer.event_json).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from bankaccounts.domainmodel import BankAccount, RejectedTransaction
from bankaccounts.exceptions import AccountNotFoundError
from bankaccounts.explorer import event_json
from bankaccounts.storedevents import (
    select_aggregate_notifications,
    select_stored_events,
)
from bankaccounts.system.sagas import AbortedTransaction, RefundFundsSaga

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from uuid import UUID

    from eventsourcing.application import Application
    from eventsourcing.persistence import Notification

    from bankaccounts.readmodel import FeedEntry, ReadModelRecorder
    from bankaccounts.usecases import Banking
    from bankaccounts.users import Actor

#: The applications in the order of the pipes: a tie in time goes to the earlier.
APPLICATIONS = ("Commands", "Sagas", "Accounts", "Interface")


class HasApplications(Protocol):
    """The bank as a timeline needs it (Bank or DistributedBank)."""

    def applications(self) -> dict[str, Application[Any]]:
        """The system's applications by name."""
        ...


@dataclass(frozen=True)
class Step:
    """One stored event of a transaction, or one of its feed messages."""

    application: str
    type: str  # the event class's name, or the feed message's type
    timestamp: datetime
    position: int  # notification id in the application (Interface: feed position)
    originator_id: UUID
    # None for a feed message, and for another's account's event to a customer.
    originator_version: int | None
    aggregate: str | None  # the aggregate class's name (None for a feed message)
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The step as the API shows it."""
        return {
            "application": self.application,
            "type": self.type,
            "timestamp": self.timestamp.isoformat(),
            "position": self.position,
            "originator_id": str(self.originator_id),
            "originator_version": self.originator_version,
            "aggregate": self.aggregate,
            "data": self.data,
        }

    @property
    def order(self) -> tuple[datetime, int, int]:
        """Time first; a tie goes to the earlier application, then position."""
        return (self.timestamp, APPLICATIONS.index(self.application), self.position)


@dataclass(frozen=True)
class Timeline:
    """A transaction's steps through the system, in time order."""

    transaction_id: UUID
    steps: list[Step]

    def to_json(self) -> dict[str, Any]:
        """{"transaction_id", "steps": [...]}."""
        return {
            "transaction_id": str(self.transaction_id),
            "steps": [step.to_json() for step in self.steps],
        }


class Journeys:
    """Timelines of transactions, for those who may see them (through Banking)."""

    def __init__(self, bank: HasApplications, banking: Banking) -> None:
        """Reads the bank's applications; Banking says who may see what."""
        self.bank = bank
        self.banking = banking

    def timeline(self, actor: Actor, transaction_id: UUID) -> Timeline | None:
        """The transaction's steps; None if there is none the actor may see."""
        transaction = self.banking.transaction(actor, transaction_id)
        if transaction is None:
            return None
        apps = self.bank.applications()
        refund_id = RefundFundsSaga.create_id(transaction_id)
        ids = [transaction_id, refund_id]
        # The accounts the command names, and the one a refund credits (the debit).
        rejections = [
            RejectedTransaction.create_id(transaction_id, account_id)
            for account_id in (
                transaction.debit_account_id,
                transaction.credit_account_id,
            )
            if account_id is not None
        ]
        if transaction.debit_account_id is not None:
            rejections.append(
                RejectedTransaction.create_id(refund_id, transaction.debit_account_id)
            )
        steps = [
            *_aggregate_steps(apps["Commands"], [transaction_id]),
            *_aggregate_steps(
                apps["Sagas"],
                [*ids, AbortedTransaction.create_id(transaction_id)],
            ),
            *_account_steps(apps["Accounts"], _view(apps), ids),
            *_aggregate_steps(apps["Accounts"], rejections),
        ]
        viewer_id = None if actor.is_staff else actor.id
        steps.extend(
            _feed_step(entry)
            for entry in _view(apps).select_transaction_feed(ids)
            # A message shows an account's balance to its owner alone.
            if entry.message.is_for(viewer_id)
        )
        if not actor.is_staff:
            steps = self._as_seen_by(actor, steps)
        return Timeline(transaction_id, sorted(steps, key=lambda step: step.order))

    def _as_seen_by(self, actor: Actor, steps: list[Step]) -> list[Step]:
        """The steps with another's account's versions left out (None).

        A customer sees the debit or credit on the other account of a transfer, as
        their statement does, but not that account's version: how many events it
        has had is its owner's business, not theirs.
        """
        own: dict[UUID, bool] = {}

        def is_own(account_id: UUID) -> bool:
            if account_id not in own:
                try:
                    self.banking.account(actor, account_id)
                except AccountNotFoundError:
                    own[account_id] = False
                else:
                    own[account_id] = True
            return own[account_id]

        return [
            replace(step, originator_version=None)
            if step.application == "Accounts"
            and step.aggregate == BankAccount.__name__
            and not is_own(step.originator_id)
            else step
            for step in steps
        ]


def _view(apps: Mapping[str, Application[Any]]) -> ReadModelRecorder:
    view: ReadModelRecorder = apps["Interface"].view  # type: ignore[attr-defined]
    return view


def _aggregate_steps(app: Application[Any], originator_ids: list[UUID]) -> list[Step]:
    """The events of these aggregates, by their key."""
    found = select_aggregate_notifications(app.recorder, originator_ids)
    steps: list[Step] = []
    for notifications in found.values():
        events = [
            (notification, app.mapper.to_domain_event(notification))
            for notification in notifications
        ]
        # Events declared on a base class (Saga.Errored) name the base: the
        # aggregate's class is the one its created event names.
        topic = getattr(events[0][1], "originator_topic", None) if events else None
        aggregate = topic.rsplit(":", 1)[-1] if isinstance(topic, str) else None
        steps.extend(_event_step(app, n, e, aggregate) for n, e in events)
    return steps


def _account_steps(
    accounts: Application[Any], view: ReadModelRecorder, transaction_ids: list[UUID]
) -> list[Step]:
    """The accounts' events of these transactions, through the interface's index."""
    indexed = [
        e
        for e in view.select_transaction_events(transaction_ids)
        if e.application == accounts.name
    ]
    keys = [(e.originator_id, e.originator_version) for e in indexed]
    stored = select_stored_events(accounts.recorder, keys)
    if stored is None:  # pragma: no cover (every store answers)
        msg = f"no stored events from {type(accounts.recorder).__name__}"
        raise NotImplementedError(msg)
    return [
        _event_step(accounts, stored[key], accounts.mapper.to_domain_event(stored[key]))
        for key in keys
        if key in stored
    ]


def _event_step(
    app: Application[Any],
    notification: Notification,
    event: Any,
    aggregate: str | None = None,
) -> Step:
    """A stored event, decoded by its application's own mapper."""
    event_class = type(event)
    qualname = event_class.__qualname__
    if aggregate is None and "." in qualname:
        aggregate = qualname.rsplit(".", 1)[0]
    return Step(
        application=app.name,
        type=event_class.__name__,
        timestamp=event.timestamp,
        position=notification.id,
        originator_id=notification.originator_id,  # type: ignore[arg-type]
        originator_version=notification.originator_version,
        aggregate=aggregate,
        data=event_json(event),
    )


def _feed_step(entry: FeedEntry) -> Step:
    message = entry.message
    return Step(
        application="Interface",
        type=message.type,
        timestamp=entry.at,
        position=message.position,
        originator_id=entry.transaction_id,
        originator_version=None,
        aggregate=None,
        data=message.data,
    )

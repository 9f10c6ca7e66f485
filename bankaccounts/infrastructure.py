"""What every application of the bank shares: transcodings, caching, data files."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    OperationalError,
    Recording,
    Transcoding,
)
from eventsourcing.utils import get_topic

from bankaccounts.domainmodel import UserRef
from bankaccounts.exceptions import (
    AccountClosedError,
    AccountNotFoundError,
    BalanceLimitError,
    InsufficientFundsError,
    ProcessingError,
    TransactionError,
)
from bankaccounts.storedevents import select_stored_events

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventsourcing.domain import DomainEventProtocol
    from eventsourcing.persistence import (
        InfrastructureFactory,
        Notification,
        StoredEvent,
    )
    from eventsourcing.utils import Environment

    from bankaccounts.storedevents import Position


class TransactionErrorAsDict(Transcoding):
    """Stores a transaction error as its account id, so it comes back equal."""

    def __init__(self, error_type: type[TransactionError]) -> None:
        """Transcodes one concrete error type."""
        self.type = error_type
        self.name = error_type.__name__

    def encode(self, obj: TransactionError) -> str:
        """The account id as hex."""
        return obj.account_id.hex

    def decode(self, data: str) -> TransactionError:
        """The error about the same account."""
        error_type: type[TransactionError] = self.type
        return error_type(UUID(data))


TRANSACTION_ERROR_TYPES: tuple[type[TransactionError], ...] = (
    TransactionError,
    AccountClosedError,
    InsufficientFundsError,
    AccountNotFoundError,
    ProcessingError,
    BalanceLimitError,
)


#: The most events a follower pulls and records in one transaction.
PAGE_SIZE = 500


class UserRefAsDict(Transcoding):
    """Stores a UserRef as its id and username."""

    type = UserRef
    name = "user_ref"

    def encode(self, obj: UserRef) -> dict[str, str]:
        """The user's id (as text) and username."""
        return {"id": str(obj.id), "username": obj.username}

    def decode(self, data: dict[str, str]) -> UserRef:
        """The UserRef back."""
        return UserRef(id=UUID(data["id"]), username=data["username"])


class VersionConflictError(IntegrityError):
    """An application's write was refused: another writer recorded first."""

    def __init__(
        self, application_name: str, cause: Exception, *, is_page: bool = False
    ) -> None:
        """Names the application whose write did not commit, and what it was."""
        super().__init__(f"{application_name}: {cause}")
        self.application_name = application_name
        #: The write was a follower's page of upstream events (it carried tracking).
        self.is_page = is_page


class PositionTakenError(IntegrityError):
    """A follower's page was refused: another instance recorded its position first.

    Processing the page again would be refused again, so it is not retried; the
    follower starts again from the recorded position.
    """

    def __init__(self, application_name: str, cause: Exception) -> None:
        """Names the follower whose page did not commit."""
        super().__init__(
            f"{application_name}: position taken by another instance: {cause}"
        )
        self.application_name = application_name


class BankApplication(Application[UUID]):
    """An application with a bounded aggregate cache and the bank's transcodings.

    The cache keeps the cost of an operation flat as an account's history grows. A
    cached aggregate is not fast-forwarded with a query for newer events on every
    read (the library's default; set AGGREGATE_CACHE_FASTFORWARD=y to have it):
    where another process wrote the aggregate since, the library's optimistic
    concurrency refuses the save, the stale aggregate is evicted, and the caller's
    retry (retry_on_conflict) reads it afresh. So a write is never lost or based on
    a stale state, and the common case costs no extra read.
    """

    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
    }
    log_section_size = PAGE_SIZE  # a follower may pull up to this many events at once

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        """The library's factory; on MySQL or MariaDB, with recorders in commit order.

        The eventsourcing-sqlalchemy plugin orders commits on PostgreSQL only (see
        bankaccounts/mysql.py); its URL's dialect alone switches the guard on.
        """
        factory = super().construct_factory(env)
        if type(factory).__module__.startswith("eventsourcing_sqlalchemy"):
            from bankaccounts.mysql import mysql_factory

            return mysql_factory(factory)
        return factory

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """Adds the transaction errors to the library's transcodings."""
        super().register_transcodings(transcoder)
        for error_type in TRANSACTION_ERROR_TYPES:
            transcoder.register(TransactionErrorAsDict(error_type))
        transcoder.register(UserRefAsDict())

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshots an aggregate from memory when it is at the snapshot's version.

        The library rebuilds the aggregate from the store for each snapshot, which
        costs a read of up to a snapshot interval of events (in POPO, a scan of the
        whole store): a third of a transfer's time in memory. The aggregate that was
        just recorded is that state already. Otherwise (it moved on within the same
        page of events) the library's way is used.
        """
        if not (self.snapshots and self.snapshotting_intervals):
            return
        for event in processing_event.events:
            aggregate: Any = processing_event.aggregates.get(event.originator_id)
            interval = self.snapshotting_intervals.get(type(aggregate))
            if interval is None or event.originator_version % interval:
                continue
            if aggregate.version == event.originator_version:
                snapshot_class = getattr(type(aggregate), "Snapshot", Snapshot)
                self.snapshots.put([snapshot_class.take(aggregate)])
            else:
                self.take_snapshot(event.originator_id, event.originator_version)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """Records; tells a write that is done from one another writer refused.

        A refused or failed insert may be this very write, committed by an earlier
        attempt whose acknowledgement was lost (the library retries an insert after
        an OperationalError): then its events are in the store and the write is
        done. Otherwise a refused write raises VersionConflictError, naming this
        application, having forgotten the stale aggregates, so that a retry
        (retry_on_conflict) repeats only a write of its own that did not commit.
        Nothing is read unless the insert failed.
        """
        try:
            return super()._record(processing_event)
        except (IntegrityError, OperationalError) as error:
            stored = select_stored_events(
                self.recorder,
                [
                    (e.originator_id, e.originator_version)
                    for e in processing_event.events
                ],
            )
            recordings = self._own_recordings(processing_event, stored)
            if recordings is not None:
                if self.repository.cache is not None:  # as the library does on success
                    for aggregate_id, aggregate in processing_event.aggregates.items():
                        self.repository.cache.put(aggregate_id, aggregate)
                return recordings
            if isinstance(error, OperationalError):
                raise  # not stored: the write failed, and may be tried again
            if self.repository.cache is not None:
                for aggregate_id in processing_event.aggregates:
                    with contextlib.suppress(KeyError):
                        self.repository.cache.get(aggregate_id, evict=True)
            raise self._conflict(processing_event, stored, error) from error

    def _own_recordings(
        self,
        processing_event: ProcessingEvent[UUID],
        stored: dict[Position, Notification] | None,
    ) -> list[Recording[UUID]] | None:
        """The recordings of this write if all its events are stored, else None.

        Events are stored all or none, so all of them stored, each equal to this
        write's own (same state, its timestamp included), means this write
        committed. A write of a tracking record only is done once the position is
        recorded.
        """
        if stored is None:  # a store that can't be asked
            return None
        tracking = processing_event.tracking
        if not processing_event.events:
            recorder: Any = self.recorder
            if tracking is not None and recorder.has_tracking_id(
                tracking.application_name, tracking.notification_id
            ):
                return []
            return None
        recordings = []
        for event in processing_event.events:
            notification = stored.get((event.originator_id, event.originator_version))
            if notification is None or not self._is_same_event(event, notification):
                return None
            recordings.append(Recording(event, notification))
        return recordings

    def _is_same_event(
        self, event: DomainEventProtocol[UUID], stored: StoredEvent
    ) -> bool:
        if stored.topic != get_topic(type(event)):
            return False
        if stored.state == self.mapper.to_stored_event(event).state:
            return True
        # A cipher makes each encoding differ: compare what the stored one means.
        return bool(self.mapper.to_domain_event(stored) == event)

    def _conflict(
        self,
        processing_event: ProcessingEvent[UUID],
        stored: dict[Position, Notification] | None,
        error: IntegrityError,
    ) -> IntegrityError:
        """The error for a refused write: a version taken, or a follower's position."""
        if processing_event.tracking is None:
            return VersionConflictError(self.name, error)
        if stored is None or stored:
            # Another writer took a version this page wanted: the page processed
            # again from the aggregates as they now are may well commit.
            return VersionConflictError(self.name, error, is_page=True)
        # No version was taken, so the tracking record was refused.
        return PositionTakenError(self.name, error)


def sqlite_env(data_dir: str | Path, names: Iterable[str]) -> dict[str, str]:
    """Environment that gives each named application its own SQLite file in data_dir.

    The library's SQLite recorder does not prefix table names, so applications that
    shared one file would mix their events.
    """
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    env: dict[str, Any] = {"PERSISTENCE_MODULE": "eventsourcing.sqlite"}
    for name in names:
        env[f"{name.upper()}_SQLITE_DBNAME"] = str(directory / f"{name.lower()}.sqlite")
    return env

"""What every application of the bank shares: transcodings, caching, data files."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Transcoding

from bankaccounts.exceptions import (
    AccountClosedError,
    AccountNotFoundError,
    InsufficientFundsError,
    TransactionError,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventsourcing.persistence import Recording


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
)


#: The most events a follower pulls and records in one transaction.
PAGE_SIZE = 500


class VersionConflictError(IntegrityError):
    """An application's write was refused: another writer recorded first."""

    def __init__(self, application_name: str, cause: Exception) -> None:
        """Names the application whose write did not commit."""
        super().__init__(f"{application_name}: {cause}")
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

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """Adds the transaction errors to the library's transcodings."""
        super().register_transcodings(transcoder)
        for error_type in TRANSACTION_ERROR_TYPES:
            transcoder.register(TransactionErrorAsDict(error_type))

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
        """Records; if another writer got there first, forgets the stale aggregates.

        Raises VersionConflictError, naming this application, so that a retry
        (retry_on_conflict) repeats only a write of its own that did not commit.
        """
        try:
            return super()._record(processing_event)
        except IntegrityError as error:
            if self.repository.cache is not None:
                for aggregate_id in processing_event.aggregates:
                    with contextlib.suppress(KeyError):
                        self.repository.cache.get(aggregate_id, evict=True)
            raise VersionConflictError(self.name, error) from error


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

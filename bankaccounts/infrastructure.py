"""What every application of the bank shares: transcodings, caching, data files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application, Repository
from eventsourcing.persistence import JSONTranscoder, Transcoding
from eventsourcing.popo import POPOFactory

from bankaccounts.exceptions import (
    AccountClosedError,
    AccountNotFoundError,
    InsufficientFundsError,
    TransactionError,
)

if TYPE_CHECKING:
    from collections.abc import Iterable


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


class BankApplication(Application[UUID]):
    """An application with a bounded aggregate cache and the bank's transcodings.

    The cache keeps the cost of an operation flat as an account's history grows; in
    memory (POPO) nothing else can write, so the cached aggregate is current and is
    not fast-forwarded with a scan of its events.
    """

    env: ClassVar[dict[str, str]] = {"AGGREGATE_CACHE_MAXSIZE": "10000"}

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """Adds the transaction errors to the library's transcodings."""
        super().register_transcodings(transcoder)
        for error_type in TRANSACTION_ERROR_TYPES:
            transcoder.register(TransactionErrorAsDict(error_type))

    def construct_repository(self) -> Repository[UUID]:
        """Turns off fast-forwarding in memory, where the cache is the only writer."""
        repository = super().construct_repository()
        if isinstance(self.factory, POPOFactory):
            repository.fastforward = False
        return repository


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

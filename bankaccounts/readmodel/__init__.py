"""The interface's read model: views of accounts, transactions, statements, the feed.

views.py holds the rows and messages, paging.py the page cursors, recorder.py the
recorder interface and the in-memory recorder; sqlite.py, postgres.py and mysql.py
the recorders of each store.
"""

from bankaccounts.readmodel.recorder import (
    READ_MODEL_VERSION,
    POPOReadModelRecorder,
    ReadModelOutdatedError,
    ReadModelRecorder,
)
from bankaccounts.readmodel.views import (
    AccountRef,
    AccountSort,
    AccountView,
    EntryKind,
    FeedEntry,
    FeedMessage,
    StatementEntry,
    TransactionEvent,
    TransactionKind,
    TransactionStatus,
    TransactionView,
    ViewChanges,
)

__all__ = [
    "READ_MODEL_VERSION",
    "AccountRef",
    "AccountSort",
    "AccountView",
    "EntryKind",
    "FeedEntry",
    "FeedMessage",
    "POPOReadModelRecorder",
    "ReadModelOutdatedError",
    "ReadModelRecorder",
    "StatementEntry",
    "TransactionEvent",
    "TransactionKind",
    "TransactionStatus",
    "TransactionView",
    "ViewChanges",
]

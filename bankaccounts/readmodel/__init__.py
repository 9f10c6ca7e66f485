"""The interface's read model: views of accounts and transactions, the feed, recorders.

views.py holds the rows and messages, recorder.py the recorder interface and the
in-memory recorder; sqlite.py, postgres.py and mysql.py the recorders of each store.
"""

from bankaccounts.readmodel.recorder import POPOReadModelRecorder, ReadModelRecorder
from bankaccounts.readmodel.views import (
    AccountView,
    FeedMessage,
    TransactionKind,
    TransactionStatus,
    TransactionView,
    ViewChanges,
)

__all__ = [
    "AccountView",
    "FeedMessage",
    "POPOReadModelRecorder",
    "ReadModelRecorder",
    "TransactionKind",
    "TransactionStatus",
    "TransactionView",
    "ViewChanges",
]

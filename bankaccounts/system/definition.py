"""The system definition: which application follows which."""

from __future__ import annotations

from eventsourcing.system import System

from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import Commands
from bankaccounts.system.interface import InterfaceApplication
from bankaccounts.system.sagas import Sagas


class BankAccountSystem(System):
    """Commands -> Sagas -> Accounts -> Sagas, and the interface following both."""

    def __init__(self) -> None:
        """Defines the pipes of the system."""
        super().__init__(
            pipes=[
                [Commands, Sagas, Accounts, Sagas],
                [Accounts, InterfaceApplication],
                [Sagas, InterfaceApplication],
            ]
        )

"""The simple application: every action, transfers included, is one atomic write."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bankaccounts.accountapplication import AccountApplication, retry_on_conflict
from bankaccounts.exceptions import InvalidTransferError
from bankaccounts.validation import to_account_id, to_amount

if TYPE_CHECKING:
    from decimal import Decimal
    from uuid import UUID

    from bankaccounts.domainmodel import UserRef


class SimpleBankAccountApplication(AccountApplication):
    """Opens and closes accounts, and moves money in, out and between them."""

    def deposit_funds(
        self,
        credit_account_id: UUID,
        amount: Decimal | str | int,
        *,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Adds the amount to the account."""
        amount = to_amount(amount)

        def write() -> None:
            account = self.get_account(credit_account_id)
            account.append_transaction(amount, initiated_by=initiated_by)
            self.save(account)

        retry_on_conflict(self, write)

    def withdraw_funds(
        self,
        debit_account_id: UUID,
        amount: Decimal | str | int,
        *,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Takes the amount from the account."""
        amount = to_amount(amount)

        def write() -> None:
            account = self.get_account(debit_account_id)
            account.append_transaction(-amount, initiated_by=initiated_by)
            self.save(account)

        retry_on_conflict(self, write)

    def transfer_funds(
        self,
        debit_account_id: UUID,
        credit_account_id: UUID,
        amount: Decimal | str | int,
        *,
        initiated_by: UserRef | None = None,
    ) -> None:
        """Moves the amount between two accounts in one write: both or neither."""
        amount = to_amount(amount)
        if to_account_id(debit_account_id) == to_account_id(credit_account_id):
            msg = "a transfer needs two different accounts"
            raise InvalidTransferError(msg)

        def write() -> None:
            debit_account = self.get_account(debit_account_id)
            credit_account = self.get_account(credit_account_id)
            debit_account.append_transaction(
                -amount,
                initiated_by=initiated_by,
                counterparty_id=credit_account.id,
            )
            credit_account.append_transaction(
                amount,
                initiated_by=initiated_by,
                counterparty_id=debit_account.id,
            )
            self.save(debit_account, credit_account)

        retry_on_conflict(self, write)

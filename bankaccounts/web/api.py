"""The REST API: accounts, money movements and transactions.

The list endpoints answer with a JSONResponse of the read model's own JSON-ready
dicts: FastAPI's jsonable_encoder, which would walk every value again, costs ten
times json.dumps on thousands of accounts. Their response_model only documents them.
"""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from bankaccounts.bootstrap import Bank
from bankaccounts.exceptions import AccountClosedError, AccountNotFoundError
from bankaccounts.web.feed import FeedHub
from bankaccounts.web.schemas import (
    AccountIn,
    AccountOut,
    AmountIn,
    OverdraftLimitIn,
    StateOut,
    TransactionOut,
    TransferIn,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from bankaccounts.domainmodel import BankAccount

WAIT_TIMEOUT = 10.0


def get_bank(request: Request) -> Bank:
    """The running bank."""
    bank: Bank = request.app.state.bank
    return bank


def get_hub(request: Request) -> FeedHub:
    """The feed hub."""
    hub: FeedHub = request.app.state.hub
    return hub


BankDep = Annotated[Bank, Depends(get_bank)]
HubDep = Annotated[FeedHub, Depends(get_hub)]
IdempotencyKey = Annotated[UUID | None, Header(alias="Idempotency-Key")]
Wait = Annotated[bool, Query(description="Answer when the transaction has finished")]

router = APIRouter(prefix="/api")


def account_json(account: BankAccount) -> dict[str, Any]:
    """An account aggregate as the API shows it."""
    return {
        "id": str(account.id),
        "name": account.name,
        "balance": str(account.balance),
        "overdraft_limit": str(account.overdraft_limit),
        "is_closed": account.is_closed,
        "opened_at": account.created_on.isoformat(),
        "updated_at": account.modified_on.isoformat(),
    }


def require_account(bank: Bank, account_id: UUID) -> None:
    """Raises AccountNotFoundError (404) unless the account exists."""
    if not bank.account_exists(account_id):
        raise AccountNotFoundError(account_id)


def record_deposit(
    bank: Bank, account_id: UUID, amount: Decimal, command_id: UUID | None = None
) -> UUID:
    """Records a deposit command for an existing account; returns its id."""
    require_account(bank, account_id)
    return bank.commands.deposit_funds(account_id, amount, command_id)


def record_withdrawal(
    bank: Bank, account_id: UUID, amount: Decimal, command_id: UUID | None = None
) -> UUID:
    """Records a withdrawal command for an existing account; returns its id."""
    require_account(bank, account_id)
    return bank.commands.withdraw_funds(account_id, amount, command_id)


def record_transfer(
    bank: Bank,
    debit_account_id: UUID,
    credit_account_id: UUID,
    amount: Decimal,
    command_id: UUID | None = None,
) -> UUID:
    """Records a transfer command between existing accounts; returns its id."""
    require_account(bank, debit_account_id)
    require_account(bank, credit_account_id)
    return bank.commands.transfer_funds(
        debit_account_id, credit_account_id, amount, command_id
    )


@router.get("/state", tags=["feed"], response_model=StateOut)
def get_state(bank: BankDep) -> JSONResponse:
    """The feed position, all accounts and recent transactions, to start a page."""
    view = bank.interface.view
    position = view.max_feed_position()  # first: later messages may repeat, not skip
    return JSONResponse(
        {
            "position": position,
            "accounts": [a.to_json() for a in view.list_accounts()],
            "transactions": [t.to_json() for t in view.list_transactions(limit=50)],
        }
    )


@router.post("/accounts", status_code=status.HTTP_201_CREATED, tags=["accounts"])
def open_account(bank: BankDep, body: AccountIn | None = None) -> dict[str, Any]:
    """Opens an account with an optional name."""
    account_id = bank.accounts.create_account(body.name if body else None)
    return account_json(bank.accounts.get_account(account_id))


@router.get("/accounts", tags=["accounts"], response_model=list[AccountOut])
def list_accounts(bank: BankDep) -> JSONResponse:
    """All accounts, from the read model."""
    return JSONResponse([a.to_json() for a in bank.interface.view.list_accounts()])


@router.get("/accounts/{account_id}", tags=["accounts"])
def get_account(bank: BankDep, account_id: UUID) -> dict[str, Any]:
    """One account."""
    account = bank.interface.view.get_account(account_id)
    if account is not None:
        return account.to_json()
    return account_json(bank.accounts.get_account(account_id))


@router.put("/accounts/{account_id}/overdraft-limit", tags=["accounts"])
def set_overdraft_limit(
    bank: BankDep, account_id: UUID, body: OverdraftLimitIn
) -> dict[str, Any]:
    """Sets how far below zero the balance may go (409 if the account is closed)."""
    bank.accounts.set_overdraft_limit(account_id, body.overdraft_limit)
    return account_json(bank.accounts.get_account(account_id))


@router.post("/accounts/{account_id}/close", tags=["accounts"])
def close_account(bank: BankDep, account_id: UUID) -> dict[str, Any]:
    """Closes the account (409 if it is closed already)."""
    if bank.accounts.get_account(account_id).is_closed:
        raise AccountClosedError(account_id)
    bank.accounts.close_account(account_id)
    return account_json(bank.accounts.get_account(account_id))


@router.post(
    "/accounts/{account_id}/deposits",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["transactions"],
)
async def deposit(
    bank: BankDep,
    hub: HubDep,
    response: Response,
    account_id: UUID,
    body: AmountIn,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = False,
) -> dict[str, Any]:
    """Asks for a deposit; answers with the transaction id."""

    record = partial(record_deposit, bank, account_id, body.amount, idempotency_key)
    return await _command(bank, hub, response, record, wait=wait)


@router.post(
    "/accounts/{account_id}/withdrawals",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["transactions"],
)
async def withdraw(
    bank: BankDep,
    hub: HubDep,
    response: Response,
    account_id: UUID,
    body: AmountIn,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = False,
) -> dict[str, Any]:
    """Asks for a withdrawal; answers with the transaction id."""

    record = partial(record_withdrawal, bank, account_id, body.amount, idempotency_key)
    return await _command(bank, hub, response, record, wait=wait)


@router.post("/transfers", status_code=status.HTTP_202_ACCEPTED, tags=["transactions"])
async def transfer(
    bank: BankDep,
    hub: HubDep,
    response: Response,
    body: TransferIn,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = False,
) -> dict[str, Any]:
    """Asks for a transfer; answers with the transaction id."""

    record = partial(
        record_transfer,
        bank,
        body.debit_account_id,
        body.credit_account_id,
        body.amount,
        idempotency_key,
    )

    return await _command(bank, hub, response, record, wait=wait)


@router.get("/transactions", tags=["transactions"], response_model=list[TransactionOut])
def list_transactions(
    bank: BankDep,
    account_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    """The most recent transactions, optionally of one account."""
    view = bank.interface.view
    return JSONResponse(
        [t.to_json() for t in view.list_transactions(account_id, limit)]
    )


@router.get("/transactions/{transaction_id}", tags=["transactions"])
def get_transaction(bank: BankDep, transaction_id: UUID) -> dict[str, Any]:
    """A transaction's status: pending, succeeded or failed (with the error)."""
    transaction = transaction_status(bank, transaction_id)
    if transaction is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"No transaction {transaction_id}"
        )
    return transaction


def transaction_status(bank: Bank, transaction_id: UUID) -> dict[str, Any] | None:
    """The transaction from the read model, or pending if only its command exists."""
    transaction = bank.interface.view.get_transaction(transaction_id)
    if transaction is not None:
        return transaction.to_json()
    if bank.commands.get_command(transaction_id) is not None:
        return {"id": str(transaction_id), "status": "pending", "error": None}
    return None


async def _command(
    bank: Bank,
    hub: FeedHub,
    response: Response,
    record: Callable[[], UUID],
    *,
    wait: bool,
) -> dict[str, Any]:
    transaction_id = await run_in_threadpool(record)
    answer: dict[str, Any] = {
        "transaction_id": str(transaction_id),
        "status": "pending",
    }
    if wait:
        finished = await hub.wait_for_transaction(
            transaction_id,
            WAIT_TIMEOUT,
            lambda: transaction_status(bank, transaction_id),
        )
        if finished is not None:
            response.status_code = status.HTTP_200_OK
            answer.update(status=finished["status"], error=finished.get("error"))
    return answer

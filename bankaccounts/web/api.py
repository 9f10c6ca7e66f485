"""The REST API: accounts, money movements and transactions.

The list endpoints answer with a JSONResponse of the read model's own JSON-ready
dicts: FastAPI's jsonable_encoder, which would walk every value again, costs ten
times json.dumps on thousands of accounts. Their response_model only documents them.

Bodies are parsed by schemas.load_json (the router's ExactJSONRoute), so a JSON
number is judged by the text the client wrote, never through a float.
"""

from __future__ import annotations

import logging
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
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator
from starlette.concurrency import run_in_threadpool

from bankaccounts.deploy.bootstrap import Bank
from bankaccounts.exceptions import AccountClosedError, AccountNotFoundError
from bankaccounts.ids import IDEMPOTENCY_KEY_PATTERN, check_idempotency_key
from bankaccounts.logs import request_id
from bankaccounts.metrics import COMMANDS_RECORDED
from bankaccounts.readmodel import TransactionView
from bankaccounts.system.commands import COMMAND_KINDS
from bankaccounts.web.feed import FeedHub
from bankaccounts.web.schemas import (
    AccountIn,
    AccountOut,
    AmountIn,
    CommandOut,
    ErrorOut,
    InvalidOut,
    OverdraftLimitIn,
    StateOut,
    TransactionOut,
    TransferIn,
    load_json,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from bankaccounts.domainmodel import BankAccount

logger = logging.getLogger("bankaccounts.web")

WAIT_TIMEOUT = 10.0


class ExactJSONRequest(Request):
    """A request whose JSON body keeps numbers with a fraction as their text."""

    async def json(self) -> Any:
        """The body parsed by load_json (FastAPI asks for it once per request)."""
        if not hasattr(self, "_json"):
            self._json = load_json(await self.body())
        return self._json


class ExactJSONRoute(APIRoute):
    """A route that reads its body with ExactJSONRequest (FastAPI's documented way)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wraps FastAPI's handler to give it an ExactJSONRequest."""
        handler = super().get_route_handler()

        async def exact_json_handler(request: Request) -> Response:
            return await handler(ExactJSONRequest(request.scope, request.receive))

        return exact_json_handler


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
IdempotencyKey = Annotated[
    str | None,
    BeforeValidator(lambda key: None if key is None else check_idempotency_key(key)),
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "Names the request, so that a retry is safe: 1 to 64 letters, digits, "
            "'.', '_', ':' or '-' (a UUID will do). The same key with the same "
            "request answers the same transaction (its current status: 200 if it "
            "has finished), with a different request 409."
        ),
        examples=["3f2b9c1e-8a4d-4e0f-9b7a-1c2d3e4f5a6b"],
    ),
]
Wait = Annotated[bool, Query(description="Answer when the transaction has finished")]

router = APIRouter(prefix="/api", route_class=ExactJSONRoute)


def answers(
    *codes: int, ok: type[BaseModel] | None = None, ok_code: int = 200
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of the answers a route really gives.

    The routes answer dicts of their own (response_model=None): the models only
    document them, so a pending transaction's short answer is not refused.
    """
    described: dict[int, dict[str, Any]] = {
        404: {"model": ErrorOut, "description": "No such account or transaction"},
        409: {"model": ErrorOut, "description": "Conflict (see the description)"},
        422: {"model": InvalidOut, "description": "Invalid input, field by field"},
    }
    documented: dict[int | str, dict[str, Any]] = {}
    if ok is not None:
        documented[ok_code] = {"model": ok, "description": "Successful Response"}
    documented.update({code: described[code] for code in codes})
    return documented


COMMAND_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "model": CommandOut,
        "description": "The transaction has finished (with ?wait=true, or a retry "
        "with the Idempotency-Key of a finished one): succeeded or failed",
    },
    202: {"model": CommandOut, "description": "Accepted: the transaction is pending"},
    **answers(404, 422),
    409: {
        "model": ErrorOut,
        "description": "The Idempotency-Key was used for a different request",
    },
}


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
    bank: Bank, account_id: UUID, amount: Decimal, idempotency_key: str | None = None
) -> UUID:
    """Records a deposit command for an existing account; returns its id."""
    require_account(bank, account_id)
    transaction_id = bank.commands.deposit_funds(account_id, amount, idempotency_key)
    COMMANDS_RECORDED.labels("deposit").inc()
    return transaction_id


def record_withdrawal(
    bank: Bank, account_id: UUID, amount: Decimal, idempotency_key: str | None = None
) -> UUID:
    """Records a withdrawal command for an existing account; returns its id."""
    require_account(bank, account_id)
    transaction_id = bank.commands.withdraw_funds(account_id, amount, idempotency_key)
    COMMANDS_RECORDED.labels("withdrawal").inc()
    return transaction_id


def record_transfer(
    bank: Bank,
    debit_account_id: UUID,
    credit_account_id: UUID,
    amount: Decimal,
    idempotency_key: str | None = None,
) -> UUID:
    """Records a transfer command between existing accounts; returns its id."""
    require_account(bank, debit_account_id)
    require_account(bank, credit_account_id)
    transaction_id = bank.commands.transfer_funds(
        debit_account_id, credit_account_id, amount, idempotency_key
    )
    COMMANDS_RECORDED.labels("transfer").inc()
    return transaction_id


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


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    tags=["accounts"],
    response_model=None,
    responses=answers(422, ok=AccountOut, ok_code=201),
)
def open_account(bank: BankDep, body: AccountIn | None = None) -> dict[str, Any]:
    """Opens an account with an optional name."""
    account_id = bank.accounts.create_account(body.name if body else None)
    return account_json(bank.accounts.get_account(account_id))


@router.get("/accounts", tags=["accounts"], response_model=list[AccountOut])
def list_accounts(bank: BankDep) -> JSONResponse:
    """All accounts, from the read model."""
    return JSONResponse([a.to_json() for a in bank.interface.view.list_accounts()])


@router.get(
    "/accounts/{account_id}",
    tags=["accounts"],
    response_model=None,
    responses=answers(404, 422, ok=AccountOut),
)
def get_account(bank: BankDep, account_id: UUID) -> dict[str, Any]:
    """One account."""
    account = bank.interface.view.get_account(account_id)
    if account is not None:
        return account.to_json()
    return account_json(bank.accounts.get_account(account_id))


@router.put(
    "/accounts/{account_id}/overdraft-limit",
    tags=["accounts"],
    response_model=None,
    responses=answers(404, 409, 422, ok=AccountOut),
)
def set_overdraft_limit(
    bank: BankDep, account_id: UUID, body: OverdraftLimitIn
) -> dict[str, Any]:
    """Sets how far below zero the balance may go (409 if the account is closed)."""
    bank.accounts.set_overdraft_limit(account_id, body.overdraft_limit)
    return account_json(bank.accounts.get_account(account_id))


@router.post(
    "/accounts/{account_id}/close",
    tags=["accounts"],
    response_model=None,
    responses=answers(404, 409, 422, ok=AccountOut),
)
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
    response_model=None,
    responses=COMMAND_ANSWERS,
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
    return await _command(bank, hub, response, record, wait=wait, key=idempotency_key)


@router.post(
    "/accounts/{account_id}/withdrawals",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["transactions"],
    response_model=None,
    responses=COMMAND_ANSWERS,
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
    return await _command(bank, hub, response, record, wait=wait, key=idempotency_key)


@router.post(
    "/transfers",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["transactions"],
    response_model=None,
    responses=COMMAND_ANSWERS,
)
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
    return await _command(bank, hub, response, record, wait=wait, key=idempotency_key)


@router.get(
    "/transactions",
    tags=["transactions"],
    response_model=list[TransactionOut],
    responses=answers(404, 422),
)
def list_transactions(
    bank: BankDep,
    account_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    """The most recent transactions, optionally of one account (404 if unknown)."""
    if account_id is not None:
        require_account(bank, account_id)
    view = bank.interface.view
    return JSONResponse(
        [t.to_json() for t in view.list_transactions(account_id, limit)]
    )


@router.get(
    "/transactions/{transaction_id}",
    tags=["transactions"],
    response_model=None,
    responses=answers(404, 422, ok=TransactionOut),
)
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
    command = bank.commands.get_command(transaction_id)
    if command is None:
        return None
    # Recorded, not yet in the read model: the read model's shape, from the request.
    arguments = command.arguments()
    return TransactionView(
        id=transaction_id,
        kind=COMMAND_KINDS[type(command)],
        debit_account_id=arguments.get("debit_account_id"),
        credit_account_id=arguments.get("credit_account_id"),
        amount=arguments["amount"],
        status="pending",
        error=None,
        created_at=command.created_on,
        updated_at=command.modified_on,
    ).to_json()


async def _command(
    bank: Bank,
    hub: FeedHub,
    response: Response,
    record: Callable[[], UUID],
    *,
    wait: bool,
    key: str | None,
) -> dict[str, Any]:
    """Records the command; answers pending (202), or finished (200) if known.

    A retry with the Idempotency-Key of a finished transaction answers its final
    status at once, as ?wait=true would. A first request answers 202 as always
    (with the single-threaded runner it has often finished already).
    """
    is_retry = key is not None and (
        await run_in_threadpool(
            bank.commands.get_command, bank.commands.command_id_for(key)
        )
        is not None
    )
    transaction_id = await run_in_threadpool(record)
    # An operator goes from the access line's request id to the transaction.
    logger.info(
        "recorded transaction %s (request %s)", transaction_id, request_id.get()
    )
    answer: dict[str, Any] = {
        "transaction_id": str(transaction_id),
        "status": "pending",
        "error": None,
    }
    finished: dict[str, Any] | None = None
    if is_retry:
        finished = await run_in_threadpool(transaction_status, bank, transaction_id)
    if wait and (finished is None or finished["status"] == "pending"):
        finished = await hub.wait_for_transaction(
            transaction_id,
            WAIT_TIMEOUT,
            lambda: transaction_status(bank, transaction_id),
        )
    if finished is not None and finished["status"] != "pending":
        response.status_code = status.HTTP_200_OK
        answer.update(status=finished["status"], error=finished.get("error"))
    return answer

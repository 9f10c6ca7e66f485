"""The REST API: a thin adapter from HTTP to the use cases (bankaccounts.usecases).

Each route takes the signed-in user (ActorDep) and calls one use case, which
decides what that user may see and do; this module only turns HTTP into calls and
views into answers.

The list endpoints answer with a JSONResponse of the views' own JSON-ready dicts:
FastAPI's jsonable_encoder, which would walk every value again, costs ten times
json.dumps on thousands of accounts. Their response_model only documents them. A
list's next page is named by a `Link: <url>; rel="next"` header (RFC 8288), so the
bodies stay the JSON lists that clients read.

Bodies are parsed by schemas.load_json (the router's ExactJSONRoute), so a JSON
number is judged by the text the client wrote, never through a float.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from datetime import datetime
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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from bankaccounts.deploy.bootstrap import Bank
from bankaccounts.exceptions import InvalidCursorError
from bankaccounts.explorer import Explorer, VersionNotFoundError
from bankaccounts.ids import IDEMPOTENCY_KEY_PATTERN, check_idempotency_key
from bankaccounts.logs import request_id
from bankaccounts.readmodel.paging import MAX_CURSOR_LENGTH
from bankaccounts.usecases import MAX_PAGE, Banking
from bankaccounts.web.auth import ActorDep
from bankaccounts.web.feed import FeedHub
from bankaccounts.web.schemas import (
    EARLIEST,
    INSTANT_RULE,
    MAX_SEARCH_LENGTH,
    AccountIn,
    AccountOut,
    AccountSortIn,
    AmountIn,
    CommandOut,
    ErrorOut,
    InvalidOut,
    OverdraftLimitIn,
    PayeeOut,
    StatementFrom,
    StatementOut,
    StatementTo,
    StateOut,
    TransactionOut,
    TransferIn,
    load_json,
    to_instant,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

    from bankaccounts.readmodel import StatementEntry
    from bankaccounts.users import Actor

logger = logging.getLogger("bankaccounts.web")

WAIT_TIMEOUT = 10.0
#: The statement's CSV columns (one row per entry, newest first).
STATEMENT_CSV_HEADER = (
    "date",
    "transaction_id",
    "kind",
    "counterparty",
    "amount",
    "balance",
    "initiated_by",
)


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


def get_banking(connection: HTTPConnection) -> Banking:
    """The use cases of the running bank (made with it, in the app's lifespan)."""
    banking: Banking = connection.app.state.banking
    return banking


def get_bank(request: Request) -> Bank:
    """The running bank (for what is not a use case: the system's state)."""
    bank: Bank = request.app.state.bank
    return bank


def get_hub(request: Request) -> FeedHub:
    """The feed hub."""
    hub: FeedHub = request.app.state.hub
    return hub


BankDep = Annotated[Bank, Depends(get_bank)]
BankingDep = Annotated[Banking, Depends(get_banking)]
HubDep = Annotated[FeedHub, Depends(get_hub)]
IdempotencyKey = Annotated[
    str | None,
    BeforeValidator(lambda key: None if key is None else check_idempotency_key(key)),
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "Names the request, so that a retry is safe: 1 to 64 letters, digits, "
            "'.', '_', ':' or '-' (a UUID will do). Keys are the signed-in user's "
            "own: the same key with the same request answers the same transaction "
            "(its current status: 200 if it has finished), with a different "
            "request 409."
        ),
        examples=["3f2b9c1e-8a4d-4e0f-9b7a-1c2d3e4f5a6b"],
    ),
]
Wait = Annotated[bool, Query(description="Answer when the transaction has finished")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        description="Where the page starts: the cursor in the previous page's "
        'Link rel="next" header (opaque)',
    ),
]


PageSize = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"Rows per page, 1 to {MAX_PAGE}")
]


router = APIRouter(prefix="/api", route_class=ExactJSONRoute)


def answers(
    *codes: int, ok: type[BaseModel] | None = None, ok_code: int = 200
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of the answers a route really gives.

    The routes answer dicts of their own (response_model=None): the models only
    document them, so a pending transaction's short answer is not refused.
    """
    described: dict[int, dict[str, Any]] = {
        401: {"model": ErrorOut, "description": "Not signed in"},
        403: {"model": ErrorOut, "description": "Not allowed for this user"},
        404: {"model": ErrorOut, "description": "No such account or transaction"},
        409: {"model": ErrorOut, "description": "Conflict (see the description)"},
        422: {"model": InvalidOut, "description": "Invalid input, field by field"},
    }
    documented: dict[int | str, dict[str, Any]] = {}
    if ok is not None:
        documented[ok_code] = {"model": ok, "description": "Successful Response"}
    documented.update({code: described[code] for code in (401, *codes)})
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
    503: {
        "model": ErrorOut,
        "description": "The bank is busy (too many requests wait to be processed): "
        "nothing was recorded; try again after the Retry-After header's seconds. "
        "A retry with the Idempotency-Key of a recorded request is answered",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before trying again (1 or more)",
                "schema": {"type": "integer"},
            }
        },
    },
}


def invalid_query(field: str, words: str) -> RequestValidationError:
    """A 422 naming a query parameter, in the shape of every other invalid input."""
    return RequestValidationError(
        [{"loc": ("query", field), "msg": words, "type": "value_error"}]
    )


@contextlib.contextmanager
def cursor_checked() -> Iterator[None]:
    """A cursor the read model does not take is a 422 naming the field `cursor`."""
    try:
        yield
    except InvalidCursorError as error:
        raise invalid_query("cursor", str(error)) from None


def with_next_link(
    request: Request, content: list[dict[str, Any]], cursor: str | None
) -> JSONResponse:
    """A JSON list, and the URL of the next page in a Link header if there is one.

    The URL is this request's with the cursor replaced (absolute: a client follows
    it as it is, and its host is one the security edge allowed).
    """
    response = JSONResponse(content)
    if cursor is not None:
        url = request.url.include_query_params(cursor=cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response


@router.get("/state", tags=["feed"], response_model=StateOut, responses=answers())
def get_state(actor: ActorDep, banking: BankingDep) -> JSONResponse:
    """The feed position, the user, a first page of accounts and recent activity.

    Bounded: the first page of the user's accounts (all accounts, for staff), with
    `accounts_next` the cursor of the next (GET /api/accounts?cursor=...), and the
    50 most recent transactions the user may see.
    """
    return JSONResponse(banking.state(actor).to_json())


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    tags=["accounts"],
    response_model=None,
    responses=answers(422, ok=AccountOut, ok_code=201),
)
def open_account(
    actor: ActorDep, banking: BankingDep, body: AccountIn | None = None
) -> dict[str, Any]:
    """Opens an account owned by the signed-in user, with an optional name."""
    return banking.open_account(actor, body.name if body else None).to_json()


@router.get(
    "/accounts",
    tags=["accounts"],
    response_model=list[AccountOut],
    responses=answers(422),
)
def list_accounts(
    actor: ActorDep,
    banking: BankingDep,
    request: Request,
    q: Annotated[
        str | None,
        Query(
            max_length=MAX_SEARCH_LENGTH,
            description="Search: part of the name (any case), or the start of the "
            "account number",
        ),
    ] = None,
    sort: Annotated[
        AccountSortIn,
        Query(description="opened (oldest first), name, or balance (largest first)"),
    ] = "opened",
    cursor: Cursor = None,
    limit: PageSize = 100,
) -> JSONResponse:
    """A page of the user's accounts (every account, for staff).

    The next page, if any, is named by the `Link: <url>; rel="next"` header.
    """
    if q is not None and not q.isprintable():
        # No name holds one, and PostgreSQL's text cannot hold a NUL.
        raise invalid_query("q", "q must be printable text")
    with cursor_checked():
        page = banking.list_accounts(actor, q, sort, cursor, limit)
    return with_next_link(request, [a.to_json() for a in page.items], page.next_cursor)


class AccountAtVersionOut(AccountOut):
    """An account, as it was after its first `version` events if one was asked for."""

    version: int | None = Field(
        default=None,
        description="With ?version= or ?at=: how many of its events it reflects",
    )


def to_time_travel_instant(value: Any) -> datetime | None:
    """?at=: an ISO 8601 date or date-time, as an aware UTC date-time."""
    if value is None:
        return None
    instant = to_instant(value)
    return EARLIEST if instant is None else instant  # None: before 1900


TimeTravelVersion = Annotated[
    int | None,
    Query(
        ge=1,
        le=2**53,
        description="The account as it was after its first N events (404 past its "
        "last); rebuilt from the events and the nearest snapshot",
    ),
]
TimeTravelAt = Annotated[
    datetime | None,
    BeforeValidator(to_time_travel_instant),
    WithJsonSchema({"type": "string", "examples": ["2026-01-31T09:30:00Z"]}),
    Query(
        description="The account as it was at this time (404 before it was opened): "
        + INSTANT_RULE,
    ),
]


@router.get(
    "/accounts/{account_id}",
    tags=["accounts"],
    response_model=None,
    responses=answers(404, 422, ok=AccountAtVersionOut),
)
def get_account(
    actor: ActorDep,
    banking: BankingDep,
    bank: BankDep,
    account_id: UUID,
    version: TimeTravelVersion = None,
    at: TimeTravelAt = None,
) -> dict[str, Any]:
    """One of the user's accounts (any account, for staff); or as it was (time travel).

    With `version` (N), the account as it was after its first N events; with `at`,
    as it was at that time; either answer adds `"version"`. Rebuilt from the
    account's events (not the read model). 404 before the account was opened or
    past its last version; 422 if both are given.
    """
    if version is None and at is None:
        return banking.account(actor, account_id).to_json()
    if version is not None and at is not None:
        raise invalid_query("at", "give version or at, not both")
    explorer = Explorer(bank, banking)
    try:
        if version is not None:
            past = explorer.account_at_version(actor, account_id, version)
        else:
            assert at is not None
            past = explorer.account_at_time(actor, account_id, at)
    except VersionNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    return past.to_json()


@router.get(
    "/accounts/{account_id}/payee",
    tags=["accounts"],
    response_model=None,
    responses=answers(404, 422, ok=PayeeOut),
)
def get_payee(actor: ActorDep, banking: BankingDep, account_id: UUID) -> dict[str, Any]:
    """Any account as a payer sees it: its name, owner and whether it is closed."""
    return banking.payee(actor, account_id).to_json()


@router.put(
    "/accounts/{account_id}/overdraft-limit",
    tags=["accounts"],
    response_model=None,
    responses=answers(404, 409, 422, ok=AccountOut),
)
def set_overdraft_limit(
    actor: ActorDep, banking: BankingDep, account_id: UUID, body: OverdraftLimitIn
) -> dict[str, Any]:
    """Sets how far below zero the balance may go (409 if the account is closed)."""
    return banking.set_overdraft_limit(
        actor, account_id, body.overdraft_limit
    ).to_json()


@router.post(
    "/accounts/{account_id}/close",
    tags=["accounts"],
    response_model=None,
    responses=answers(404, 409, 422, ok=AccountOut),
)
def close_account(
    actor: ActorDep, banking: BankingDep, account_id: UUID
) -> dict[str, Any]:
    """Closes the account: 409 if it is closed already, or if its balance is not zero.

    Money in it (or a debt) must first be moved to (or paid from) another account,
    so that none vanishes from the books.
    """
    return banking.close_account(actor, account_id).to_json()


@router.get(
    "/accounts/{account_id}/statement",
    tags=["accounts"],
    response_model=None,
    responses=answers(404, 422, ok=StatementOut),
)
def get_statement(
    actor: ActorDep,
    banking: BankingDep,
    request: Request,
    account_id: UUID,
    since: StatementFrom = None,
    until: StatementTo = None,
    cursor: Cursor = None,
    limit: PageSize = 50,
) -> JSONResponse:
    """A page of the account's statement, newest first, with running balances.

    `from` and `to` are ISO 8601 dates or date-times (UTC if no offset is given):
    `from` inclusive, `to` exclusive, and a date `to` includes that whole day. The
    next page's cursor is `next_cursor`, and its URL the Link rel="next" header.
    """
    check_range(since, until)
    with cursor_checked():
        statement = banking.statement(actor, account_id, cursor, limit, since, until)
    response = JSONResponse(statement.to_json())
    if statement.next_cursor is not None:
        url = request.url.include_query_params(cursor=statement.next_cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response


@router.get(
    "/accounts/{account_id}/statement.csv",
    tags=["accounts"],
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "Every matching entry, newest first: "
            + ",".join(STATEMENT_CSV_HEADER),
        },
        **answers(404, 422),
    },
)
def get_statement_csv(
    actor: ActorDep,
    banking: BankingDep,
    account_id: UUID,
    since: StatementFrom = None,
    until: StatementTo = None,
) -> StreamingResponse:
    """The account's statement as CSV: every entry in the range, newest first.

    Columns: date (ISO 8601 with offset), transaction_id, kind, counterparty (the
    other account's number, or empty), amount (a debit is negative), balance after
    it, initiated_by (a username). Streamed a page at a time.
    """
    check_range(since, until)
    first = banking.statement(actor, account_id, None, MAX_PAGE, since, until)

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(STATEMENT_CSV_HEADER)
        statement = first
        while True:
            writer.writerows(csv_row(entry) for entry in statement.entries)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if statement.next_cursor is None:
                return
            statement = banking.statement(
                actor, account_id, statement.next_cursor, MAX_PAGE, since, until
            )

    filename = f"statement-{account_id}.csv"
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def csv_row(entry: StatementEntry) -> list[str]:
    """A statement entry as a CSV row (no free text: names could be formulas)."""
    counterparty = entry.counterparty
    initiated_by = entry.initiated_by
    return [
        entry.at.isoformat(),
        str(entry.transaction_id),
        entry.kind,
        "" if counterparty is None else str(counterparty.id),
        str(entry.amount),
        str(entry.balance),
        "" if initiated_by is None else initiated_by.username,
    ]


def check_range(since: datetime | None, until: datetime | None) -> None:
    """422 unless from comes before to."""
    if since is not None and until is not None and since >= until:
        raise invalid_query("to", "to must come after from")


@router.post(
    "/accounts/{account_id}/deposits",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["transactions"],
    response_model=None,
    responses=COMMAND_ANSWERS,
)
async def deposit(
    actor: ActorDep,
    banking: BankingDep,
    hub: HubDep,
    response: Response,
    account_id: UUID,
    body: AmountIn,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = False,
) -> dict[str, Any]:
    """Asks for a deposit into one of the user's accounts; answers its id."""

    def record() -> UUID:
        return banking.deposit(actor, account_id, body.amount, idempotency_key)

    return await _command(actor, banking, hub, response, record, wait, idempotency_key)


@router.post(
    "/accounts/{account_id}/withdrawals",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["transactions"],
    response_model=None,
    responses=COMMAND_ANSWERS,
)
async def withdraw(
    actor: ActorDep,
    banking: BankingDep,
    hub: HubDep,
    response: Response,
    account_id: UUID,
    body: AmountIn,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = False,
) -> dict[str, Any]:
    """Asks for a withdrawal from one of the user's accounts; answers its id."""

    def record() -> UUID:
        return banking.withdraw(actor, account_id, body.amount, idempotency_key)

    return await _command(actor, banking, hub, response, record, wait, idempotency_key)


@router.post(
    "/transfers",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["transactions"],
    response_model=None,
    responses=COMMAND_ANSWERS,
)
async def transfer(
    actor: ActorDep,
    banking: BankingDep,
    hub: HubDep,
    response: Response,
    body: TransferIn,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = False,
) -> dict[str, Any]:
    """Asks for a transfer from one of the user's accounts to any account."""

    def record() -> UUID:
        return banking.transfer(
            actor,
            body.debit_account_id,
            body.credit_account_id,
            body.amount,
            idempotency_key,
        )

    return await _command(actor, banking, hub, response, record, wait, idempotency_key)


@router.get(
    "/transactions",
    tags=["transactions"],
    response_model=list[TransactionOut],
    responses=answers(404, 422),
)
def list_transactions(
    actor: ActorDep,
    banking: BankingDep,
    request: Request,
    account_id: UUID | None = None,
    cursor: Cursor = None,
    limit: PageSize = 50,
) -> JSONResponse:
    """The most recent transactions the user may see, newest first.

    Optionally of one account (404 if it is not one the user may see). The next
    page, if any, is named by the `Link: <url>; rel="next"` header.
    """
    with cursor_checked():
        page = banking.list_transactions(actor, account_id, cursor, limit)
    return with_next_link(request, [t.to_json() for t in page.items], page.next_cursor)


@router.get(
    "/transactions/{transaction_id}",
    tags=["transactions"],
    response_model=None,
    responses=answers(404, 422, ok=TransactionOut),
)
def get_transaction(
    actor: ActorDep, banking: BankingDep, transaction_id: UUID
) -> dict[str, Any]:
    """A transaction's status: pending, succeeded or failed (with the error)."""
    transaction = transaction_json(banking, actor, transaction_id)
    if transaction is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"No transaction {transaction_id}"
        )
    return transaction


def transaction_json(
    banking: Banking, actor: Actor, transaction_id: UUID
) -> dict[str, Any] | None:
    """The transaction as JSON, or None if the actor may not see it (or none)."""
    transaction = banking.transaction(actor, transaction_id)
    return None if transaction is None else transaction.to_json()


async def _command(
    actor: Actor,
    banking: Banking,
    hub: FeedHub,
    response: Response,
    record: Callable[[], UUID],
    wait: bool,
    key: str | None,
) -> dict[str, Any]:
    """Records the command; answers pending (202), or finished (200) if known.

    A retry with the Idempotency-Key of a finished transaction answers its final
    status at once, as ?wait=true would. A first request answers 202 as soon as
    its command is recorded (the followers carry it out; the feed, a GET or
    ?wait=true tell when it has finished).
    """
    is_retry = key is not None and await run_in_threadpool(
        banking.is_recorded, actor, key
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
        finished = await run_in_threadpool(
            transaction_json, banking, actor, transaction_id
        )
    if wait and (finished is None or finished["status"] == "pending"):
        finished = await hub.wait_for_transaction(
            transaction_id,
            WAIT_TIMEOUT,
            lambda: transaction_json(banking, actor, transaction_id),
        )
    if finished is not None and finished["status"] != "pending":
        response.status_code = status.HTTP_200_OK
        answer.update(status=finished["status"], error=finished.get("error"))
    return answer

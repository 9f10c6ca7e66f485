"""The explorer's REST routes: an account's stored events and snapshots, and the
applications' notification logs (time travel is on GET /api/accounts/{id}).

A thin adapter to the use cases in bankaccounts.explorer; lists are JSON lists with
the next page in a `Link: <url>; rel="next"` header, as elsewhere in the API.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from bankaccounts.explorer import (
    ApplicationNotFoundError,
    Explorer,
    VersionNotFoundError,
)
from bankaccounts.web.api import (
    BankDep,
    BankingDep,
    ExactJSONRoute,
    PageSize,
    answers,
    cursor_checked,
    with_next_link,
)
from bankaccounts.web.auth import ActorDep

if TYPE_CHECKING:
    from collections.abc import Iterator

    from bankaccounts.deploy.bootstrap import Bank
    from bankaccounts.usecases import Banking

#: The largest version or notification id a query may name (JSON's exact integers).
MAX_POSITION = 2**53
#: The longest event type name a filter may give.
MAX_TYPE_LENGTH = 200

router = APIRouter(prefix="/api", route_class=ExactJSONRoute)


class StoredEventOut(BaseModel):
    """An account's stored event (documentation of the answers)."""

    version: int = Field(description="The account's version after this event")
    type: str = Field(
        description="The event's name: Created, TransactionAppended, "
        "OverdraftLimitSet, Closed or ErrorRecorded",
        examples=["TransactionAppended"],
    )
    timestamp: datetime
    data: dict[str, Any] = Field(
        description="Its attributes: money and ids as strings, times ISO 8601, a "
        'user {"id", "username"}, an error {"type", "message"}',
        examples=[{"amount": "12.30", "transaction_id": "3f2b9c1e-..."}],
    )


class SnapshotOut(BaseModel):
    """A snapshot of an account (documentation)."""

    version: int = Field(description="The version of the account it holds")
    type: Literal["Snapshot"]
    timestamp: datetime
    data: dict[str, Any] = Field(
        description='{"topic": the aggregate class, "state": its attributes}'
    )
    snapshot: Literal[True]


class NotificationOut(BaseModel):
    """An event of an application's notification log (documentation)."""

    id: int = Field(description="Its position in the application's log")
    originator_id: UUID
    originator_version: int
    topic: str = Field(examples=["bankaccounts.domainmodel:BankAccount.Created"])
    type: str = Field(examples=["Created"])
    timestamp: datetime
    data: dict[str, Any]


VersionCursor = Annotated[
    str | None,
    Query(
        max_length=20,
        description="Where the page starts: the cursor in the previous page's Link "
        'rel="next" header (the last version it held)',
    ),
]


def explorer_of(bank: Bank, banking: Banking) -> Explorer:
    """The explorer's use cases over the running bank (cheap: it keeps no state)."""
    return Explorer(bank, banking)


@contextlib.contextmanager
def not_found() -> Iterator[None]:
    """A version or application that does not exist is a 404 saying which."""
    try:
        yield
    except (VersionNotFoundError, ApplicationNotFoundError) as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


@router.get(
    "/accounts/{account_id}/events",
    tags=["explorer"],
    response_model=list[StoredEventOut],
    responses=answers(404, 422),
)
def get_account_events(
    actor: ActorDep,
    bank: BankDep,
    banking: BankingDep,
    request: Request,
    account_id: UUID,
    cursor: VersionCursor = None,
    limit: PageSize = 100,
) -> JSONResponse:
    """The account's stored events in version order, decoded.

    Each `{"version", "type", "timestamp", "data"}`. The next page, if any, is
    named by the `Link: <url>; rel="next"` header.
    """
    with cursor_checked():
        page = explorer_of(bank, banking).account_events(
            actor, account_id, cursor, limit
        )
    return with_next_link(request, [e.to_json() for e in page.items], page.next_cursor)


@router.get(
    "/accounts/{account_id}/snapshots",
    tags=["explorer"],
    response_model=list[SnapshotOut],
    responses=answers(404, 422),
)
def get_account_snapshots(
    actor: ActorDep,
    bank: BankDep,
    banking: BankingDep,
    request: Request,
    account_id: UUID,
    cursor: VersionCursor = None,
    limit: PageSize = 100,
) -> JSONResponse:
    """The account's snapshots in version order (one every 100 events).

    Each `{"version", "type": "Snapshot", "timestamp", "data", "snapshot": true}`;
    time travel starts from the nearest one at or below the version asked for.
    """
    with cursor_checked():
        page = explorer_of(bank, banking).account_snapshots(
            actor, account_id, cursor, limit
        )
    return with_next_link(request, [s.to_json() for s in page.items], page.next_cursor)


@router.get(
    "/applications/{name}/notifications",
    tags=["explorer"],
    response_model=list[NotificationOut],
    responses=answers(403, 404, 422),
)
def get_notifications(
    actor: ActorDep,
    bank: BankDep,
    banking: BankingDep,
    request: Request,
    name: Annotated[
        str,
        Path(
            description="Commands, Sagas, Accounts or Interface (404 for others)",
            examples=["Accounts"],
            max_length=100,
        ),
    ],
    after: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_POSITION,
            description="The notification id the section starts after (0: the first)",
        ),
    ] = 0,
    limit: PageSize = 100,
    type: Annotated[  # noqa: A002 (the query's name)
        str | None,
        Query(
            max_length=MAX_TYPE_LENGTH,
            description="Only events of this name (Created) or qualified name "
            "(BankAccount.Created)",
        ),
    ] = None,
    originator_id: Annotated[
        UUID | None, Query(description="Only the events of this aggregate")
    ] = None,
) -> JSONResponse:
    """A section of an application's notification log, decoded (staff only).

    Each `{"id", "originator_id", "originator_version", "topic", "type",
    "timestamp", "data"}` in log order. Filtered by aggregate, at most 5,000
    notifications are read per page, so a page may hold fewer rows than `limit`
    and still be followed by another: the next page is named by the
    `Link: <url>; rel="next"` header.
    """
    with not_found():
        page = explorer_of(bank, banking).notifications(
            actor, name, after, limit, type, originator_id
        )
    response = JSONResponse([n.to_json() for n in page.items])
    if page.next_cursor is not None:
        url = request.url.include_query_params(after=page.next_cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response

"""GET /api/transactions/{id}/timeline: a transaction's journey through the system."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from bankaccounts.journey import Journeys
from bankaccounts.web.api import BankDep, BankingDep, answers
from bankaccounts.web.auth import ActorDep

router = APIRouter(prefix="/api", tags=["transactions"])


class StepOut(BaseModel):
    """One stored event of the transaction, or one of its feed messages."""

    application: str
    type: str
    timestamp: str
    position: int
    originator_id: str
    originator_version: int | None
    aggregate: str | None
    data: dict[str, Any]


class TimelineOut(BaseModel):
    """The transaction's steps, in time order."""

    transaction_id: str
    steps: list[StepOut]


@router.get(
    "/transactions/{transaction_id}/timeline",
    response_model=None,
    responses=answers(404, 422, ok=TimelineOut),
)
def get_timeline(
    actor: ActorDep, bank: BankDep, banking: BankingDep, transaction_id: UUID
) -> dict[str, Any]:
    """Every stored event of the transaction in every application, in time order.

    The command in Commands, the saga's events in Sagas (and its refund saga's, or
    an AbortedTransaction's), the TransactionAppended and ErrorRecorded events in
    Accounts (or a RejectedTransaction), and the interface's feed messages. Each
    step's `position` is the event's notification id in its application (for
    Interface, the feed position; its `originator_version` is null), `type` the
    event's name, `aggregate` its aggregate's class, `data` its attributes. A
    customer sees only transactions touching their own accounts (404 otherwise),
    and not the version of the other account of a transfer (null).
    """
    timeline = Journeys(bank, banking).timeline(actor, transaction_id)
    if timeline is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"No transaction {transaction_id}"
        )
    return timeline.to_json()

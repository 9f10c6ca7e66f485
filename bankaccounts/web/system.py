"""The system's own state: how far each process application has got, and failures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bankaccounts.usecases import require_staff
from bankaccounts.web.api import BankDep
from bankaccounts.web.auth import ActorDep

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/system")
def get_system(actor: ActorDep, bank: BankDep) -> dict[str, Any]:
    """Each follower's position, lag, state and failure in each of its upstreams.

    The same as `bankaccounts status --json`: `healthy` is false while a follower
    keeps failing on an event (its `failure` says which, where and why). Staff
    only (403 for a customer): it shows the whole bank's machinery.
    """
    require_staff(actor, "see the system's state")
    statuses = bank.follower_statuses()
    return {
        "healthy": all(s.is_healthy for s in statuses),
        "followers": [s.to_json() for s in statuses],
    }

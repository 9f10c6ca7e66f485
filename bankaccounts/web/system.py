"""The system's own state: how far each process application has got, and failures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bankaccounts.web.api import BankDep

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/system")
def get_system(bank: BankDep) -> dict[str, Any]:
    """Each follower's position, lag, state and failure in each of its upstreams.

    The same as `bankaccounts status --json`: `healthy` is false while a follower
    keeps failing on an event (its `failure` says which, where and why).
    """
    statuses = bank.follower_statuses()
    return {
        "healthy": all(s.is_healthy for s in statuses),
        "followers": [s.to_json() for s in statuses],
    }

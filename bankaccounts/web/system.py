"""The system's own state: how far each process application has got, and failures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bankaccounts.deploy.status import (
    application_statuses,
    max_notification_ids,
    read_statuses,
)
from bankaccounts.usecases import require_staff
from bankaccounts.web.api import BankDep
from bankaccounts.web.auth import ActorDep

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/system")
def get_system(actor: ActorDep, bank: BankDep) -> dict[str, Any]:
    """Each application's last notification id and its position and lag in each
    of its upstreams; each follower's position, lag, state and failure.

    The same figures as `bankaccounts status` (from the same code): `applications`
    lists Commands, Sagas, Accounts and Interface in the order of the pipes, each
    `{"name", "max_notification_id", "upstreams": [{"name", "position", "lag"}]}`;
    `followers` is `bankaccounts status --json`. `healthy` is false while a
    follower keeps failing on an event (its `failure` says which, where and why).
    In the distributed deployment the positions are the workers', read from the
    database. Staff only (403 for a customer): it shows the whole bank's machinery.
    """
    require_staff(actor, "see the system's state")
    apps = bank.applications()
    statuses = read_statuses(apps)
    return {
        "applications": [
            a.to_json()
            for a in application_statuses(statuses, max_notification_ids(apps))
        ],
        "healthy": all(s.is_healthy for s in statuses),
        "followers": [s.to_json() for s in statuses],
    }

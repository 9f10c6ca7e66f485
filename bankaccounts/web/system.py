"""The system's own state: how far each process application has got, and failures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from bankaccounts.backpressure import Backpressure
from bankaccounts.deploy.status import max_notification_ids, read_statuses, system_json
from bankaccounts.usecases import require_staff
from bankaccounts.web.api import BankDep
from bankaccounts.web.auth import ActorDep

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/system")
def get_system(actor: ActorDep, bank: BankDep, request: Request) -> dict[str, Any]:
    """Each application's figures; each follower's position, lag, state and failure;
    the backlog and its bound.

    The same figures as `bankaccounts status` (from the same code): `applications`
    lists Commands, Sagas, Accounts and Interface in the order of the pipes, each
    `{"name", "max_notification_id", "upstreams": [{"name", "position", "lag"}]}`;
    `followers` is `bankaccounts status --json`; `healthy` is false while a
    follower keeps failing on an event (its `failure` says which, where and why);
    `backlog` is `{"commands": N, "bound": M}`, the commands waiting for the Sagas
    and the number at which money requests are answered 503 (`bound` null: no
    bound). In the distributed deployment the positions are the workers', read
    from the database. Staff only (403 for a customer): it shows the whole bank's
    machinery.
    """
    require_staff(actor, "see the system's state")
    backpressure: Backpressure = request.app.state.backpressure
    apps = bank.applications()
    return system_json(
        read_statuses(apps), backpressure.backlog(), max_notification_ids(apps)
    )

"""Pages that look inside the bank: events, journeys, the system, logs, how it works.

Each page is a shell that its script (static/explorer/*.js) fills from the REST
API, which applies the access rules: a customer's page of another's account shows
the API's 404. The system and log pages are staff-only here too (403), since a
customer's browser has nothing to show there.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from bankaccounts.web.auth import SESSION_COOKIE, users_of

if TYPE_CHECKING:
    from bankaccounts.users import Actor

router = APIRouter(include_in_schema=False)

#: The applications whose notification logs staff may read (Users' would show hashes).
LOG_APPLICATIONS = ("Commands", "Sagas", "Accounts", "Interface")
#: Pages that show who is signed in are not kept by caches.
NO_STORE = {"Cache-Control": "no-store"}


@functools.cache
def templates() -> Jinja2Templates:
    """The templates/ directory (found as the app finds it)."""
    from bankaccounts.web.app import asset_dir  # app imports this module

    return Jinja2Templates(directory=asset_dir("templates"))


def signed_in(request: Request) -> Actor | None:
    """The user of the browser's session cookie, or None."""
    token = request.cookies.get(SESSION_COOKIE)
    return None if not token else users_of(request).authenticate(token)


def page(
    request: Request,
    template: str,
    title: str,
    *,
    staff_only: bool = False,
    **context: Any,
) -> Any:
    """Renders a page for the signed-in user; sign-in first, 403 for staff pages."""
    actor = signed_in(request)
    if actor is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(
            f"/signin?next={quote(here, safe='/')}", status.HTTP_303_SEE_OTHER
        )
    user = actor.to_json()
    if staff_only and user.get("role") != "staff":
        return templates().TemplateResponse(
            request,
            "explorer/forbidden.html",
            {"title": "Staff only", "user": user, "page": "forbidden"},
            status_code=status.HTTP_403_FORBIDDEN,
            headers=NO_STORE,
        )
    return templates().TemplateResponse(
        request,
        template,
        {"title": title, "user": user, **context},
        headers=NO_STORE,
    )


@router.get("/explorer/accounts/{account_id}", response_class=HTMLResponse)
def account_events(request: Request, account_id: UUID) -> Any:
    """An account's stored events, and its state at any version."""
    return page(
        request,
        "explorer/events.html",
        "Events of an account",
        page="events",
        account_id=str(account_id),
    )


@router.get("/explorer/transactions/{transaction_id}", response_class=HTMLResponse)
def journey(request: Request, transaction_id: UUID) -> Any:
    """A transaction's journey through the applications."""
    return page(
        request,
        "explorer/journey.html",
        "A transaction's journey",
        page="journey",
        transaction_id=str(transaction_id),
    )


@router.get("/system", response_class=HTMLResponse)
def system(request: Request) -> Any:
    """The process applications live: positions and lags (staff)."""
    return page(
        request,
        "explorer/system.html",
        "The system, live",
        staff_only=True,
        page="system",
    )


@router.get("/explorer/logs", response_class=HTMLResponse)
def logs(request: Request) -> Any:
    """The applications' notification logs (staff)."""
    return page(
        request,
        "explorer/logs.html",
        "Notification logs",
        staff_only=True,
        page="logs",
        applications=LOG_APPLICATIONS,
    )


@router.get("/how-it-works", response_class=HTMLResponse)
def how_it_works(request: Request) -> Any:
    """How this bank works, with the latest transaction step by step."""
    return page(request, "explorer/how.html", "How this bank works", page="how")

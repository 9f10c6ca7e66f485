"""The FastAPI application: wiring of the bank, the feed hub, the API and the UI."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.persistence import InterfaceError, OperationalError
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from bankaccounts.backpressure import DEFAULT_MAX_BACKLOG, Backpressure, bound_of
from bankaccounts.exceptions import (
    AccountClosedError,
    AccountNotEmptyError,
    AccountNotFoundError,
    AuthenticationError,
    BusyError,
    CommandConflictError,
    ForbiddenError,
    InvalidAccountIdError,
    InvalidAccountNameError,
    InvalidAmountError,
    InvalidCursorError,
    InvalidPasswordError,
    InvalidUsernameError,
    SignInThrottledError,
    UsernameTakenError,
)
from bankaccounts.logs import one_line
from bankaccounts.metrics import watch_applications
from bankaccounts.usecases import Banking
from bankaccounts.web import (
    api,
    auth,
    explorer,
    journey,
    pages,
    probes,
    system,
    websocket,
)
from bankaccounts.web.auth import SESSION_COOKIE, Registration, users_of
from bankaccounts.web.docs import add_docs
from bankaccounts.web.feed import FeedHub
from bankaccounts.web.probes import ProbesMiddleware
from bankaccounts.web.requestlog import RequestLogMiddleware
from bankaccounts.web.security import LOOPBACK_HOSTS, AllowedHosts, add_security

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from bankaccounts.deploy.bootstrap import Bank
    from bankaccounts.users import Actor

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def asset_dir(name: str) -> Path:
    """static/ or templates/: inside the installed package, or at the repository top."""
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    msg = f"Cannot find the {name}/ directory near {PACKAGE_DIR}"
    raise FileNotFoundError(msg)


ERROR_STATUS: dict[type[Exception], int] = {
    AccountNotFoundError: status.HTTP_404_NOT_FOUND,
    AccountClosedError: status.HTTP_409_CONFLICT,
    CommandConflictError: status.HTTP_409_CONFLICT,
    InvalidAmountError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidAccountIdError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidAccountNameError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidCursorError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidUsernameError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidPasswordError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    UsernameTakenError: status.HTTP_409_CONFLICT,
    AccountNotEmptyError: status.HTTP_409_CONFLICT,
    ForbiddenError: status.HTTP_403_FORBIDDEN,
}


logger = logging.getLogger(__name__)

#: The environment variable of `create_distributed_app`'s allowed host names.
ALLOWED_HOSTS_VARIABLE = "BANKACCOUNTS_ALLOWED_HOSTS"
#: ... and of its registration (open or closed) and the address it listens on.
REGISTRATION_VARIABLE = "BANKACCOUNTS_REGISTRATION"
HOST_VARIABLE = "BANKACCOUNTS_HOST"
#: ... and of the backlog's bound (0: none).
MAX_BACKLOG_VARIABLE = "BANKACCOUNTS_MAX_BACKLOG"


def create_app(
    bank: Bank,
    *,
    manage_bank: bool = True,
    feed_queue_size: int = 1000,
    allowed_hosts: Sequence[str] | None = None,
    registration: Registration = "open",
    founder_may_sign_up: bool = True,
    max_backlog: int | None = DEFAULT_MAX_BACKLOG,
) -> FastAPI:
    """Builds the web application around a bank (started and stopped with the app).

    feed_queue_size bounds each websocket client's queue of unsent messages;
    allowed_hosts are the names in Host headers served (None: the loopback names).
    registration "closed": only signed-in staff may add users. founder_may_sign_up:
    the bank's first user to sign up becomes staff (a server listening on a
    loopback address only; elsewhere staff come from `bankaccounts users`).
    max_backlog: money requests are answered 503 while this many commands wait
    for the Sagas (0 or None: no bound; see bankaccounts.backpressure).
    """
    if registration not in ("open", "closed"):
        msg = f"registration must be open or closed, not {registration!r}"
        raise ValueError(msg)
    allowed = AllowedHosts.of(allowed_hosts)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_bank:
            bank.start()
        hub = FeedHub(bank.interface.view, queue_size=feed_queue_size)
        hub.attach(asyncio.get_running_loop())
        remove_listener = bank.add_feed_listener(hub.receive)
        unwatch = watch_applications(bank.applications)
        app.state.bank = bank
        backpressure = Backpressure(bank.applications, bound_of(max_backlog))
        app.state.backpressure = backpressure
        app.state.banking = Banking(bank, backpressure)
        app.state.hub = hub
        try:
            yield
        finally:
            unwatch()
            remove_listener()
            if manage_bank:
                bank.stop()

    app = FastAPI(
        title="Bank accounts",
        summary="An event-sourced bank: REST API and live websocket feed.",
        lifespan=lifespan,
        docs_url=None,  # add_docs serves them without a CDN
        redoc_url=None,
    )
    app.state.allowed_hosts = allowed
    app.state.registration = registration
    app.state.founder_may_sign_up = founder_may_sign_up
    add_security(app, allowed)
    # Outside the guards (added last, run first): probes answer any Host, and every
    # request, refused or not, is counted and logged with its id.
    app.add_middleware(ProbesMiddleware)
    app.add_middleware(RequestLogMiddleware)
    app.include_router(probes.router)
    app.include_router(auth.router)
    app.include_router(api.router)
    app.include_router(explorer.router)
    app.include_router(system.router)
    app.include_router(journey.router)
    app.include_router(websocket.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=asset_dir("static")), name="static")
    templates = Jinja2Templates(directory=asset_dir("templates"))
    add_docs(app, templates)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> Any:
        actor = signed_in(request)
        if actor is None:
            return RedirectResponse("/signin?next=/", status.HTTP_303_SEE_OTHER)
        return templates.TemplateResponse(
            request,
            "index.html",
            {"title": "Bank accounts", "user": actor.to_json()},
            headers=NO_STORE,
        )

    @app.get("/signin", response_class=HTMLResponse, include_in_schema=False)
    def signin(request: Request, next: str = "/") -> Any:  # noqa: A002 (the query's)
        target = local_path(next)
        if signed_in(request) is not None:
            return RedirectResponse(target, status.HTTP_303_SEE_OTHER)
        return templates.TemplateResponse(
            request,
            "signin.html",
            {
                "title": "Sign in",
                "registration_open": app.state.registration == "open",
                "next": target,
            },
            headers=NO_STORE,
        )

    for error_type, code in ERROR_STATUS.items():
        app.add_exception_handler(error_type, _error_handler(code))
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(AuthenticationError, _authentication_error_handler)
    app.add_exception_handler(SignInThrottledError, _throttled_handler)
    app.add_exception_handler(BusyError, _busy_handler)
    for error_type in (OperationalError, InterfaceError):
        app.add_exception_handler(error_type, _database_unavailable_handler)
    return app


#: Pages that show who is signed in are not kept by caches.
NO_STORE = {"Cache-Control": "no-store"}


def signed_in(request: Request) -> Actor | None:
    """The user of the browser's session cookie, or None (a page reads no header)."""
    token = request.cookies.get(SESSION_COOKIE)
    return None if not token else users_of(request).authenticate(token)


def local_path(target: str) -> str:
    """The target if it is a path on this server ("/..."), else "/".

    No "//host" or "/\\host" (browsers read both as another host), no scheme, no
    control characters: a sign-in link must not send anyone elsewhere.
    """
    if (
        not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or len(target) > 2048
        or any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in target)
    ):
        return "/"
    return target


def is_loopback_host(host: str) -> bool:
    """True if the address is loopback: 127.0.0.0/8, ::1, or the name localhost."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


async def _authentication_error_handler(_: Request, error: Exception) -> JSONResponse:
    """401 with the scheme to use, as RFC 6750 asks."""
    return JSONResponse(
        {"detail": str(error) or "Sign in first"},
        status_code=status.HTTP_401_UNAUTHORIZED,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _throttled_handler(_: Request, error: Exception) -> JSONResponse:
    """429 with Retry-After: the seconds until another sign-in is tried."""
    assert isinstance(error, SignInThrottledError)
    return JSONResponse(
        {"detail": str(error)},
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(error.retry_after)},
    )


async def _busy_handler(_: Request, error: Exception) -> JSONResponse:
    """503 with Retry-After: too many commands wait; nothing was recorded."""
    assert isinstance(error, BusyError)
    return JSONResponse(
        {"detail": str(error)},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(error.retry_after)},
    )


#: Seconds a client waits before it tries again when the database did not answer.
DATABASE_RETRY_AFTER = 1


async def _database_unavailable_handler(
    request: Request, error: Exception
) -> JSONResponse:
    """503 with Retry-After: the database did not answer (a lost connection).

    A write's outcome is then unknown; its retry with the same Idempotency-Key is
    answered as the first would have been, and records nothing twice.
    """
    logger.warning(
        "%s %s: the database did not answer: %s: %s",
        request.method,
        request.url.path,
        type(error).__name__,
        one_line(error),
    )
    return JSONResponse(
        {
            "detail": "The database did not answer: try again. A deposit, withdrawal "
            "or transfer retried with the same Idempotency-Key is recorded once"
        },
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


async def _validation_error_handler(_: Request, error: Exception) -> JSONResponse:
    """422 naming each bad field and why, without echoing the input (may be NaN)."""
    assert isinstance(error, RequestValidationError)
    detail = [
        {
            "loc": list(e["loc"]),
            "field": str(e["loc"][-1]) if e["loc"] else None,
            "msg": str(e["msg"]).removeprefix("Value error, "),
            "type": e["type"],
        }
        for e in error.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _error_handler(code: int) -> Any:
    async def handle(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=code)

    return handle


def create_distributed_app() -> FastAPI:
    """A web process of the distributed deployment, configured by the environment.

    The factory that `bankaccounts serve --distributed --workers N` gives uvicorn;
    BANKACCOUNTS_ALLOWED_HOSTS (comma-separated) adds host names to the loopback ones,
    BANKACCOUNTS_REGISTRATION is open or closed, and the first user to sign up is
    staff only if BANKACCOUNTS_HOST (the address listened on) is a loopback one;
    BANKACCOUNTS_MAX_BACKLOG bounds the commands waiting for the Sagas worker.
    """
    import os

    from bankaccounts.deploy.bootstrap import DistributedBank

    registration = (os.environ.get(REGISTRATION_VARIABLE) or "open").strip().lower()
    if registration not in ("open", "closed"):
        msg = f"{REGISTRATION_VARIABLE} must be open or closed, not {registration!r}"
        raise ValueError(msg)
    host = (os.environ.get(HOST_VARIABLE) or "").strip() or "127.0.0.1"
    max_backlog = max_backlog_from(os.environ.get(MAX_BACKLOG_VARIABLE))
    return create_app(
        DistributedBank(dict(os.environ)),
        allowed_hosts=allowed_hosts_from(os.environ.get(ALLOWED_HOSTS_VARIABLE)),
        registration=cast("Registration", registration),
        founder_may_sign_up=is_loopback_host(host),
        max_backlog=max_backlog,
    )


def max_backlog_from(value: str | None) -> int:
    """The bound in BANKACCOUNTS_MAX_BACKLOG (0: none), or the default if unset.

    A bad value raises ConfigurationError (a ValueError), in the settings' words.
    """
    from bankaccounts.settings import check_environment

    values = check_environment({MAX_BACKLOG_VARIABLE: value or ""})
    bound = values.get(MAX_BACKLOG_VARIABLE, DEFAULT_MAX_BACKLOG)
    assert isinstance(bound, int)
    return bound


def allowed_hosts_from(value: str | None) -> list[str]:
    """The loopback names and the comma-separated ones given."""
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    return [*LOOPBACK_HOSTS, *names]

"""Sign-up, sign-in and sign-out over HTTP, and who is asking (ActorDep).

A client proves who it is with a token from POST /api/tokens, sent as
`Authorization: Bearer <token>`, or, in a browser, with the session cookie that the
same answer sets: HttpOnly (page scripts never see it), SameSite=Lax, Path=/,
Secure when the request came over https, and lasting as long as the token. The
cookie is CSRF-safe together with the edge's guards (web/security.py): every write
must be JSON, which a cross-site form cannot send without a preflight this server
never grants, and a write that a browser marks as cross-site is refused.

The header wins over the cookie when both are sent. A token is checked against the
Users application on every request (one cached, fast-forwarded read of its record
and of its user), so a revocation anywhere counts at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from bankaccounts.exceptions import AuthenticationError, ForbiddenError
from bankaccounts.passwords import MAX_PASSWORD_LENGTH
from bankaccounts.users import Actor, Users

if TYPE_CHECKING:
    from datetime import datetime

    from fastapi import WebSocket

    from bankaccounts.users import IssuedToken

#: The browser's session cookie: the token itself.
SESSION_COOKIE = "bankaccounts_session"
Registration = Literal["open", "closed"]

NOT_SIGNED_IN = (
    "Sign in first: send Authorization: Bearer <token> (from POST /api/tokens) "
    "or the session cookie"
)
SESSION_ENDED = "The session has expired or was revoked: sign in again"
REGISTRATION_CLOSED = "Registration is closed: only staff may add users"

router = APIRouter(tags=["users"])


class CredentialsIn(BaseModel):
    """A username and a password (sign-up and sign-in)."""

    # Bounded here so that no one sends a megabyte to be lower-cased or hashed;
    # Users says what a username and a password must be.
    username: str = Field(max_length=256, examples=["alice"])
    password: str = Field(
        max_length=MAX_PASSWORD_LENGTH, examples=["correct horse battery staple"]
    )


class UserOut(BaseModel):
    """A user: `role` is "staff" or "customer"."""

    id: str
    username: str
    role: Literal["staff", "customer"]


class TokenOut(BaseModel):
    """An access token and when it expires (ISO 8601, UTC)."""

    token: str
    expires_at: str


def users_of(connection: HTTPConnection) -> Users:
    """The running bank's Users application."""
    users: Users = connection.app.state.bank.users
    return users


def token_of(connection: HTTPConnection) -> str | None:
    """The token of a request or websocket handshake: Bearer header, else cookie."""
    scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return connection.cookies.get(SESSION_COOKIE) or None


def current_actor(connection: HTTPConnection) -> Actor:
    """Who sends the request; AuthenticationError (401) if nobody valid."""
    token = token_of(connection)
    if token is None:
        raise AuthenticationError(NOT_SIGNED_IN)
    actor = users_of(connection).authenticate(token)
    if actor is None:
        raise AuthenticationError(SESSION_ENDED)
    return actor


def optional_actor(connection: HTTPConnection) -> Actor | None:
    """Who sends the request, or None if no valid token comes with it."""
    token = token_of(connection)
    return None if token is None else users_of(connection).authenticate(token)


#: The signed-in user, for a route's parameters (401 without one).
ActorDep = Annotated[Actor, Depends(current_actor)]


async def authenticate_websocket(websocket: WebSocket) -> Actor | None:
    """Who opens the websocket (its handshake's header or cookie), or None."""
    token = token_of(websocket)
    if token is None:
        return None
    return await run_in_threadpool(users_of(websocket).authenticate, token)


def session_cookie_is_secure(connection: HTTPConnection) -> bool:
    """True when the request came over https (behind a proxy: as uvicorn was told)."""
    return connection.url.scheme in ("https", "wss")


def set_session_cookie(
    response: Response, request: Request, issued: IssuedToken, now: datetime
) -> None:
    """The browser's session: the token, for as long as it lasts."""
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=max(0, int((issued.expires_at - now).total_seconds())),
        path="/",
        httponly=True,
        samesite="lax",
        secure=session_cookie_is_secure(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    """Tells the browser to forget the session."""
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=session_cookie_is_secure(request),
    )


@router.post(
    "/api/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    summary="Sign up",
    responses={
        403: {"description": "Registration is closed and the caller is not staff"},
        409: {"description": "The username is taken (ignoring case)"},
        422: {"description": "A bad username or password"},
    },
)
def sign_up(body: CredentialsIn, request: Request) -> dict[str, str]:
    """Registers a user: usernames are 3-32 of a-z 0-9 . _ - (lower-cased), unique
    ignoring case; passwords 8-1024 characters.

    The first user of a new bank is staff if the server listens on a loopback
    address, later ones are customers. With registration closed, only signed-in
    staff may add users (customers).
    """
    state = request.app.state
    may_found = bool(state.founder_may_sign_up)
    if state.registration == "closed":
        actor = optional_actor(request)
        if actor is None or not actor.is_staff:
            raise ForbiddenError(REGISTRATION_CLOSED)
        may_found = False
    return (
        users_of(request)
        .register(body.username, body.password, may_found=may_found)
        .to_json()
    )


@router.post(
    "/api/tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenOut,
    summary="Sign in",
    responses={
        401: {"description": "Wrong username or password (one message for both)"},
        429: {"description": "Too many failed sign-ins: see Retry-After"},
    },
)
def sign_in(
    body: CredentialsIn, request: Request, response: Response
) -> dict[str, Any]:
    """A token for `Authorization: Bearer`, and the browser's session cookie."""
    users = users_of(request)
    client = request.client.host if request.client else "unknown"
    issued = users.sign_in(body.username, body.password, client)
    set_session_cookie(response, request, issued, users.clock())
    response.headers["Cache-Control"] = "no-store"
    return {"token": issued.token, "expires_at": issued.expires_at.isoformat()}


@router.delete(
    "/api/tokens/current",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out",
    response_class=Response,
)
def sign_out(actor: ActorDep, request: Request) -> Response:
    """Revokes the token of this request at once, and clears the session cookie."""
    users_of(request).revoke(cast("str", token_of(request)))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookie(response, request)
    return response


@router.get("/api/me", response_model=UserOut, summary="Who am I")
def me(actor: ActorDep) -> dict[str, str]:
    """The signed-in user."""
    return actor.to_json()

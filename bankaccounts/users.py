"""Users: customers and staff, their passwords, roles and access tokens, as events.

A user's history (registered, password changed, role granted, token issued and
revoked, signed in, sign-in failed) is the audit trail. Next to the users, index
aggregates whose ids are derived with uuid5 (bankaccounts/ids.py) make lookups and
rules atomic without a table of our own:

- a UsernameClaim, keyed by the lower-cased username, saved in the same save() as
  the user it names: two sign-ups of one name (in any case) cannot both commit;
- an AccessToken, keyed by the SHA-256 of the token: who it is for, when it
  expires, whether it was revoked. The token itself is never stored, nor is a
  password (only its Argon2id hash), and neither is ever logged;
- the FounderClaim, one fixed id, saved with the bank's first user: of two
  concurrent first sign-ups only one can be the first, so only one becomes staff.

Reads use the library's aggregate cache with fast-forward: a cached token or user
is brought up to date with one query of newer events on every read, so a token
revoked by another process (the CLI, another web process) stops working at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, cast, get_args
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, datetime_now_with_tzinfo, event
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from bankaccounts.accountapplication import retry_on_conflict
from bankaccounts.domainmodel import UserRef
from bankaccounts.exceptions import (
    SignInError,
    UsernameTakenError,
    UserNotFoundError,
)
from bankaccounts.ids import ACCESS_TOKENS, FOUNDERS, USERNAMES
from bankaccounts.infrastructure import BankApplication
from bankaccounts.passwords import (
    check_password,
    hash_password,
    is_acceptable_password,
    to_username,
    verify_dummy,
    verify_password,
)
from bankaccounts.throttle import SignInThrottle

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from eventsourcing.domain import MutableOrImmutableAggregate
    from eventsourcing.utils import Environment, EnvType

logger = logging.getLogger(__name__)

Role = Literal["staff", "customer"]
ROLES: tuple[Role, ...] = get_args(Role)

#: How long a token (a browser's session) lasts unless BANKACCOUNTS_TOKEN_DAYS says.
DEFAULT_TOKEN_DAYS = 30
MAX_TOKEN_DAYS = 3650
TOKEN_DAYS_VARIABLE = "BANKACCOUNTS_TOKEN_DAYS"  # noqa: S105 (a variable's name)
#: Tokens a user holds at once; a sign-in beyond revokes the one expiring first.
MAX_ACTIVE_TOKENS = 100
#: What a token looks like (secrets.token_urlsafe(32) gives 43 characters); anything
#: else is refused before a lookup.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{20,128}")
#: The FounderClaim's id: one for the whole bank.
FOUNDER_ID = uuid5(FOUNDERS, "the bank's first user")

A = TypeVar("A", bound=Aggregate)


def to_role(role: object) -> Role:
    """The role if it is "staff" or "customer"; else ValueError."""
    if role not in ROLES:
        msg = f"Role must be one of {', '.join(ROLES)}, not {role!r}"
        raise ValueError(msg)
    return role


def token_days(text: str) -> float:
    """A token lifetime in days, above 0 and at most 3650 (BANKACCOUNTS_TOKEN_DAYS)."""
    value = float(text)
    if not 0 < value <= MAX_TOKEN_DAYS:
        raise ValueError
    return value


def token_lifetime_from(env: Mapping[str, str]) -> timedelta:
    """BANKACCOUNTS_TOKEN_DAYS as a duration (30 days if unset); ValueError if bad."""
    text = (env.get(TOKEN_DAYS_VARIABLE) or "").strip()
    if not text:
        return timedelta(days=DEFAULT_TOKEN_DAYS)
    try:
        return timedelta(days=token_days(text))
    except ValueError:
        msg = (
            f"{TOKEN_DAYS_VARIABLE} must be a number of days above 0 and at most "
            f"{MAX_TOKEN_DAYS}, not {text!r}"
        )
        raise ValueError(msg) from None


def token_id(token: str) -> UUID:
    """The id of a token's record: derived from its SHA-256, never from the token."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    return uuid5(ACCESS_TOKENS, digest)


def username_claim_id(username: str) -> UUID:
    """The id of a (lower-cased) username's claim."""
    return uuid5(USERNAMES, username)


@dataclass(frozen=True)
class Actor:
    """Who is acting: what the use cases take."""

    id: UUID
    username: str
    role: Role

    @property
    def is_staff(self) -> bool:
        """True for the bank's staff, who see and may do everything."""
        return self.role == "staff"

    @property
    def ref(self) -> UserRef:
        """The user as events record them."""
        return UserRef(id=self.id, username=self.username)

    def to_json(self) -> dict[str, str]:
        """{"id", "username", "role"}, as the API shows the user."""
        return {"id": str(self.id), "username": self.username, "role": self.role}


@dataclass(frozen=True)
class IssuedToken:
    """A token given at sign-in: the only time it is seen in clear."""

    token: str
    expires_at: datetime
    actor: Actor

    def __repr__(self) -> str:
        """Leaves the token out, should the object be logged."""
        return f"IssuedToken(expires_at={self.expires_at!r}, actor={self.actor!r})"


class User(Aggregate):
    """A customer or a member of staff; the history is the audit trail."""

    @event("Registered")
    def __init__(self, username: str, password_hash: str, role: str) -> None:
        """Registers a user with a lower-cased username and an Argon2id hash."""
        self.username = username
        self.password_hash = password_hash
        self.role = role
        #: The ids of the tokens issued and not revoked (as text: a snapshot's JSON
        #: has text keys only), with their expiry.
        self.tokens: dict[str, datetime] = {}

    def __repr__(self) -> str:
        """Leaves the password's hash out."""
        return f"User(id={self.id!r}, username={self.username!r}, role={self.role!r})"

    @property
    def actor(self) -> Actor:
        """The user as the use cases see them."""
        return Actor(self.id, self.username, to_role(self.role))

    @event("PasswordChanged")
    def change_password(self, password_hash: str) -> None:
        """Replaces the password's hash."""
        self.password_hash = password_hash

    @event("RoleGranted")
    def grant_role(self, role: str) -> None:
        """Makes the user staff or customer."""
        self.role = role

    @event("TokenIssued")
    def issue_token(self, token_id: UUID, expires_at: datetime) -> None:
        """Records a token given to the user (its record's id, never the token)."""
        # Forgets tokens that had expired by the previous event: modified_on is its
        # time while this applies, the same on every replay.
        self.tokens = {
            key: expiry
            for key, expiry in self.tokens.items()
            if expiry > self.modified_on
        }
        self.tokens[str(token_id)] = expires_at

    @event("TokenRevoked")
    def revoke_token(self, token_id: UUID) -> None:
        """Records that a token was revoked."""
        self.tokens.pop(str(token_id), None)

    @event("SignedIn")
    def sign_in(self, client: str) -> None:
        """Records a sign-in, and from where."""

    @event("SignInFailed")
    def fail_sign_in(self, client: str) -> None:
        """Records a sign-in with a wrong password, and from where."""

    def active_tokens(self, now: datetime) -> dict[UUID, datetime]:
        """The ids of the tokens not revoked and not expired at `now`."""
        return {
            UUID(key): expiry for key, expiry in self.tokens.items() if expiry > now
        }


class UsernameClaim(Aggregate):
    """A username taken: its id is derived from the lower-cased username."""

    @event("Claimed")
    def __init__(self, id: UUID, user_id: UUID) -> None:  # noqa: A002 (the library's)
        """Claims the name (id: username_claim_id(name)) for the user."""
        self.user_id = user_id


class FounderClaim(Aggregate):
    """The bank's first user (one fixed id)."""

    @event("Claimed")
    def __init__(self, id: UUID, user_id: UUID) -> None:  # noqa: A002 (the library's)
        """Claims the bank's founding (id: FOUNDER_ID) for the user."""
        self.user_id = user_id


class AccessToken(Aggregate):
    """A token's record: its id is derived from the SHA-256 of the token."""

    @event("Issued")
    def __init__(self, id: UUID, user_id: UUID, expires_at: datetime) -> None:  # noqa: A002
        """Issues a token (id: token_id(token)) to the user, valid until expires_at."""
        self.user_id = user_id
        self.expires_at = expires_at
        self.is_revoked = False

    @event("Revoked")
    def revoke(self) -> None:
        """Revokes the token: it stops working at once."""
        self.is_revoked = True

    def is_valid(self, now: datetime) -> bool:
        """Not revoked, and not expired at `now`."""
        return not self.is_revoked and now < self.expires_at


class Users(BankApplication):
    """Registers users, signs them in and out, and tells who holds a token."""

    name = "Users"
    # Fast-forward: a cached token or user is brought up to date on every read, so
    # revocations and role changes made by other processes count at once.
    env: ClassVar[dict[str, str]] = {
        **BankApplication.env,
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }
    # Every sign-in adds two events to a user's history.
    snapshotting_intervals: ClassVar[
        dict[type[MutableOrImmutableAggregate[UUID]], int]
    ] = {User: 200}

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        throttle: SignInThrottle | None = None,
        clock: Callable[[], datetime] = datetime_now_with_tzinfo,
    ) -> None:
        """The application on env; a throttle of failed sign-ins (one by default).

        clock tells the time tokens are issued and checked at.
        """
        super().__init__(env)
        self.token_lifetime = token_lifetime_from(self.env)
        self.throttle = throttle if throttle is not None else SignInThrottle()
        self.clock = clock
        # Records failed sign-ins after the answer (see sign_in); its thread
        # starts with the first one.
        self._failures = ThreadPoolExecutor(1, thread_name_prefix="sign-in-failures")

    def close(self) -> None:
        """Records the failed sign-ins still waiting, then closes the store."""
        self._failures.shutdown(wait=True)
        super().close()

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The library's environment, with fast-forward whatever it says."""
        environment = super().construct_env(name, env)
        environment[f"{name.upper()}_AGGREGATE_CACHE_FASTFORWARD"] = "y"
        return environment

    # Registration.

    def register(
        self,
        username: str,
        password: str,
        role: Role | None = None,
        *,
        may_found: bool = False,
    ) -> Actor:
        """Registers a user; raises UsernameTakenError, InvalidUsernameError or
        InvalidPasswordError.

        role None: "staff" if may_found and nobody has registered yet (this user
        wins the FounderClaim), else "customer". The first user, whatever the role,
        takes the claim: later sign-ups are customers.
        """
        username = to_username(username)
        check_password(password)
        if role is not None:
            role = to_role(role)
        claim_id = username_claim_id(username)
        if self._find(UsernameClaim, claim_id) is not None:
            raise self._taken(username)
        password_hash = hash_password(password)
        founding = self._find(FounderClaim, FOUNDER_ID) is None
        while True:
            user_role: Role = role or (
                "staff" if founding and may_found else "customer"
            )
            user = User(username, password_hash, user_role)
            aggregates: list[Aggregate] = [
                user,
                UsernameClaim(id=claim_id, user_id=user.id),
            ]
            if founding:
                aggregates.append(FounderClaim(id=FOUNDER_ID, user_id=user.id))
            try:
                self.save(*aggregates)
            except IntegrityError:
                if self._find(UsernameClaim, claim_id) is not None:
                    raise self._taken(username) from None
                if not founding:
                    raise
                founding = False  # another user was first: try again without
                continue
            return user.actor

    @staticmethod
    def _taken(username: str) -> UsernameTakenError:
        return UsernameTakenError(f"Username {username!r} is taken")

    # Signing in and out.

    def sign_in(self, username: str, password: str, client: str) -> IssuedToken:
        """A new token for the user; SignInError (one message for an unknown user
        and a wrong password) or SignInThrottledError.

        An unknown username costs what a wrong password costs: a hash is verified
        either way, and a wrong password's SignInFailed event is recorded on
        another thread, after the answer (a write the unknown name does not make
        would otherwise tell, by the time taken, that the name exists). A
        throttled attempt verifies and records nothing.
        """
        key = username.lower() if isinstance(username, str) else ""
        self.throttle.attempt(key, client)  # counted as failed until it succeeds
        user_id = self._user_id(username)
        if user_id is None or not is_acceptable_password(password):
            if is_acceptable_password(password):
                verify_dummy(password)
            raise SignInError(SIGN_IN_FAILED)
        user = self._get(User, user_id)
        valid, new_hash = verify_password(password, user.password_hash)
        if not valid:
            self._failures.submit(self._record_failure, user_id, client)
            raise SignInError(SIGN_IN_FAILED)
        self.throttle.succeeded(key, client)
        token = secrets.token_urlsafe(32)
        record_id = token_id(token)
        expires_at = (self.clock() + self.token_lifetime).replace(microsecond=0)

        def succeed() -> User:
            user = self._get(User, user_id)
            if new_hash is not None:  # hashed with older parameters than today's
                user.change_password(new_hash)
            user.sign_in(client)
            aggregates: list[Aggregate] = [user]
            active = user.active_tokens(self.clock())
            while len(active) >= MAX_ACTIVE_TOKENS:
                oldest = min(active, key=active.__getitem__)
                del active[oldest]
                aggregates.append(self._revoked(user, oldest))
            user.issue_token(record_id, expires_at)
            aggregates.append(
                AccessToken(id=record_id, user_id=user.id, expires_at=expires_at)
            )
            self.save(*aggregates)
            return user

        user = retry_on_conflict(self, succeed)
        return IssuedToken(token, expires_at, user.actor)

    def _record_failure(self, user_id: UUID, client: str) -> None:
        """Records a sign-in with a wrong password in the user's history."""

        def fail() -> None:
            user = self._get(User, user_id)
            user.fail_sign_in(client)
            self.save(user)

        try:
            retry_on_conflict(self, fail)
        except Exception:
            logger.exception("Could not record a failed sign-in of user %s", user_id)

    def authenticate(self, token: str) -> Actor | None:
        """Who holds the token; None if it is unknown, expired or revoked."""
        if not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token):
            return None
        record = self._find(AccessToken, token_id(token))
        if record is None or not record.is_valid(self.clock()):
            return None
        user = self._find(User, record.user_id)
        return None if user is None else user.actor

    def revoke(self, token: str) -> None:
        """Revokes the token; an unknown or revoked one is left as it is."""
        if not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token):
            return
        record_id = token_id(token)

        def write() -> None:
            record = self._find(AccessToken, record_id)
            if record is None or record.is_revoked:
                return
            user = self._get(User, record.user_id)
            record.revoke()
            user.revoke_token(record_id)
            self.save(record, user)

        retry_on_conflict(self, write)

    def revoke_tokens(self, username: str) -> int:
        """Revokes every token of the user that still works; returns how many.

        Raises UserNotFoundError.
        """
        user_id = self._user_id(username)
        if user_id is None:
            raise UserNotFoundError(f"No user is called {username!r}")

        def write() -> int:
            user = self._get(User, user_id)
            revoked = [
                self._revoked(user, key) for key in user.active_tokens(self.clock())
            ]
            if revoked:
                self.save(user, *revoked)
            return len(revoked)

        return retry_on_conflict(self, write)

    def _revoked(self, user: User, record_id: UUID) -> AccessToken:
        """The token's record, revoked (and the user told), to save together."""
        record = self._get(AccessToken, record_id)
        record.revoke()
        user.revoke_token(record_id)
        return record

    # Roles and lookups.

    def set_role(self, username: str, role: Role) -> Actor:
        """Makes the user staff or customer; raises UserNotFoundError."""
        role = to_role(role)
        user_id = self._user_id(username)
        if user_id is None:
            raise UserNotFoundError(f"No user is called {username!r}")

        def write() -> User:
            user = self._get(User, user_id)
            if user.role != role:
                user.grant_role(role)
                self.save(user)
            return user

        return retry_on_conflict(self, write).actor

    def get_user(self, username: str) -> Actor | None:
        """The user of that name (in any case), or None."""
        user_id = self._user_id(username)
        if user_id is None:
            return None
        user = self._find(User, user_id)
        return None if user is None else user.actor

    def list_users(self) -> list[Actor]:
        """Every user, in the order they registered (reads the whole log's index)."""
        return [self._get(User, user_id).actor for user_id in self._user_ids()]

    def _user_ids(self) -> Iterator[UUID]:
        topic = get_topic(cast("Any", User).Registered)
        start: int | None = None
        page = 500
        while True:
            notifications = self.recorder.select_notifications(
                start, page, topics=[topic], inclusive_of_start=start is None
            )
            for notification in notifications:
                yield cast("UUID", notification.originator_id)
            if len(notifications) < page:
                return
            start = notifications[-1].id

    def _user_id(self, username: object) -> UUID | None:
        """The id of the user of that name, or None (also for a name that can't be)."""
        if not isinstance(username, str):
            return None
        try:
            claim_id = username_claim_id(to_username(username))
        except ValueError:
            return None
        claim = self._find(UsernameClaim, claim_id)
        return None if claim is None else claim.user_id

    def _find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate, or None if there is none of that id (and type)."""
        try:
            aggregate: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, cls) else None

    def _get(self, cls: type[A], aggregate_id: UUID) -> A:
        """The aggregate, which must exist."""
        aggregate = self._find(cls, aggregate_id)
        if aggregate is None:
            msg = f"no {cls.__name__} {aggregate_id}"
            raise LookupError(msg)
        return aggregate


#: What a failed sign-in says, whichever the cause.
SIGN_IN_FAILED = "Wrong username or password"

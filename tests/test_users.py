"""The Users application: registration rules, tokens, revocation, the throttle.

Every Argon2id hash costs about 0.18 s here, so each test registers and signs in
as few users as it needs; the password and username rules and the throttle's window
are tested without hashing at all.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from pwdlib.hashers.argon2 import Argon2Hasher

from bankaccounts import users as users_module
from bankaccounts.deploy.bootstrap import Bank, users_env
from bankaccounts.exceptions import (
    InvalidPasswordError,
    InvalidUsernameError,
    SignInError,
    SignInThrottledError,
    UsernameTakenError,
    UserNotFoundError,
)
from bankaccounts.passwords import DUMMY_HASH, check_password, dummy_hash, to_username
from bankaccounts.settings import ConfigurationError, check_environment
from bankaccounts.throttle import SignInThrottle, SlidingWindow
from bankaccounts.users import (
    DEFAULT_TOKEN_DAYS,
    Actor,
    User,
    Users,
    token_id,
    token_lifetime_from,
)
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

PASSWORD = "correct horse battery staple"
POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


STORES = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The Users application's settings in the store of the fixture's parameter."""
    if request.param == "popo":
        return dict(POPO)
    if request.param == "sqlite":
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "USERS_SQLITE_DBNAME": str(tmp_path / "users.sqlite"),
        }
    env: dict[str, str] = request.getfixturevalue(f"{request.param}_env")
    return env


@pytest.fixture(params=["popo", *STORES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Each store in turn."""
    return store_env(request, tmp_path)


@pytest.fixture(params=STORES)
def persistent(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The stores that outlive an application (not POPO)."""
    return store_env(request, tmp_path)


@pytest.fixture
def open_users(store: dict[str, str]) -> Iterator[Callable[..., Users]]:
    """Opens Users applications on the store (as processes would); closes them."""
    opened: list[Users] = []

    def make(**kwargs: Any) -> Users:
        users = Users(env=store, **kwargs)
        opened.append(users)
        return users

    yield make
    for users in opened:
        users.close()


@pytest.fixture
def in_memory() -> Iterator[Callable[..., Users]]:
    """Opens Users applications in memory: for rules that no store changes."""
    opened: list[Users] = []

    def make(**kwargs: Any) -> Users:
        users = Users(env=POPO, **kwargs)
        opened.append(users)
        return users

    yield make
    for users in opened:
        users.close()


class CountedVerifies:
    """Counts Argon2 verifications (the library's hasher, wrapped)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = Argon2Hasher.verify

        def verify(hasher: Argon2Hasher, *args: Any, **kwargs: Any) -> bool:
            self.count += 1
            return original(hasher, *args, **kwargs)

        monkeypatch.setattr(Argon2Hasher, "verify", verify)


def history(users: Users, actor: Actor) -> list[str]:
    """The names of the user's events, oldest first."""
    return [type(e).__name__ for e in users.events.get(actor.id)]


# The rules, without hashing.


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("alice", "alice"),
        ("Alice.B-2_c", "alice.b-2_c"),
        ("abc", "abc"),
        ("x" * 32,) * 2,
    ],
)
def test_usernames_are_lower_cased(given: str, expected: str) -> None:
    assert to_username(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "ab",
        "x" * 33,
        "al ice",
        "alice!",
        "ålice",
        "\u212aelvin",
        "",
        "al/ice",
        42,
        None,
    ],
)
def test_bad_usernames_are_refused(given: object) -> None:
    with pytest.raises(InvalidUsernameError, match="3 to 32 characters"):
        to_username(given)


@pytest.mark.parametrize("given", ["", "1234567", "x" * 1025, None, b"password1"])
def test_bad_passwords_are_refused(given: object) -> None:
    with pytest.raises(InvalidPasswordError, match="8 to 1024 characters"):
        check_password(given)


def test_the_dummy_hash_has_todays_parameters() -> None:
    # Else an unknown username would cost a hash made at run time instead.
    assert dummy_hash() == DUMMY_HASH


def test_password_bounds_are_accepted() -> None:
    assert check_password("x" * 8) == "x" * 8
    assert check_password("é" * 1024) == "é" * 1024


def test_token_lifetime_setting() -> None:
    assert token_lifetime_from({}) == timedelta(days=DEFAULT_TOKEN_DAYS)
    assert token_lifetime_from({"BANKACCOUNTS_TOKEN_DAYS": "0.5"}) == timedelta(
        hours=12
    )
    for bad in ("0", "-1", "3651", "soon", "nan"):
        with pytest.raises(ValueError, match="BANKACCOUNTS_TOKEN_DAYS must be"):
            token_lifetime_from({"BANKACCOUNTS_TOKEN_DAYS": bad})
    with pytest.raises(ConfigurationError, match="BANKACCOUNTS_TOKEN_DAYS must be"):
        check_environment({"BANKACCOUNTS_TOKEN_DAYS": "forever"})
    with pytest.raises(ConfigurationError, match="--registration"):
        check_environment({"BANKACCOUNTS_REGISTRATION": "maybe"})
    assert check_environment({"USERS_POSTGRES_POOL_SIZE": "2"}) == {
        "USERS_POSTGRES_POOL_SIZE": 2
    }


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window() -> None:
    clock = Clock()
    window = SlidingWindow(3, 60, clock=clock)
    for _ in range(2):
        window.fail("alice")
        clock.now += 10
    assert window.retry_after("alice") == 0
    window.fail("alice")  # at 1020: failures at 1000, 1010, 1020
    assert window.retry_after("alice") == 40  # until 1000 leaves the window
    clock.now += 39.5
    assert window.retry_after("alice") == 1
    clock.now += 0.5
    assert window.retry_after("alice") == 0
    window.clear("alice")
    assert len(window) == 0


def test_sliding_window_memory_is_bounded() -> None:
    window = SlidingWindow(2, 60, max_keys=3, clock=Clock())
    for key in ("a", "b", "c", "d"):
        for _ in range(5):
            window.fail(key)
    assert len(window) == 3
    assert window.retry_after("a") == 0  # the least recently failed, forgotten
    assert len(window._failures["d"]) == 2  # at most its limit of timestamps


def test_throttle_per_username_and_per_client() -> None:
    clock = Clock()
    throttle = SignInThrottle(username_limit=2, client_limit=3, window=60, clock=clock)
    throttle.failed("alice", "10.0.0.1")
    throttle.failed("alice", "10.0.0.2")
    with pytest.raises(SignInThrottledError) as raised:
        throttle.check("alice", "10.0.0.3")
    assert raised.value.retry_after == 60
    throttle.check("bob", "10.0.0.1")
    throttle.failed("bob", "10.0.0.1")
    throttle.failed("carol", "10.0.0.1")
    with pytest.raises(SignInThrottledError):
        throttle.check("dave", "10.0.0.1")  # three failures from this client
    throttle.succeeded("alice")
    throttle.check("alice", "10.0.0.3")


# The application, in each store.


def test_register_sign_in_and_out(open_users: Callable[..., Users]) -> None:
    users = open_users()
    alice = users.register("Alice", PASSWORD, may_found=True)
    assert alice.username == "alice"
    assert alice.role == "staff"  # the first user, signing up where she may found
    bob = users.register("bob", PASSWORD, may_found=True)
    assert bob.role == "customer"
    with pytest.raises(UsernameTakenError, match="'alice' is taken"):
        users.register("ALICE", PASSWORD)
    assert users.get_user("aLiCe") == alice
    assert users.get_user("nobody") is None
    assert users.get_user("no!") is None

    issued = users.sign_in("ALICE", PASSWORD, "127.0.0.1")
    assert issued.actor == alice
    assert issued.token not in repr(issued)
    assert issued.expires_at > datetime.now(UTC) + timedelta(days=29)
    assert users.authenticate(issued.token) == alice
    assert users.authenticate(issued.token + "x") is None
    assert users.authenticate("") is None
    users.revoke(issued.token)
    assert users.authenticate(issued.token) is None
    users.revoke(issued.token)  # again: nothing to do

    first = users.sign_in("bob", PASSWORD, "127.0.0.1")
    second = users.sign_in("bob", PASSWORD, "127.0.0.2")
    assert users.revoke_tokens("BOB") == 2
    assert users.authenticate(first.token) is None
    assert users.authenticate(second.token) is None
    assert users.revoke_tokens("bob") == 0
    with pytest.raises(UserNotFoundError):
        users.revoke_tokens("nobody")

    assert users.set_role("bob", "staff").role == "staff"
    assert users.list_users() == [alice, Actor(bob.id, "bob", "staff")]
    with pytest.raises(UserNotFoundError):
        users.set_role("nobody", "staff")
    with pytest.raises(ValueError, match="Role must be"):
        users.set_role("bob", "admin")  # type: ignore[arg-type]

    # The audit trail, and nothing in it in clear.
    assert history(users, alice) == [
        "Registered",
        "SignedIn",
        "TokenIssued",
        "TokenRevoked",
    ]
    assert history(users, bob)[-1] == "RoleGranted"
    stored = [
        n.state for n in users.recorder.select_notifications(start=None, limit=1000)
    ]
    assert stored
    for state in stored:
        assert PASSWORD.encode() not in state
        assert issued.token.encode() not in state
        assert first.token.encode() not in state


def test_wrong_password_and_unknown_user_cost_the_same(
    in_memory: Callable[..., Users], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = in_memory()
    alice = users.register("alice", PASSWORD)
    verifies = CountedVerifies(monkeypatch)
    with pytest.raises(SignInError) as wrong_password:
        users.sign_in("alice", "not the password", "10.0.0.1")
    assert verifies.count == 1
    with pytest.raises(SignInError) as unknown_user:
        users.sign_in("mallory", "not the password", "10.0.0.1")
    assert verifies.count == 2  # a dummy hash, verified all the same
    assert str(wrong_password.value) == str(unknown_user.value)
    # Recorded after the answer, so that the write does not tell the name exists.
    wait_for(lambda: history(users, alice) == ["Registered", "SignInFailed"])


def test_throttled_sign_ins_verify_and_record_nothing(
    in_memory: Callable[..., Users], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = in_memory(throttle=SignInThrottle(username_limit=2, client_limit=3))
    alice = users.register("alice", PASSWORD)
    verifies = CountedVerifies(monkeypatch)
    for _ in range(2):
        with pytest.raises(SignInError):
            users.sign_in("alice", "wrong password", "10.0.0.1")
    assert verifies.count == 2
    recorded = history(users, alice)
    with pytest.raises(SignInThrottledError) as raised:
        users.sign_in("Alice", PASSWORD, "10.0.0.2")  # even the right password
    assert 0 < raised.value.retry_after <= 15 * 60
    assert verifies.count == 2
    assert history(users, alice) == recorded
    # The client that failed twice may fail once more, for another name.
    with pytest.raises(SignInError):
        users.sign_in("bob", "short", "10.0.0.1")  # refused without a hash
    with pytest.raises(SignInThrottledError):
        users.sign_in("carol", PASSWORD, "10.0.0.1")
    assert verifies.count == 2


def test_success_forgets_the_usernames_failures(
    in_memory: Callable[..., Users],
) -> None:
    users = in_memory(throttle=SignInThrottle(username_limit=2))
    users.register("alice", PASSWORD)
    with pytest.raises(SignInError):
        users.sign_in("alice", "wrong password", "10.0.0.1")
    users.sign_in("alice", PASSWORD, "10.0.0.1")
    with pytest.raises(SignInError):
        users.sign_in("alice", "wrong password", "10.0.0.1")
    users.sign_in("alice", PASSWORD, "10.0.0.1")  # one failure since: not throttled


def test_tokens_expire(in_memory: Callable[..., Users]) -> None:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    users = in_memory(clock=lambda: now)
    users.register("alice", PASSWORD)
    issued = users.sign_in("alice", PASSWORD, "10.0.0.1")
    assert issued.expires_at == now + timedelta(days=DEFAULT_TOKEN_DAYS)
    now = issued.expires_at - timedelta(seconds=1)
    assert users.authenticate(issued.token) is not None
    now = issued.expires_at
    assert users.authenticate(issued.token) is None
    assert users.revoke_tokens("alice") == 0  # expired ones are not counted


def test_a_user_holds_a_bounded_number_of_tokens(
    in_memory: Callable[..., Users], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(users_module, "MAX_ACTIVE_TOKENS", 2)
    users = in_memory()
    users.register("alice", PASSWORD)
    tokens = [users.sign_in("alice", PASSWORD, "c").token for _ in range(3)]
    assert [users.authenticate(t) is not None for t in tokens] == [False, True, True]


def test_concurrent_first_sign_ups_make_one_staff(
    open_users: Callable[..., Users], store: dict[str, str]
) -> None:
    # One application per thread, as separate web processes would be (POPO
    # shares one: it keeps nothing outside the application).
    shared = open_users() if store == POPO else None
    apps = [shared or open_users() for _ in range(4)]
    results: dict[str, Actor | Exception] = {}
    barrier = threading.Barrier(len(apps))

    def sign_up(users: Users, name: str) -> None:
        barrier.wait()
        try:
            results[name] = users.register(name, PASSWORD, may_found=True)
        except Exception as error:
            results[name] = error

    threads = [
        threading.Thread(target=sign_up, args=(users, f"user{i}"))
        for i, users in enumerate(apps)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    actors = list(results.values())
    assert all(isinstance(a, Actor) for a in actors), actors
    assert sorted(a.role for a in actors if isinstance(a, Actor)) == [
        "customer",
        "customer",
        "customer",
        "staff",
    ]
    assert users_module.FOUNDER_ID in apps[0].repository


def test_concurrent_sign_ups_of_one_name(
    open_users: Callable[..., Users], store: dict[str, str]
) -> None:
    shared = open_users() if store == POPO else None
    apps = [shared or open_users() for _ in range(3)]
    results: list[Actor | Exception] = []
    barrier = threading.Barrier(len(apps))

    def sign_up(users: Users, name: str) -> None:
        barrier.wait()
        try:
            results.append(users.register(name, PASSWORD))
        except Exception as error:
            results.append(error)

    threads = [
        threading.Thread(target=sign_up, args=(users, name))
        for users, name in zip(apps, ["carol", "Carol", "CAROL"], strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(r).__name__ for r in results) == [
        "Actor",
        "UsernameTakenError",
        "UsernameTakenError",
    ]
    assert len(apps[0].list_users()) == 1


def test_tokens_survive_a_restart_and_revocation_is_seen_at_once(
    persistent: dict[str, str],
) -> None:
    first = Users(env=persistent)
    try:
        first.register("alice", PASSWORD)
        issued = first.sign_in("alice", PASSWORD, "10.0.0.1")
        assert first.authenticate(issued.token) is not None  # cached now
    finally:
        first.close()
    web = Users(env=persistent)  # the server, restarted
    cli = Users(env=persistent)  # `bankaccounts users revoke-tokens`, meanwhile
    try:
        assert web.authenticate(issued.token) == issued.actor
        assert cli.revoke_tokens("alice") == 1
        assert web.authenticate(issued.token) is None
        # A role granted elsewhere counts at once too.
        other = web.sign_in("alice", PASSWORD, "10.0.0.1")
        assert web.authenticate(other.token) == issued.actor
        cli.set_role("alice", "staff")
        actor = web.authenticate(other.token)
        assert actor is not None
        assert actor.is_staff
    finally:
        web.close()
        cli.close()


def test_snapshots_of_users(store: dict[str, str]) -> None:
    class FrequentSnapshots(Users):
        name = "Users"
        snapshotting_intervals: ClassVar[dict[type[Any], int]] = {User: 3}

    users = FrequentSnapshots(env=store)
    try:
        alice = users.register("alice", PASSWORD)
        issued = users.sign_in("alice", PASSWORD, "10.0.0.1")  # version 3
        assert [s.originator_version for s in users.snapshots.get(alice.id)] == [3]
        users.repository.cache.clear()  # type: ignore[union-attr]
        assert users.authenticate(issued.token) == alice
        assert users.revoke_tokens("alice") == 1
    finally:
        users.close()


def test_token_ids_are_derived_from_a_hash() -> None:
    assert token_id("a" * 43) == token_id("a" * 43)
    assert token_id("a" * 43) != token_id("b" * 43)
    assert "a" * 43 not in str(token_id("a" * 43))


def test_the_bank_keeps_its_users_next_to_its_files(tmp_path: Path) -> None:
    from bankaccounts.deploy.bootstrap import system_env

    env = system_env(tmp_path / "data")
    assert env["USERS_SQLITE_DBNAME"] == str(tmp_path / "data" / "users.sqlite")
    fixture_like = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "COMMANDS_SQLITE_DBNAME": str(tmp_path / "x" / "commands.sqlite"),
    }
    assert users_env(fixture_like)["USERS_SQLITE_DBNAME"] == str(
        tmp_path / "x" / "users.sqlite"
    )
    with pytest.raises(ValueError, match="USERS_SQLITE_DBNAME"):
        users_env({"PERSISTENCE_MODULE": "eventsourcing.sqlite"})
    assert users_env(POPO) == POPO
    bank = Bank(POPO)
    with pytest.raises(RuntimeError, match="not started"):
        _ = bank.users

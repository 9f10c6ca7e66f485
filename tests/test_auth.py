"""Sign-up, sign-in, sign-out and the pages over HTTP (web/auth.py, web/app.py).

A TestClient reaches the app from the client address "testclient" and a bank in
memory unless a test needs a store that outlives it. Every hash costs about 0.18 s:
the throttle is driven with passwords too short to be hashed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from bankaccounts.deploy.bootstrap import Bank, users_env
from bankaccounts.users import Users
from bankaccounts.web.app import create_app, is_loopback_host, local_path
from bankaccounts.web.auth import SESSION_COOKIE

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx

    from bankaccounts.users import Actor

PASSWORD = "correct horse battery staple"
POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
HOSTS = ("localhost", "testserver")


def client_of(
    env: dict[str, str] | None = None,
    base_url: str = "http://testserver",
    **options: Any,
) -> TestClient:
    """A TestClient of an app around a new bank (started when entered)."""
    app = create_app(Bank(env or POPO), allowed_hosts=HOSTS, **options)
    return TestClient(app, base_url=base_url, follow_redirects=False)


@pytest.fixture
def client() -> Iterator[TestClient]:
    """An app on a bank in memory, open for registration, on a loopback address."""
    with client_of() as client:
        yield client


def bank_of(client: TestClient) -> Bank:
    """The bank behind the client's app."""
    bank: Bank = client.app.state.bank  # type: ignore[attr-defined]
    return bank


def sign_up(client: TestClient, username: str, **kwargs: Any) -> httpx.Response:
    """POST /api/users."""
    return client.post(
        "/api/users", json={"username": username, "password": PASSWORD}, **kwargs
    )


def sign_in(
    client: TestClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    """POST /api/tokens."""
    return client.post("/api/tokens", json={"username": username, "password": password})


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    """The session cookie's attributes, lower-cased names."""
    header = next(
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith(f"{SESSION_COOKIE}=")
    )
    attributes = {}
    for part in header.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        attributes[name.lower()] = value
    return attributes


def test_sign_up_sign_in_me_and_sign_out(client: TestClient) -> None:
    response = sign_up(client, "Alice")
    assert response.status_code == 201, response.text
    alice = response.json()
    assert set(alice) == {"id", "username", "role"}
    assert alice["username"] == "alice"
    assert alice["role"] == "staff"  # the first user, on a loopback address
    bob = sign_up(client, "bob").json()
    assert bob["role"] == "customer"

    response = sign_in(client, "ALICE")
    assert response.status_code == 201, response.text
    answer = response.json()
    assert set(answer) == {"token", "expires_at"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", answer["expires_at"])
    assert response.headers["cache-control"] == "no-store"
    attributes = cookie_attributes(response)
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "lax"
    assert attributes["path"] == "/"
    assert "secure" not in attributes  # plain http
    assert 30 * 86400 - 60 <= int(attributes["max-age"]) <= 30 * 86400
    token = answer["token"]

    client.cookies.clear()
    me = client.get("/api/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json() == alice
    client.cookies.set(SESSION_COOKIE, token)
    assert client.get("/api/me").json() == alice  # the cookie alone
    bobs = sign_in(client, "bob").json()["token"]
    # The header wins over the cookie (the cookie is bob's now).
    assert client.get("/api/me", headers=bearer(token)).json() == alice

    response = client.delete("/api/tokens/current", headers=bearer(token))
    assert response.status_code == 204
    assert cookie_attributes(response).get("max-age") == "0"
    gone = client.get("/api/me", headers=bearer(token))
    assert gone.status_code == 401
    assert gone.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/me", headers=bearer(bobs)).json() == bob


def test_bad_sign_ups(client: TestClient) -> None:
    assert sign_up(client, "carol").status_code == 201
    taken = sign_up(client, "CaRoL")
    assert taken.status_code == 409
    assert "taken" in taken.json()["detail"]
    for username in ("ab", "x" * 33, "caröl", "car ol", "<script>"):
        response = sign_up(client, username)
        assert response.status_code == 422, username
    for password in ("short", "x" * 1025):
        response = client.post(
            "/api/users", json={"username": "dave", "password": password}
        )
        assert response.status_code == 422, password
    for body in ({}, {"username": "dave"}, {"username": 1, "password": PASSWORD}, []):
        response = client.post("/api/users", json=body)
        assert response.status_code == 422, body
    response = client.post(
        "/api/users",
        content=f"username=dave&password={PASSWORD}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert bank_of(client).users.list_users()[-1].username == "carol"


def test_one_message_for_unknown_user_and_wrong_password(client: TestClient) -> None:
    sign_up(client, "alice")
    wrong = sign_in(client, "alice", "not the password")
    unknown = sign_in(client, "mallory", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Wrong username or password"}
    assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")


def test_repeated_failures_are_throttled(client: TestClient) -> None:
    sign_up(client, "alice")
    users = bank_of(client).users
    alice = users.get_user("alice")
    assert alice is not None
    recorded = len(list(users.events.get(alice.id)))
    for _ in range(5):
        assert sign_in(client, "alice", "short").status_code == 401
    throttled = sign_in(client, "alice")  # the right password, all the same
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["retry-after"]) <= 15 * 60
    assert "Too many failed sign-ins" in throttled.json()["detail"]
    assert len(list(users.events.get(alice.id))) == recorded
    # Another name from the same client is not throttled yet (5 of its 20).
    assert sign_in(client, "bob", "short").status_code == 401


def test_cookie_is_secure_over_https() -> None:
    with client_of(base_url="https://testserver") as client:
        sign_up(client, "alice")
        response = sign_in(client, "alice")
        assert response.status_code == 201
        assert "secure" in cookie_attributes(response)


def test_closed_registration_is_for_staff_only() -> None:
    with client_of(registration="closed") as client:
        assert sign_up(client, "mallory").status_code == 403
        users = bank_of(client).users
        users.register("boss", PASSWORD, role="staff")  # as `bankaccounts users`
        staff = sign_in(client, "boss").json()["token"]
        client.cookies.clear()
        carol = sign_up(client, "carol", headers=bearer(staff))
        assert carol.status_code == 201
        assert carol.json()["role"] == "customer"
        customer = sign_in(client, "carol").json()["token"]
        client.cookies.clear()
        response = sign_up(client, "dave", headers=bearer(customer))
        assert response.status_code == 403
        assert "closed" in response.json()["detail"]
        assert [a.username for a in users.list_users()] == ["boss", "carol"]


def test_nobody_founds_the_bank_by_signing_up_on_a_public_address() -> None:
    with client_of(founder_may_sign_up=False) as client:
        assert sign_up(client, "alice").json()["role"] == "customer"


def test_the_bank_page_needs_a_session(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/"
    page = client.get("/signin?next=/")
    assert page.status_code == 200
    assert 'data-next="/"' in page.text
    assert 'data-registration="open"' in page.text
    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        page = client.get("/signin", params={"next": elsewhere})
        assert 'data-next="/"' in page.text, elsewhere

    sign_up(client, "alice")
    assert sign_in(client, "alice").status_code == 201  # sets the cookie
    page = client.get("/")
    assert page.status_code == 200
    assert "alice" in page.text
    assert page.headers["cache-control"] == "no-store"
    back = client.get("/signin", params={"next": "/#accounts"})
    assert back.status_code == 303
    assert back.headers["location"] == "/#accounts"

    client.cookies.set(SESSION_COOKIE, "not-a-token-of-this-bank")
    assert client.get("/").status_code == 303


def test_signin_page_says_when_registration_is_closed() -> None:
    with client_of(registration="closed") as client:
        page = client.get("/signin")
        assert 'data-registration="closed"' in page.text


def test_local_paths_and_loopback_hosts() -> None:
    assert local_path("/statement?id=1") == "/statement?id=1"
    for bad in ("", "x", "//a", "/\\a", "http://a/", "/\na", "/" + "a" * 3000):
        assert local_path(bad) == "/"
    for host in (
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]",
        "localhost",
        "::ffff:127.0.0.1",
    ):
        assert is_loopback_host(host), host
    for host in ("0.0.0.0", "::", "", "10.0.0.1", "example.com", "localhost.evil"):
        assert not is_loopback_host(host), host


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_sessions_survive_a_restart_until_revoked(
    store: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    if store == "sqlite":
        from bankaccounts.deploy.bootstrap import system_env

        env = system_env(tmp_path / "data")
    else:
        env = request.getfixturevalue("postgres_env")
    with client_of(env) as client:
        alice = sign_up(client, "alice").json()
        token = sign_in(client, "alice").json()["token"]
    with client_of(env) as client:  # the server, restarted
        assert client.get("/api/me", headers=bearer(token)).json() == alice
        cli = Users(env=users_env(env))  # `bankaccounts users revoke-tokens alice`
        try:
            assert cli.revoke_tokens("alice") == 1
        finally:
            cli.close()
        assert client.get("/api/me", headers=bearer(token)).status_code == 401


def test_websocket_handshake_needs_a_session(client: TestClient) -> None:
    sign_up(client, "alice")
    token = sign_in(client, "alice").json()["token"]
    client.cookies.clear()
    with client.websocket_connect("/ws", headers=bearer(token)) as ws:
        assert ws.receive_json()["type"] in ("ready", "hello", "backlog", "message")
    client.cookies.set(SESSION_COOKIE, token)
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_json()["type"]
    client.cookies.clear()
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/ws"),
    ):
        pass
    assert denied.value.status_code == 401


@pytest.mark.postgres
def test_distributed_app_reads_its_settings(
    postgres_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bankaccounts.web.app import create_distributed_app

    for name, value in postgres_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BANKACCOUNTS_REGISTRATION", "closed")
    monkeypatch.setenv("BANKACCOUNTS_HOST", "0.0.0.0")
    app = create_distributed_app()
    assert app.state.registration == "closed"
    assert app.state.founder_may_sign_up is False
    monkeypatch.setenv("BANKACCOUNTS_REGISTRATION", "")
    monkeypatch.setenv("BANKACCOUNTS_HOST", "::1")
    app = create_distributed_app()
    assert app.state.registration == "open"
    assert app.state.founder_may_sign_up is True


def test_actor_json(client: TestClient) -> None:
    actor: Actor = bank_of(client).users.register("erin", PASSWORD)
    assert actor.to_json() == {
        "id": str(actor.id),
        "username": "erin",
        "role": "customer",  # not founding: only a sign-up that may found is staff
    }
    assert actor.ref.to_json() == {"id": str(actor.id), "username": "erin"}
    assert not actor.is_staff

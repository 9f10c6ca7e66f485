"""The web edge: allowed hosts, JSON-only same-origin writes, body size, headers, docs.

Through FastAPI's TestClient on a SQLite bank, and through a real uvicorn server where
only a real one shows it (a chunked body refused before it ends, a refused handshake).
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from bankaccounts.deploy.bootstrap import Bank, system_env
from bankaccounts.web.app import ALLOWED_HOSTS_VARIABLE, allowed_hosts_from, create_app
from bankaccounts.web.security import (
    CONTENT_SECURITY_POLICY,
    LOOPBACK_HOSTS,
    MAX_BODY_BYTES,
    AllowedHosts,
)
from tests import webclient
from tests.liveserver import LiveServer
from tests.signin import sign_in
from tests.webclient import bank_client, deposit, open_account

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi import FastAPI

JSON = {"content-type": "application/json"}
FORM_SHAPES: list[dict[str, Any]] = [
    {"data": {"name": "Mallory"}},  # application/x-www-form-urlencoded
    {"content": b'{"name": "Mallory"}', "headers": {"content-type": "text/plain"}},
    {"files": {"name": ("name", b"Mallory")}},  # multipart/form-data
    {},  # no body and no Content-Type, as a bare <form method="post">
]
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def make_app(tmp_path: Path, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The app on a SQLite bank of its own."""
    env = system_env(tmp_path / "bank", environ={})
    return create_app(Bank(env), allowed_hosts=allowed_hosts)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from bank_client(system_env(tmp_path / "bank", environ={}))


def sign_in_token(client: TestClient) -> str:
    """A new token of the client's staff user."""
    return webclient.sign_in(client, webclient.STAFF)


def account_ids(client: TestClient) -> list[str]:
    return [a["id"] for a in client.get("/api/accounts").json()]


def assert_security_headers(response: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.url)


# ---------------------------------------------------------------- hosts


def test_a_rebinding_host_name_is_refused_and_nothing_is_recorded(
    client: TestClient,
) -> None:
    alice = open_account(client, "Alice")
    rebound = {"host": "rebind.evil.example:8000"}

    reads = client.get("/api/accounts", headers=rebound)
    page = client.get("/", headers=rebound)
    write = client.post("/api/accounts", json={"name": "Mallory"}, headers=rebound)
    money = client.post(
        f"/api/accounts/{alice}/deposits", json={"amount": "5"}, headers=rebound
    )

    for response in (reads, page, write, money):
        assert response.status_code == 400
        assert "'rebind.evil.example:8000' is not allowed" in response.json()["detail"]
        assert_security_headers(response)
    assert account_ids(client) == [alice]
    assert client.get(f"/api/accounts/{alice}").json()["balance"] == "0.00"


# A host served reaches the application, which asks who is there (401); one not
# served is refused at the edge (400).
SERVED = 401


def test_the_default_hosts_are_the_loopback_names(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        for base in (
            "http://localhost:8000",
            "http://127.0.0.1:8000",
            "http://[::1]:8000",
            "http://LOCALHOST",
        ):
            assert client.get(f"{base}/api/state").status_code == SERVED, base
        for base in ("http://testserver", "http://127.0.0.2", "http://localhost.evil"):
            assert client.get(f"{base}/api/state").status_code == 400, base
        assert client.get("/api/state", headers={"host": ""}).status_code == 400


def test_allowed_hosts_name_the_hosts_served(tmp_path: Path) -> None:
    app = make_app(tmp_path, ["bank.example", "*.branch.example"])
    with TestClient(app) as client:
        for base in ("http://bank.example", "http://a.branch.example:8443"):
            assert client.get(f"{base}/api/state").status_code == SERVED, base
        for base in (
            "http://localhost",
            "http://branch.example",
            "http://evil.example",
        ):
            assert client.get(f"{base}/api/state").status_code == 400, base


def test_the_distributed_web_process_adds_names_from_the_environment() -> None:
    assert ALLOWED_HOSTS_VARIABLE == "BANKACCOUNTS_ALLOWED_HOSTS"
    names = allowed_hosts_from(" bank.example, ,api.bank.example ")
    allowed = AllowedHosts(names)
    assert names == [*LOOPBACK_HOSTS, "bank.example", "api.bank.example"]
    assert allowed.allows_netloc("api.bank.example:443")
    assert allowed.allows_netloc("[::1]:8000")
    assert not allowed.allows_netloc("evil.example")
    assert allowed_hosts_from(None) == list(LOOPBACK_HOSTS)


def test_the_websocket_handshake_checks_host_and_origin(client: TestClient) -> None:
    refused_headers = [
        {"host": "rebind.evil.example"},  # a rebinding page: Origin matches Host
        {"host": "rebind.evil.example", "origin": "http://rebind.evil.example"},
        {"origin": "http://evil.example"},
        {"origin": "http://localhost"},  # allowed, but not the host reached
        {"origin": "null"},
    ]
    for headers in refused_headers:
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/ws", headers=headers) as ws,
        ):
            ws.receive_json()
        assert refused.value.code == 1008, headers
    with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
        assert ws.receive_json()["type"] == "ready"


# ---------------------------------------------------------------- writes


@pytest.mark.parametrize(
    "shape", FORM_SHAPES, ids=["form", "text", "multipart", "bare"]
)
def test_what_a_cross_site_form_can_send_is_refused_and_nothing_recorded(
    client: TestClient, shape: dict[str, Any]
) -> None:
    alice = open_account(client, "Alice")
    deposit(client, alice, "10")
    before = client.get("/api/state").json()

    answers = [
        client.post("/api/accounts", **shape),
        client.post(f"/api/accounts/{alice}/close", **shape),
        client.post(f"/api/accounts/{alice}/deposits", **shape),
        client.post(f"/api/accounts/{alice}/withdrawals", **shape),
        client.post("/api/transfers", **shape),
        client.put(f"/api/accounts/{alice}/overdraft-limit", **shape),
    ]

    for response in answers:
        assert response.status_code == 415, (response.url, response.text)
        assert "application/json" in response.json()["detail"]
    assert client.get("/api/state").json() == before


def test_bodyless_writes_are_json_too(client: TestClient) -> None:
    unnamed = client.post("/api/accounts", headers=JSON)
    assert unnamed.status_code == 201
    assert unnamed.json()["name"] is None
    account_id = unnamed.json()["id"]
    closed = client.post(f"/api/accounts/{account_id}/close", json={})
    assert closed.status_code == 200
    assert closed.json()["is_closed"] is True
    with_charset = {"content-type": "application/json; charset=utf-8"}
    named = client.post(
        "/api/accounts", content=b'{"name": "Bo"}', headers=with_charset
    )
    assert named.status_code == 201


def test_a_delete_without_a_body_needs_no_content_type(client: TestClient) -> None:
    """No form sends DELETE: sign-out is a bare DELETE; one with a body is JSON."""
    token = sign_in_token(client)
    bearer = {"Authorization": f"Bearer {token}"}
    refused = client.request(
        "DELETE",
        "/api/tokens/current",
        content=b"x",
        headers={**bearer, "content-type": "text/plain"},
    )
    assert refused.status_code == 415
    cross_site = {**bearer, "sec-fetch-site": "cross-site"}
    assert client.delete("/api/tokens/current", headers=cross_site).status_code == 403
    assert client.get("/api/me", headers=bearer).status_code == 200
    assert client.delete("/api/tokens/current", headers=bearer).status_code == 204
    assert client.get("/api/me", headers=bearer).status_code == 401


def test_a_browser_request_from_another_site_is_refused(client: TestClient) -> None:
    alice = open_account(client, "Alice")
    before = client.get("/api/state").json()
    cross_site = [
        {"origin": "http://evil.example"},
        {"origin": "http://testserver:8080"},  # another origin on the same host
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "http://testserver", "sec-fetch-site": "cross-site"},
    ]
    for headers in cross_site:
        opened = client.post("/api/accounts", json={"name": "M"}, headers=headers)
        closed = client.post(f"/api/accounts/{alice}/close", json={}, headers=headers)
        for response in (opened, closed):
            assert response.status_code == 403, headers
            assert "Cross-site" in response.json()["detail"]
    assert client.get("/api/state").json() == before
    same = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    assert client.post("/api/accounts", json={}, headers=same).status_code == 201
    reads = {"origin": "http://evil.example", "sec-fetch-site": "cross-site"}
    assert client.get("/api/accounts", headers=reads).status_code == 200


# ---------------------------------------------------------------- size


def test_a_body_over_the_limit_is_refused_and_nothing_recorded(
    client: TestClient,
) -> None:
    alice = open_account(client, "Alice")
    big = json.dumps({"amount": "1", "pad": "x" * MAX_BODY_BYTES}).encode()
    response = client.post(f"/api/accounts/{alice}/deposits", content=big, headers=JSON)
    assert response.status_code == 413
    assert "64 KiB" in response.json()["detail"]
    assert_security_headers(response)
    name = json.dumps({"name": "x" * (MAX_BODY_BYTES - 20)}).encode()
    assert len(name) <= MAX_BODY_BYTES
    at_limit = client.post("/api/accounts", content=name, headers=JSON)
    assert at_limit.status_code == 422  # read, and refused for what it says
    assert account_ids(client) == [alice]
    assert client.get("/api/transactions").json() == []


def test_a_chunked_body_is_refused_before_it_ends(tmp_path: Path) -> None:
    """The server answers 413 while the client is still sending, with no end sent."""
    chunk = b"x" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10))
    head = (
        b"POST /api/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with LiveServer(make_app(tmp_path)) as live:
        answer = live.exchange(head + body)  # 80 KiB, and no last chunk ever
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        declared = (
            b"POST /api/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
        )
        assert live.exchange(declared).startswith(b"HTTP/1.1 413 ")
        token = sign_in(live.url).token.encode()
        state = (
            b"GET /api/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + token + b"\r\n\r\n"
        )
        answer = live.exchange(state)
        assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_refused_websocket_handshake_is_http_403(tmp_path: Path) -> None:
    """What the README says a refused handshake answers, from a real server."""

    def handshake(host: str, origin: str | None, token: str | None) -> bytes:
        key = base64.b64encode(os.urandom(16))
        lines = [
            b"GET /ws HTTP/1.1",
            b"Host: " + host.encode(),
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Version: 13",
            b"Sec-WebSocket-Key: " + key,
        ]
        if origin is not None:
            lines.append(b"Origin: " + origin.encode())
        if token is not None:
            lines.append(b"Authorization: Bearer " + token.encode())
        return live.exchange(b"\r\n".join(lines) + b"\r\n\r\n")

    with LiveServer(make_app(tmp_path)) as live:
        here = f"127.0.0.1:{live.port}"
        token = sign_in(live.url).token
        assert handshake(here, f"http://{here}", token).startswith(b"HTTP/1.1 101 ")
        for host, origin in [
            (here, "http://evil.example"),
            ("rebind.evil.example", "http://rebind.evil.example"),
            ("rebind.evil.example", None),
        ]:
            answer = handshake(host, origin, token)
            assert answer.startswith(b"HTTP/1.1 403 "), (host, origin, answer[:100])
        # Not signed in: refused with 401 before the handshake is accepted.
        for unknown in (None, "x" * 40):
            answer = handshake(here, f"http://{here}", unknown)
            assert answer.startswith(b"HTTP/1.1 401 "), answer[:100]
            assert b"www-authenticate: bearer" in answer.lower()


# ---------------------------------------------------------------- headers, docs


def test_every_response_has_the_security_headers(client: TestClient) -> None:
    responses = [
        client.get("/"),
        client.get("/api/state"),
        client.get("/static/app.css"),
        client.get("/docs"),
        client.get("/openapi.json"),
        client.get(f"/api/accounts/{uuid.uuid4()}"),  # 404
        client.get("/api/accounts/not-an-id"),  # 422
        client.post("/api/accounts", data={"name": "x"}),  # 415
    ]
    for response in responses:
        assert_security_headers(response)
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY


def test_the_pages_have_no_inline_script_or_style(client: TestClient) -> None:
    for path in ("/", "/docs", "/redoc"):
        html = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), path


def test_the_api_docs_load_nothing_from_elsewhere(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls
        for url in urls:
            assert url.startswith(("http://testserver/", "/")), (path, url)
            assert client.get(url).status_code == 200, url
    redoc = client.get("/redoc")
    nonce = re.search(r'data-style-nonce="([^"]+)"', redoc.text)
    assert nonce is not None
    policy = redoc.headers["content-security-policy"]
    assert f"style-src 'self' 'nonce-{nonce.group(1)}'" in policy
    assert "script-src 'self';" in policy
    assert client.get("/redoc").headers["content-security-policy"] != policy


def test_openapi_documents_the_edge_answers(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    writes = 0
    for path, item in paths.items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert "400" in codes, (method, path)
            if method in ("post", "put", "patch", "delete"):
                writes += 1
                assert {"403", "413", "415"} <= codes, (method, path)
                content = operation["requestBody"]["content"]
                assert list(content) == ["application/json"], (method, path)
    # Six of the bank's, and sign-up, sign-in and sign-out.
    assert writes == 9

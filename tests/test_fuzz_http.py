"""Schemathesis against the app's own OpenAPI document, on a real uvicorn server.

Every operation gets generated requests, valid and invalid (negative mode), on a
SQLite bank of its own, signed in as the bank's staff (every route reachable, not
just its 401); no answer may be a 5xx, and each must be one the document lists, of
the type and shape it lists. About a minute on two cores: MAX_EXAMPLES per
operation and mode bounds it. Generated account ids would never name an account,
so about two in three are swapped for a real one (open and funded, open, closed,
or a customer's) before the request goes out. Then every operation again without
credentials (none, or a token nobody was given): each protected one answers a
valid request 401 (with `WWW-Authenticate: Bearer`; a state change sent without a
JSON body 415, as the edge refuses it before asking who sent it) and an invalid
one a 4xx; never a success or a 5xx.
"""

from __future__ import annotations

import itertools
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from bankaccounts.deploy.bootstrap import Bank, system_env
from bankaccounts.web.app import create_app
from tests.liveserver import LiveServer
from tests.signin import PASSWORD, STAFF, Session, sign_in

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_EXAMPLES = 250
SIGNED_OUT_EXAMPLES = 40  # each is refused before any work: a few will do
ID_FIELDS = ("account_id", "debit_account_id", "credit_account_id")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]
#: The operations anybody may call: signing up and signing in.
PUBLIC = {("POST", "/api/users"), ("POST", "/api/tokens")}
#: The operation that revokes the token it is called with.
SIGN_OUT = ("DELETE", "/api/tokens/current")


@pytest.fixture(scope="module")
def live_bank(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, Bank]]:
    """The app on a real server, and its bank (for tokens made in the process)."""
    env = system_env(tmp_path_factory.mktemp("fuzz") / "bank", environ={})
    bank = Bank(env)
    with LiveServer(create_app(bank)) as live:
        yield live, bank


@pytest.fixture(scope="module")
def staff(live_bank: tuple[LiveServer, Bank]) -> Session:
    """The bank's first user: staff, as the server listens on a loopback address."""
    session = sign_in(live_bank[0].url, STAFF)
    assert session.user["role"] == "staff", session.user
    return session


@pytest.fixture(scope="module")
def accounts(live_bank: tuple[LiveServer, Bank], staff: Session) -> list[str]:
    """An open funded account, an open empty one, a closed one, a customer's."""
    with httpx.Client(base_url=live_bank[0].url, headers=staff.headers) as client:
        ids = [client.post("/api/accounts", json={}).json()["id"] for _ in range(3)]
        funded = client.post(
            f"/api/accounts/{ids[0]}/deposits?wait=true", json={"amount": "1000"}
        )
        assert funded.json()["status"] == "succeeded"
        assert client.post(f"/api/accounts/{ids[2]}/close", json={}).status_code == 200
    customer = sign_in(live_bank[0].url, "carol")
    assert customer.user["role"] == "customer", customer.user
    status, account = customer.request("POST", "/api/accounts", {"name": "Carol"})
    assert status == 201, account
    return [*ids, account["id"]]


#: The document as the app makes it (a Bank is only started by the app's lifespan);
#: the served one is checked to be the same.
OPENAPI = create_app(Bank({"PERSISTENCE_MODULE": "eventsourcing.popo"})).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


def test_the_fuzzed_document_is_the_one_served(
    live_bank: tuple[LiveServer, Bank],
) -> None:
    assert httpx.get(f"{live_bank[0].url}/openapi.json").json() == OPENAPI


def with_real_accounts(case: schemathesis.Case, accounts: list[str]) -> None:
    """Swaps generated account ids for real ones, chosen by the id (reproducible)."""

    def real(value: Any) -> Any:
        try:
            number = uuid.UUID(str(value)).int
        except ValueError:
            return value
        choice = number % (len(accounts) + 1)
        return value if choice == len(accounts) else accounts[choice]

    for place in (case.path_parameters, case.query, case.body):
        if isinstance(place, dict):
            for field in ID_FIELDS:
                if field in place:
                    place[field] = real(place[field])


def key(case: schemathesis.Case) -> tuple[str, str]:
    """The operation's method and path template."""
    return case.method.upper(), case.operation.path


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: schemathesis.Case,
    live_bank: tuple[LiveServer, Bank],
    staff: Session,
    accounts: list[str],
) -> None:
    live, bank = live_bank
    with_real_accounts(case, accounts)
    token = staff.token
    if key(case) == SIGN_OUT:  # a token of its own to revoke, made in the process
        token = bank.users.sign_in(STAFF, PASSWORD, "tests").token
    case.call_and_validate(
        base_url=live.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
    )


SIGNED_OUT_HEADERS = itertools.cycle(
    [
        {},
        {"Authorization": f"Bearer {uuid.UUID(int=7).hex}"},
        {"Authorization": "Bearer"},
        {"Cookie": f"bankaccounts_session={uuid.UUID(int=8).hex}"},
    ]
)


@schema.parametrize()
@settings(
    max_examples=SIGNED_OUT_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_without_credentials_every_protected_operation_is_refused(
    case: schemathesis.Case,
    live_bank: tuple[LiveServer, Bank],
    staff: Session,
    accounts: list[str],
) -> None:
    with_real_accounts(case, accounts)
    for name in list(case.headers or {}):
        if name.lower() in ("authorization", "cookie"):
            del case.headers[name]
    headers = next(SIGNED_OUT_HEADERS)
    response = case.call(base_url=live_bank[0].url, headers=headers)
    status = response.status_code
    assert status < 500, (case.as_curl_command(headers), status, response.text)
    if key(case) in PUBLIC:
        return
    negative = case.meta is not None and (
        case.meta.generation.mode == GenerationMode.NEGATIVE
    )
    # An invalid request may be refused for what it is (a path that names no
    # route, say) before its credentials are looked at; never served.
    if negative and status != 401:
        assert 400 <= status < 500, (case.as_curl_command(headers), status)
        return
    # A state change without a JSON body is refused at the edge (415) before its
    # credentials are looked at; anything else, for want of them.
    sent_json = "json" in response.request.headers.get("Content-Type", "")
    if status == 415:
        assert not sent_json, (case.as_curl_command(headers), response.text)
        return
    assert status == 401, (case.as_curl_command(headers), status, response.text)
    # The response's headers by lower-case name, each with its values.
    assert response.headers.get("www-authenticate", [""])[0].startswith("Bearer")

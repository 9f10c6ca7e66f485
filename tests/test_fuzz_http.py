"""Schemathesis against the app's own OpenAPI document, on a real uvicorn server.

Every operation gets generated requests, valid and invalid (negative mode), on a
SQLite bank of its own; no answer may be a 5xx, and each must be one the document
lists, of the type and shape it lists. About a minute on two cores: MAX_EXAMPLES
per operation and mode bounds it. Generated account ids would never name an
account, so about two in three are swapped for a real one (open and funded, open,
or closed) before the request goes out.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bankaccounts.deploy.bootstrap import Bank, system_env
from bankaccounts.web.app import create_app
from tests.liveserver import LiveServer

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_EXAMPLES = 250
ID_FIELDS = ("account_id", "debit_account_id", "credit_account_id")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = system_env(tmp_path_factory.mktemp("fuzz") / "bank", environ={})
    with LiveServer(create_app(Bank(env))) as live:
        yield live


@pytest.fixture(scope="module")
def accounts(live_bank: LiveServer) -> list[str]:
    """An open funded account, an open empty one and a closed one."""
    with httpx.Client(base_url=live_bank.url) as client:
        ids = [client.post("/api/accounts", json={}).json()["id"] for _ in range(3)]
        funded = client.post(
            f"/api/accounts/{ids[0]}/deposits?wait=true", json={"amount": "1000"}
        )
        assert funded.json()["status"] == "succeeded"
        assert client.post(f"/api/accounts/{ids[2]}/close", json={}).status_code == 200
    return ids


#: The document as the app makes it (a Bank is only started by the app's lifespan);
#: the served one is checked to be the same.
OPENAPI = create_app(Bank({"PERSISTENCE_MODULE": "eventsourcing.popo"})).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


def test_the_fuzzed_document_is_the_one_served(live_bank: LiveServer) -> None:
    assert httpx.get(f"{live_bank.url}/openapi.json").json() == OPENAPI


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


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: schemathesis.Case, live_bank: LiveServer, accounts: list[str]
) -> None:
    with_real_accounts(case, accounts)
    case.call_and_validate(base_url=live_bank.url, checks=CHECKS)

"""The REST API, through FastAPI's TestClient, on every persistence module."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from bankaccounts import usecases
from bankaccounts.domainmodel import UserRef
from bankaccounts.exceptions import AccountNotFoundError
from bankaccounts.system.commands import Commands
from bankaccounts.usecases import Banking
from bankaccounts.users import Actor
from bankaccounts.web.schemas import TransactionOut
from tests.waiting import wait_for
from tests.webclient import bank_client, deposit, open_account

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient


@pytest.fixture
def client(persistence_env: dict[str, str]) -> Iterator[TestClient]:
    yield from bank_client(persistence_env)


def feed_position(client: TestClient) -> int:
    position: int = client.get("/api/state").json()["position"]
    return position


def settled_position(client: TestClient, *account_ids: str) -> int:
    """The feed position once the read model shows these accounts opened.

    With PostgreSQL the system follows in threads: an account's messages may come
    after its POST has answered.
    """

    def shown() -> bool:
        accounts = client.get("/api/state").json()["accounts"]
        return set(account_ids) <= {account["id"] for account in accounts}

    wait_for(shown, message="the read model does not show the accounts")
    return feed_position(client)


def test_open_get_and_list_accounts(client: TestClient) -> None:
    response = client.post("/api/accounts", json={"name": "  Alice  Smith "})
    assert response.status_code == 201
    account = response.json()
    assert account["name"] == "Alice Smith"
    assert account["balance"] == "0.00"
    assert account["overdraft_limit"] == "0.00"
    assert account["is_closed"] is False
    assert client.get(f"/api/accounts/{account['id']}").json() == account
    unnamed = client.post("/api/accounts", json={}).json()
    assert unnamed["name"] is None
    listed = client.get("/api/accounts").json()
    assert [a["id"] for a in listed] == [account["id"], unnamed["id"]]


def test_unknown_and_malformed_account_ids(client: TestClient) -> None:
    assert client.get(f"/api/accounts/{uuid.uuid4()}").status_code == 404
    response = client.get("/api/accounts/not-a-uuid")
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "account_id"


def test_deposit_withdraw_and_transaction_status(client: TestClient) -> None:
    alice = open_account(client)
    response = client.post(f"/api/accounts/{alice}/deposits", json={"amount": "12.3"})
    assert response.status_code in (200, 202)
    transaction_id = response.json()["transaction_id"]
    assert response.json()["status"] in ("pending", "succeeded")
    answer = deposit(client, alice, "100")
    assert answer["status"] == "succeeded"
    response = client.post(
        f"/api/accounts/{alice}/withdrawals?wait=true", json={"amount": 2.3}
    )
    assert response.json()["status"] == "succeeded"
    assert client.get(f"/api/accounts/{alice}").json()["balance"] == "110.00"
    transaction = client.get(f"/api/transactions/{transaction_id}").json()
    assert transaction["kind"] == "deposit"
    assert transaction["amount"] == "12.30"
    assert transaction["credit_account_id"] == alice
    assert transaction["status"] == "succeeded"
    assert client.get(f"/api/transactions/{uuid.uuid4()}").status_code == 404
    listed = client.get(f"/api/transactions?account_id={alice}&limit=2").json()
    assert [t["kind"] for t in listed] == ["withdrawal", "deposit"]


def test_failed_withdrawal_says_why_in_words(client: TestClient) -> None:
    alice = open_account(client, "Alice")
    response = client.post(
        f"/api/accounts/{alice}/withdrawals?wait=true", json={"amount": "5"}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert response.json()["error"] == "Insufficient funds in Alice's account"
    status = client.get(f"/api/transactions/{response.json()['transaction_id']}")
    assert status.json()["error"] == "Insufficient funds in Alice's account"


def test_transfer_and_failed_transfer_refunds(client: TestClient) -> None:
    alice = open_account(client, "Alice")
    bob = open_account(client, "Bob")
    deposit(client, alice, "50")
    body = {"debit_account_id": alice, "credit_account_id": bob, "amount": "20"}
    response = client.post("/api/transfers?wait=true", json=body)
    assert response.json()["status"] == "succeeded"
    carol = open_account(client, "Carol")
    assert client.post(f"/api/accounts/{carol}/close", json={}).status_code == 200
    body["credit_account_id"] = carol
    response = client.post("/api/transfers?wait=true", json=body)
    assert response.json()["status"] == "failed"
    assert response.json()["error"] == "Carol's account is closed"
    assert client.get(f"/api/accounts/{alice}").json()["balance"] == "30.00"
    assert client.get(f"/api/accounts/{bob}").json()["balance"] == "20.00"
    assert client.get(f"/api/accounts/{carol}").json()["balance"] == "0.00"


def test_overdraft_limit_and_close(client: TestClient) -> None:
    alice = open_account(client)
    response = client.put(
        f"/api/accounts/{alice}/overdraft-limit", json={"overdraft_limit": "500"}
    )
    assert response.status_code == 200
    assert response.json()["overdraft_limit"] == "500.00"
    answer = client.post(
        f"/api/accounts/{alice}/withdrawals?wait=true", json={"amount": "500"}
    ).json()
    assert answer["status"] == "succeeded"
    assert client.get(f"/api/accounts/{alice}").json()["balance"] == "-500.00"
    refused = client.post(f"/api/accounts/{alice}/close", json={})
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "Alice's account owes 500.00: pay the debt in first "
        "(a deposit or a transfer into it), then close it"
    )
    deposit(client, alice, "500")
    closed = client.post(f"/api/accounts/{alice}/close", json={})
    assert closed.status_code == 200
    assert closed.json()["is_closed"] is True
    assert client.post(f"/api/accounts/{alice}/close", json={}).status_code == 409
    again = client.put(
        f"/api/accounts/{alice}/overdraft-limit", json={"overdraft_limit": "1"}
    )
    assert again.status_code == 409
    assert (
        client.post(f"/api/accounts/{uuid.uuid4()}/close", json={}).status_code == 404
    )


PLAIN_FORM = "must be a plain decimal number such as 12.34"


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (12.345, "at most 2 decimal places"),
        ("12.345", "at most 2 decimal places"),
        ("NaN", PLAIN_FORM),
        ("Infinity", PLAIN_FORM),
        ("-Infinity", PLAIN_FORM),
        ("-5", "greater than zero"),
        (0, "greater than zero"),
        (-3, "greater than zero"),
        ("1000000000000.01", "at most 1,000,000,000,000.00"),
        (10**13, "at most 1,000,000,000,000.00"),
        ("twelve", PLAIN_FORM),
        ("", "is missing"),
        (None, "decimal string or an integer"),
        (True, "decimal string or an integer"),
        ([1], "decimal string or an integer"),
        # Issue 9: too lenient for money, or a 500.
        ("1e3", PLAIN_FORM),
        ("1_000", PLAIN_FORM),
        ("\u0661\u0662", "with the digits 0 to 9"),
        ("\uff15", "with the digits 0 to 9"),
        (" 5", "must not contain spaces"),
        ("5.", PLAIN_FORM),
        (".5", PLAIN_FORM),
        ("+5", "without a sign"),
        ("1e999999999999", PLAIN_FORM),
        ("9" * 60_000, "at most 1,000,000,000,000.00"),
    ],
    ids=lambda value: repr(value)[:20],
)
def test_bad_amounts_are_refused_and_record_nothing(
    client: TestClient, amount: object, reason: str
) -> None:
    alice = open_account(client)
    bob = open_account(client)
    before = settled_position(client, alice, bob)
    for path, body in [
        (f"/api/accounts/{alice}/deposits", {"amount": amount}),
        (f"/api/accounts/{alice}/withdrawals", {"amount": amount}),
        (
            "/api/transfers",
            {"debit_account_id": alice, "credit_account_id": bob, "amount": amount},
        ),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        detail = response.json()["detail"][0]
        assert detail["field"] == "amount"
        assert reason in detail["msg"]
        assert len(response.content) < 1000  # the input is not repeated
    assert feed_position(client) == before


def post_raw(client: TestClient, path: str, body: bytes) -> Any:
    """Posts a JSON body exactly as written (json= would go through a float)."""
    return client.post(path, content=body, headers={"content-type": "application/json"})


def test_json_numbers_are_judged_by_their_literal_text(client: TestClient) -> None:
    alice = open_account(client)
    before = settled_position(client, alice)
    path = f"/api/accounts/{alice}/deposits"
    for literal, reason in [
        (b"NaN", PLAIN_FORM),
        (b"Infinity", PLAIN_FORM),
        (b"-Infinity", PLAIN_FORM),
        (b"1e999", PLAIN_FORM),
        (b"1e3", PLAIN_FORM),
        (b"1.5e1", PLAIN_FORM),
        (b"1e999999999999", PLAIN_FORM),
        (b"1.0000000000000001", "at most 2 decimal places"),
        (b"12.340", "at most 2 decimal places"),
        (b"-5.0", "greater than zero"),
        (b"0.00", "greater than zero"),
        (b"1" + b"0" * 30, "at most 1,000,000,000,000.00"),
        (b"9" * 60_000, "at most 1,000,000,000,000.00"),
    ]:
        response = post_raw(client, path, b'{"amount": ' + literal + b"}")
        assert response.status_code == 422, literal[:20]
        detail = response.json()["detail"][0]
        assert detail["field"] == "amount"
        assert reason in detail["msg"], (literal[:20], detail["msg"])
    assert feed_position(client) == before
    for literal, amount in [(b"12.34", "12.34"), (b"7", "7.00"), (b"0.5", "0.50")]:
        response = post_raw(
            client, f"{path}?wait=true", b'{"amount": ' + literal + b"}"
        )
        assert response.status_code == 200, response.text
        transaction = client.get(
            f"/api/transactions/{response.json()['transaction_id']}"
        ).json()
        assert transaction["amount"] == amount


def test_hostile_bodies_are_a_clear_422(client: TestClient) -> None:
    alice = open_account(client)
    before = settled_position(client, alice)
    for body in [
        b"[" * 60_000,
        b'{"amount": ' + b"[" * 60_000 + b"}",
        b'{"amount": "1"',
        b"\xff\xfe",
        b'{"amount": "1", "amount": 1e3}',
        b"1e3",
        b'"5"',
    ]:
        response = post_raw(client, f"/api/accounts/{alice}/deposits", body)
        assert response.status_code == 422, (body[:20], response.text[:200])
    # Not the amount, but a JSON number where text is expected: never read as text.
    response = post_raw(
        client,
        "/api/transfers",
        b'{"debit_account_id": 1e3, "credit_account_id": 2.5, "amount": "1"}',
    )
    assert response.status_code == 422
    response = post_raw(client, "/api/accounts", b'{"name": 1.5}')
    assert response.status_code == 422
    assert feed_position(client) == before


def test_bad_ids_self_transfer_and_unknown_accounts(client: TestClient) -> None:
    alice = open_account(client)
    before = settled_position(client, alice)
    response = client.post(
        "/api/transfers",
        json={"debit_account_id": alice, "credit_account_id": alice, "amount": "1"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "credit_account_id"
    response = client.post(
        "/api/transfers",
        json={"debit_account_id": "nope", "credit_account_id": alice, "amount": "1"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "debit_account_id"
    unknown = str(uuid.uuid4())
    response = client.post(f"/api/accounts/{unknown}/deposits", json={"amount": "1"})
    assert response.status_code == 404
    response = client.post(
        "/api/transfers",
        json={"debit_account_id": alice, "credit_account_id": unknown, "amount": "1"},
    )
    assert response.status_code == 404
    response = client.post(
        f"/api/accounts/{alice}/deposits", json={"amount": "1", "x": 1}
    )
    assert response.status_code == 422
    assert feed_position(client) == before


def test_bad_names_and_limits(client: TestClient) -> None:
    assert client.post("/api/accounts", json={"name": "x" * 101}).status_code == 422
    assert client.post("/api/accounts", json={"name": 5}).status_code == 422
    alice = open_account(client)
    before = settled_position(client, alice)
    for limit, reason in [
        ("-1", "Overdraft limit must not be negative"),
        ("1.234", "Overdraft limit must have at most 2 decimal places"),
        ("NaN", "Overdraft limit must be a plain decimal number"),
        ("1e999999999999", "Overdraft limit must be a plain decimal number"),
        ("1e3", "Overdraft limit must be a plain decimal number"),
        ("9" * 60_000, "Overdraft limit must be at most 1,000,000,000,000.00"),
    ]:
        response = client.put(
            f"/api/accounts/{alice}/overdraft-limit", json={"overdraft_limit": limit}
        )
        assert response.status_code == 422
        detail = response.json()["detail"][0]
        assert detail["field"] == "overdraft_limit"
        assert detail["msg"].startswith(reason), detail["msg"]
    response = client.put(
        f"/api/accounts/{alice}/overdraft-limit",
        content=b'{"overdraft_limit": 1e999999999999}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert feed_position(client) == before
    response = client.put(
        f"/api/accounts/{alice}/overdraft-limit",
        content=b'{"overdraft_limit": 0}',
        headers={"content-type": "application/json"},
    )
    assert response.json()["overdraft_limit"] == "0.00"


def test_idempotency_key_returns_the_same_transaction(client: TestClient) -> None:
    alice = open_account(client)
    key = str(uuid.uuid4())
    headers = {"Idempotency-Key": key}
    path = f"/api/accounts/{alice}/deposits?wait=true"
    first = client.post(path, json={"amount": "10"}, headers=headers).json()
    second = client.post(path, json={"amount": "10"}, headers=headers).json()
    assert first["transaction_id"] == second["transaction_id"]
    # The key names the request; the transaction's id is the bank's own.
    assert first["transaction_id"] != key
    assert client.get(f"/api/accounts/{alice}").json()["balance"] == "10.00"
    conflict = client.post(path, json={"amount": "11"}, headers=headers)
    assert conflict.status_code == 409
    assert "Idempotency-Key" in conflict.json()["detail"]
    before = feed_position(client)
    for bad in [
        "",
        "x" * 65,
        "a b",
        "\xe9".encode("latin-1"),
        "<script>",
        "k" * 10_000,
    ]:
        response = client.post(
            path, json={"amount": "10"}, headers={"Idempotency-Key": bad}
        )
        assert response.status_code == 422, bad[:20]
        detail = response.json()["detail"][0]
        assert "Idempotency-Key must be 1 to 64 characters" in detail["msg"]
        assert len(response.content) < 1000
    assert feed_position(client) == before
    fine = client.post(path, json={"amount": "1"}, headers={"Idempotency-Key": "x"})
    assert fine.status_code == 200


def test_a_replayed_key_answers_the_real_status(client: TestClient) -> None:
    """Finished: 200 with the final status, as ?wait=true; pending: 202."""
    alice = open_account(client, "Alice")
    path = f"/api/accounts/{alice}/withdrawals"
    key = {"Idempotency-Key": "withdraw-1"}
    first = client.post(f"{path}?wait=true", json={"amount": "5"}, headers=key)
    assert first.json()["status"] == "failed"
    again = client.post(path, json={"amount": "5"}, headers=key)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.json()["error"] == "Insufficient funds in Alice's account"
    deposited = client.post(
        f"/api/accounts/{alice}/deposits?wait=true",
        json={"amount": "3"},
        headers={"Idempotency-Key": "deposit-1"},
    ).json()
    replayed = client.post(
        f"/api/accounts/{alice}/deposits",
        json={"amount": "3"},
        headers={"Idempotency-Key": "deposit-1"},
    )
    assert replayed.status_code == 200
    assert replayed.json() == deposited
    assert deposited["status"] == "succeeded"
    assert client.get(f"/api/accounts/{alice}").json()["balance"] == "3.00"


def test_a_first_keyed_request_is_accepted_as_any_other(client: TestClient) -> None:
    """Only a retry answers the final status; a first request is 202 pending."""
    alice = open_account(client, "Alice")
    path = f"/api/accounts/{alice}/deposits"
    first = client.post(path, json={"amount": "3"}, headers={"Idempotency-Key": "d1"})
    assert first.status_code == 202
    assert first.json()["status"] == "pending"
    again = client.post(path, json={"amount": "3"}, headers={"Idempotency-Key": "d1"})
    assert again.json()["transaction_id"] == first.json()["transaction_id"]
    assert again.status_code in (200, 202)


def test_a_pending_transaction_is_shown_in_full() -> None:
    """Recorded by Commands, not yet in the read model: the documented shape."""
    commands = Commands(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    alice, bob = uuid.uuid4(), uuid.uuid4()
    staff = Actor(uuid.uuid4(), "staff", "staff")
    transaction_id = commands.transfer_funds(alice, bob, "2.50", initiated_by=staff.ref)

    class EmptyView:
        def get_transaction(self, _: uuid.UUID) -> None:
            return None

        def get_account(self, _: uuid.UUID) -> None:
            return None

    class NoAccounts:
        def get_account(self, account_id: uuid.UUID) -> None:
            raise AccountNotFoundError(account_id)

    bank = SimpleNamespace(
        commands=commands,
        accounts=NoAccounts(),
        interface=SimpleNamespace(view=EmptyView()),
    )
    banking = Banking(bank)  # type: ignore[arg-type]
    transaction = banking.transaction(staff, transaction_id)
    assert transaction is not None
    status = transaction.to_json()
    assert set(status) == set(TransactionOut.model_fields)
    assert status["status"] == "pending"
    assert status["kind"] == "transfer"
    assert status["amount"] == "2.50"
    assert status["debit_account_id"] == str(alice)
    assert status["credit_account_id"] == str(bob)
    assert status["initiated_by"] == {"id": str(staff.id), "username": "staff"}
    assert banking.transaction(staff, uuid.uuid4()) is None
    # Nobody else's to see: a customer who owns neither account.
    customer = Actor(uuid.uuid4(), "carol", "customer")
    assert banking.transaction(customer, transaction_id) is None


def test_transactions_of_an_unknown_account_are_404(client: TestClient) -> None:
    alice = open_account(client)
    assert client.get(f"/api/transactions?account_id={alice}").json() == []
    unknown = uuid.uuid4()
    response = client.get(f"/api/transactions?account_id={unknown}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"Account not found: account {unknown}"


def test_openapi_documents_the_answers_and_the_amount_rule(
    client: TestClient,
) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]

    def codes(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    for path in ("/api/accounts/{account_id}/deposits", "/api/transfers"):
        assert {"200", "202", "404", "409", "422"} <= codes(path, "post")
        parameters = paths[path]["post"]["parameters"]
        key = next(p for p in parameters if p["name"] == "Idempotency-Key")
        assert "64" in key["description"]
    assert {"200", "404", "409", "422"} <= codes(
        "/api/accounts/{account_id}/overdraft-limit", "put"
    )
    assert {"200", "404", "409", "422"} <= codes(
        "/api/accounts/{account_id}/close", "post"
    )
    assert {"200", "404", "422"} <= codes("/api/transactions", "get")
    assert {"200", "404", "422"} <= codes("/api/transactions/{transaction_id}", "get")
    assert {"201", "401", "422"} <= codes("/api/accounts", "post")
    for path in (
        "/api/accounts/{account_id}/payee",
        "/api/accounts/{account_id}/statement",
        "/api/accounts/{account_id}/statement.csv",
    ):
        assert {"200", "401", "404", "422"} <= codes(path, "get"), path
    statement = paths["/api/accounts/{account_id}/statement"]["get"]
    assert {p["name"] for p in statement["parameters"]} == {
        "account_id",
        "from",
        "to",
        "cursor",
        "limit",
    }
    csv_answer = paths["/api/accounts/{account_id}/statement.csv"]["get"]
    assert "text/csv" in csv_answer["responses"]["200"]["content"]
    listed = paths["/api/accounts"]["get"]
    assert {p["name"] for p in listed["parameters"]} == {"q", "sort", "cursor", "limit"}
    amount = schema["components"]["schemas"]["AmountIn"]["properties"]["amount"]
    text = next(option for option in amount["anyOf"] if option["type"] == "string")
    assert text["pattern"] == r"^[0-9]+(\.[0-9]{1,2})?$"
    assert "1e3" in amount["description"]
    assert amount["examples"] == ["12.34"]
    limit = schema["components"]["schemas"]["OverdraftLimitIn"]["properties"]
    assert "Zero or more" in limit["overdraft_limit"]["description"]


def test_state_and_openapi_docs(client: TestClient) -> None:
    alice = open_account(client)
    deposit(client, alice, "1")
    state = client.get("/api/state").json()
    assert state["position"] >= 4
    assert [a["id"] for a in state["accounts"]] == [alice]
    assert state["transactions"][0]["status"] == "succeeded"
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/transfers" in paths
    page = client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]


def test_list_endpoints_answer_the_json_fastapi_would(client: TestClient) -> None:
    """Encoded with json.dumps, byte for byte what jsonable_encoder gave before."""
    alice = open_account(client, "Zoë")
    bob = open_account(client, None)
    deposit(client, alice, "12.3")
    client.post(
        "/api/transfers?wait=true",
        json={"debit_account_id": alice, "credit_account_id": bob, "amount": "2"},
    )
    view = client.app.state.bank.interface.view  # type: ignore[attr-defined]

    def fastapi_json(content: Any) -> bytes:
        return JSONResponse(jsonable_encoder(content)).body

    accounts = client.get("/api/accounts")
    assert accounts.headers["content-type"] == "application/json"
    assert accounts.content == fastapi_json(
        [a.to_json() for a in view.list_accounts()[0]]
    )
    assert "Zoë".encode() in accounts.content  # not \\u escaped, as before
    transactions = client.get(f"/api/transactions?account_id={alice}&limit=5")
    assert transactions.content == fastapi_json(
        [t.to_json() for t in view.list_transactions(uuid.UUID(alice), limit=5)[0]]
    )
    assert len(transactions.json()) == 2
    state = client.get("/api/state").json()
    assert state["accounts"] == accounts.json()
    assert state["position"] == view.max_feed_position()
    # The docs still describe the answers.
    schemas = client.get("/openapi.json").json()
    paths = schemas["paths"]

    def answer(path: str) -> dict[str, Any]:
        ok = paths[path]["get"]["responses"]["200"]["content"]
        schema: dict[str, Any] = ok["application/json"]["schema"]
        return schema

    assert answer("/api/accounts")["items"]["$ref"].endswith("/AccountOut")
    assert answer("/api/transactions")["items"]["$ref"].endswith("/TransactionOut")
    assert answer("/api/state")["$ref"].endswith("/StateOut")
    account_fields = schemas["components"]["schemas"]["AccountOut"]["properties"]
    assert set(account_fields) == set(accounts.json()[0])


def test_owners_are_remembered_and_unknown_accounts_asked_each_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    staff = client.staff  # type: ignore[attr-defined]
    alice = uuid.UUID(open_account(client, "Alice"))
    bob = uuid.UUID(open_account(client, "Bob"))
    banking = client.app.state.banking  # type: ignore[attr-defined]
    unknown = uuid.uuid4()
    owner = UserRef(uuid.UUID(staff.id), staff.username)
    assert banking._owners == {alice: owner, bob: owner}
    bank = client.app.state.bank  # type: ignore[attr-defined]

    def no_database(*_: Any) -> None:
        raise AssertionError("asked the database")

    with monkeypatch.context() as patch:
        patch.setattr(bank.interface.view, "get_account", no_database)
        patch.setattr(bank.accounts, "get_account", no_database)
        body = {"debit_account_id": str(alice), "credit_account_id": str(bob)}
        response = client.post("/api/transfers", json={**body, "amount": "1"})
        assert response.status_code == 202, response.text
    # Unknown accounts are still 404, asked each time.
    response = client.post(
        "/api/transfers",
        json={
            "debit_account_id": str(alice),
            "credit_account_id": str(unknown),
            "amount": "1",
        },
    )
    assert response.status_code == 404
    assert response.json()["detail"] == f"Account not found: account {unknown}"
    assert unknown not in banking._owners
    # The map is bounded: emptied when full.
    monkeypatch.setattr(usecases, "KNOWN_OWNERS_LIMIT", 2)
    carol = uuid.UUID(open_account(client, "Carol"))
    assert banking._owners == {carol: owner}
    assert client.get(f"/api/accounts/{alice}").status_code == 200
    assert banking._owners == {carol: owner, alice: owner}

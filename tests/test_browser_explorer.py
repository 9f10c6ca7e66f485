"""Real-browser tests of the pages that look inside the bank: an account's events
and time travel, a transaction's journey, the system live, the notification logs,
and "How this bank works"; what a customer may see of them.

The server, the browser and the tabs are tests/test_browser.py's. Every page must
run without a script error or a refusal of the Content-Security-Policy. Screenshots
go to test-artifacts/; BANKACCOUNTS_UPDATE_SCREENSHOT=1 also refreshes the
README's docs/screenshots/ (journey-transfer.png, journey-refund.png,
explorer-events.png, system.png, how-it-works.png).
"""

from __future__ import annotations

import re
import shutil
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.signin import sign_in
from tests.test_browser import (
    ROOT,
    Server,
    Tab,
    browser,  # noqa: F401 (the fixture)
    env_flag,
    new_context,
    sign_in_browser,
    staff_context,
    start_server,
)

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips, or fails in CI
    expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, BrowserContext

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "docs" / "screenshots"
README_SCREENSHOTS = {
    "journey-transfer",
    "journey-refund",
    "explorer-events",
    "system",
    "how-it-works",
}
#: Wide enough for a transfer's lanes without scrolling (a refund's need more).
WIDE = {"width": 1600, "height": 1000}
WIDER = {"width": 2000, "height": 1000}


@pytest.fixture(scope="module")
def server(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A bank of its own for this module, its staff signed up first."""
    server = start_server(tmp_path_factory, "explorer")
    assert server.staff.user["role"] == "staff"
    yield server
    server.stop()


@pytest.fixture
def context(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    server: Server,
) -> Iterator[BrowserContext]:
    """A fresh browser profile signed in as staff."""
    context = staff_context(browser, server)
    yield context
    context.close()


def unique(name: str) -> str:
    """A name no other test uses on the shared server."""
    return f"{name} {uuid.uuid4().hex[:6]}"


def keep_screenshot(tab: Tab, name: str, **options: Any) -> None:
    """A screenshot in test-artifacts/, and in docs/screenshots/ when asked to."""
    path = tab.screenshot(name, **options)
    if name in README_SCREENSHOTS and env_flag("BANKACCOUNTS_UPDATE_SCREENSHOT"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / path.name)


def transfer(
    server: Server, debit: str, credit: str, amount: str, as_: Any = None
) -> dict[str, Any]:
    """A finished transfer over REST: its id, status and error."""
    body = {"debit_account_id": debit, "credit_account_id": credit, "amount": amount}
    answer: dict[str, Any] = server.request(
        "POST", "/api/transfers?wait=true", body, as_=as_
    )
    return answer


def page_tab(context: BrowserContext, server: Server, path: str) -> Tab:
    """A tab on one of the explorer's pages (no live feed there)."""
    return Tab(context, f"{server.url}{path}", live=False)


def step_names(tab: Tab) -> list[str]:
    """The journey's steps, as the list names them ("TransferFundsSaga.Created")."""
    names: list[str] = tab.page.get_by_test_id("step-name").all_text_contents()
    return names


# ---------------------------------------------------------------- events, time travel


def test_the_events_and_the_state_at_each_version(
    server: Server, context: BrowserContext
) -> None:
    name = unique("Hana")
    account = server.open_account(name, deposit="100.00")
    server.deposit(account["id"], "50.00")
    answer = server.request(
        "POST",
        f"/api/accounts/{account['id']}/withdrawals?wait=true",
        {"amount": "30.00"},
    )
    assert answer["status"] == "succeeded", answer
    server.request(
        "PUT",
        f"/api/accounts/{account['id']}/overdraft-limit",
        {"overdraft_limit": "25.00"},
    )
    tab = Tab(context, server.url)

    # From the panel of the account.
    tab.select(account["id"])
    tab.by("open-events").click()
    expect(tab.page).to_have_url(re.compile(rf"/explorer/accounts/{account['id']}"))
    rows = tab.page.get_by_test_id("event-row")
    expect(rows).to_have_count(5)
    assert [row.get_attribute("data-type") for row in rows.all()] == [
        "Created",
        "TransactionAppended",
        "TransactionAppended",
        "TransactionAppended",
        "OverdraftLimitSet",
    ]
    expect(tab.by("events-title")).to_have_text(f"Events of {name}")
    # The last version at first: the account as it is now.
    expect(tab.by("version-label")).to_have_text("Version 5 of 5")
    expect(tab.by("state-balance")).to_have_text("120.00")
    expect(tab.by("state-limit")).to_have_text("25.00")
    expect(tab.by("state-event-type")).to_have_text("OverdraftLimitSet")

    tab.by("version-first").click()
    expect(tab.by("version-label")).to_have_text("Version 1 of 5")
    expect(tab.by("state-balance")).to_have_text("0.00")
    expect(tab.by("state-event-type")).to_have_text("Created")
    expect(tab.by("version-prev")).to_be_disabled()
    expect(tab.by("version-basis")).to_have_text("Rebuilt from 1 event.")
    tab.by("version-next").click()
    expect(tab.by("state-balance")).to_have_text("100.00")
    expect(tab.by("state-event-type")).to_have_text("TransactionAppended")
    expect(tab.by("state-event-json")).to_contain_text('"amount": "100.00"')
    tab.by("version-next").click()
    expect(tab.by("state-balance")).to_have_text("150.00")
    # The slider, as a keyboard moves it.
    tab.by("version-slider").focus()
    tab.page.keyboard.press("ArrowRight")
    expect(tab.by("version-label")).to_have_text("Version 4 of 5")
    expect(tab.by("state-balance")).to_have_text("120.00")
    expect(tab.by("state-limit")).to_have_text("0.00")
    expect(tab.page.locator('[data-testid="event-row"].is-selected')).to_have_attribute(
        "data-version", "4"
    )
    # A row picks its version too; the address keeps it.
    rows.nth(1).get_by_test_id("event-pick").click()
    expect(tab.by("state-balance")).to_have_text("100.00")
    expect(tab.page).to_have_url(re.compile(r"version=2$"))
    tab.page.reload()
    expect(tab.by("version-label")).to_have_text("Version 2 of 5")
    expect(tab.by("state-balance")).to_have_text("100.00")
    tab.page.set_viewport_size({"width": 1280, "height": 1000})
    keep_screenshot(tab, "explorer-events")
    tab.assert_clean()


def test_the_statement_leads_to_the_events(
    server: Server, context: BrowserContext
) -> None:
    account = server.open_account(unique("Ivo"), deposit="10.00")
    tab = Tab(context, server.url)
    tab.select(account["id"])
    tab.by("open-statement").click()
    expect(tab.page.get_by_test_id("statement-entry")).to_have_count(1)
    tab.by("statement-events").click()
    expect(tab.page.get_by_test_id("event-row")).to_have_count(2)
    expect(tab.by("state-balance")).to_have_text("10.00")
    tab.assert_clean()


# ---------------------------------------------------------------- journeys


def test_the_journey_of_a_transfer_from_the_activity(
    server: Server,
    browser: Browser,  # noqa: F811 (the fixture imported above)
) -> None:
    payer_name, payee_name = unique("Jo"), unique("Kai")
    payer = server.open_account(payer_name, deposit="300.00")
    payee = server.open_account(payee_name)
    answer = transfer(server, payer["id"], payee["id"], "75.50")
    assert answer["status"] == "succeeded", answer
    context = staff_context(browser, server, viewport=WIDE)
    tab = Tab(context, server.url)

    row = tab.transaction(f"Transfer from {payer_name} to {payee_name}")
    row.get_by_test_id("transaction-journey").click()
    expect(tab.page).to_have_url(
        re.compile(rf"/explorer/transactions/{answer['transaction_id']}$")
    )
    expect(tab.by("journey-title")).to_have_text("Transfer of 75.50")
    expect(tab.by("journey-outcome")).to_have_attribute("data-state", "succeeded")
    lanes = tab.page.get_by_test_id("journey-lane")
    expect(lanes).to_have_count(4)
    assert [lane.get_attribute("data-lane") for lane in lanes.all()] == [
        "Commands",
        "Sagas",
        "Accounts",
        "Interface",
    ]
    names = step_names(tab)
    process = [n for n in names if "." in n]
    assert process == [
        "TransferFundsCommand.Created",
        "TransferFundsSaga.Created",
        "BankAccount.TransactionAppended",
        "TransferFundsSaga.DebitRecorded",
        "BankAccount.TransactionAppended",
        "TransferFundsSaga.Succeeded",
    ], names
    nodes = tab.page.get_by_test_id("journey-node")
    expect(nodes).to_have_count(len(names))
    assert nodes.first.get_attribute("data-lane") == "Commands"
    # One arrow into every step but the first, none of them marked failed.
    expect(tab.page.get_by_test_id("journey-arrow")).to_have_count(len(names) - 1)
    expect(
        tab.page.locator('[data-testid="journey-node"][data-mark="failed"]')
    ).to_have_count(0)
    # A step links to the account at the version it made.
    link = tab.page.get_by_test_id("step-account-link").first
    expect(link).to_have_attribute(
        "href", re.compile(rf"/explorer/accounts/{payer['id']}\?version=3$")
    )
    keep_screenshot(tab, "journey-transfer")
    link.click()
    expect(tab.by("version-label")).to_have_text("Version 3 of 3")
    expect(tab.by("state-balance")).to_have_text("224.50")
    expect(tab.by("state-event-json")).to_contain_text('"amount": "-75.50"')
    tab.assert_clean()
    context.close()


def test_the_journey_of_a_refunded_transfer_from_the_statement(
    server: Server,
    browser: Browser,  # noqa: F811 (the fixture imported above)
) -> None:
    payer_name, payee_name = unique("Lea"), unique("Max")
    payer = server.open_account(payer_name, deposit="80.00")
    payee = server.open_account(payee_name)
    server.request("POST", f"/api/accounts/{payee['id']}/close", {})
    answer = transfer(server, payer["id"], payee["id"], "30.00")
    assert answer["status"] == "failed", answer
    context = staff_context(browser, server, viewport=WIDER)
    tab = Tab(context, server.url)

    tab.select(payer["id"])
    tab.by("open-statement").click()
    entries = tab.page.get_by_test_id("statement-entry")
    expect(entries).to_have_count(3)  # the deposit, the debit and its refund
    debit = tab.page.locator(
        f'[data-testid="statement-entry"][data-transaction-id="{answer["transaction_id"]}"]'
    )
    # The refund's line leads to its transfer's journey too.
    refund_line = entries.filter(has_text="Refund from")
    expect(refund_line.get_by_test_id("entry-journey")).to_have_attribute(
        "href", f"/explorer/transactions/{answer['transaction_id']}"
    )
    debit.first.get_by_test_id("entry-journey").click()

    outcome = tab.by("journey-outcome")
    expect(outcome).to_have_attribute("data-state", "refunded")
    expect(outcome).to_contain_text("in Accounts (BankAccount.ErrorRecorded)")
    expect(outcome).to_contain_text("closed")
    names = step_names(tab)
    for name in (
        "TransferFundsSaga.DebitRecorded",
        "BankAccount.ErrorRecorded",
        "TransferFundsSaga.RefundRequested",
        "RefundFundsSaga.Created",
        "RefundFundsSaga.Succeeded",
        "TransferFundsSaga.Errored",
    ):
        assert name in names, names
    assert names.index("BankAccount.ErrorRecorded") < names.index(
        "RefundFundsSaga.Created"
    )
    failed = tab.page.locator('[data-testid="journey-node"][data-mark="failed"]')
    refund = tab.page.locator('[data-testid="journey-node"][data-mark="refund"]')
    expect(failed.first).to_be_visible()
    assert refund.count() >= 3  # the refund saga's start and end, and the credit back
    error = tab.page.locator(
        '[data-testid="journey-step"][data-type="ErrorRecorded"]'
    ).get_by_test_id("step-error")
    expect(error).to_contain_text("closed")
    keep_screenshot(tab, "journey-refund")
    tab.assert_clean()
    context.close()


def test_the_journey_of_a_refused_withdrawal(
    server: Server, context: BrowserContext
) -> None:
    account = server.open_account(unique("Ned"), deposit="5.00")
    answer = server.request(
        "POST",
        f"/api/accounts/{account['id']}/withdrawals?wait=true",
        {"amount": "9.00"},
    )
    assert answer["status"] == "failed", answer
    tab = page_tab(
        context, server, f"/explorer/transactions/{answer['transaction_id']}"
    )
    expect(tab.by("journey-outcome")).to_have_attribute("data-state", "failed")
    expect(tab.by("journey-outcome")).to_contain_text("Insufficient funds")
    names = [n for n in step_names(tab) if "." in n]
    assert names == [
        "WithdrawFundsCommand.Created",
        "WithdrawFundsSaga.Created",
        "BankAccount.ErrorRecorded",
        "WithdrawFundsSaga.Errored",
    ], names
    tab.assert_clean()


# ---------------------------------------------------------------- the system, live


def test_the_system_page_shows_positions_and_follows_them(
    server: Server, context: BrowserContext
) -> None:
    account = server.open_account(unique("Olga"), deposit="1.00")
    tab = Tab(context, server.url)
    tab.by("nav-system").click()
    expect(tab.page).to_have_url(re.compile(r"/system$"))
    expect(tab.by("system-health")).to_have_text("Healthy")
    expect(tab.page.get_by_test_id("system-node")).to_have_count(4)
    edge = tab.page.locator(
        '[data-testid="system-edge"][data-from="Commands"][data-to="Sagas"]'
    )
    expect(edge).to_have_attribute("data-position", re.compile(r"^[1-9]\d*$"))
    expect(edge).to_have_attribute("data-lag", "0")
    before = int(edge.get_attribute("data-position") or 0)
    for upstream, follower in (
        ("Sagas", "Accounts"),
        ("Accounts", "Sagas"),
        ("Sagas", "Interface"),
        ("Accounts", "Interface"),
    ):
        other = tab.page.locator(
            f'[data-testid="system-edge"][data-from="{upstream}"][data-to="{follower}"]'
        )
        expect(other.get_by_test_id("edge-position")).to_have_text(
            re.compile(r"^at #\d+$")
        )
    expect(tab.page.get_by_test_id("system-row")).to_have_count(6)

    # Money moves: the page follows without a reload.
    server.deposit(account["id"], "2.00")
    server.deposit(account["id"], "3.00")
    expect(edge).to_have_attribute("data-position", str(before + 2))
    expect(edge.get_by_test_id("edge-position")).to_have_text(f"at #{before + 2}")
    commands = tab.page.locator('[data-testid="system-node"][data-app="Commands"]')
    expect(commands.get_by_test_id("node-max")).to_have_text(f"log at #{before + 2}")
    keep_screenshot(tab, "system")
    tab.assert_clean()


# ---------------------------------------------------------------- notification logs


def test_the_notification_logs_page_filter_and_tail(
    server: Server, context: BrowserContext
) -> None:
    account = server.open_account(unique("Pia"), deposit="1.00")
    for amount in ("2.00", "3.00", "4.00"):
        server.deposit(account["id"], amount)
    for _ in range(3):  # more than a page of 10 in any case
        server.open_account(unique("Other"), deposit="1.00")
    tab = page_tab(context, server, "/explorer/logs?app=Accounts&limit=10")
    entries = tab.page.get_by_test_id("log-entry")
    expect(entries).to_have_count(10)
    first_ids = [
        int(i) for i in entries.evaluate_all("(es) => es.map((e) => e.dataset.id)")
    ]
    assert first_ids == sorted(first_ids)

    # The next page from the Link header: later ids only.
    tab.by("log-next").click()
    expect(entries.first).not_to_have_attribute("data-id", str(first_ids[0]))
    ids = [int(i) for i in entries.evaluate_all("(es) => es.map((e) => e.dataset.id)")]
    assert ids, first_ids
    assert min(ids) > max(first_ids), (first_ids, ids)
    tab.by("log-previous").click()
    expect(entries.first).to_have_attribute("data-id", str(first_ids[0]))

    # One aggregate's events of one type.
    tab.by("log-type").fill("TransactionAppended")
    tab.by("log-originator").fill(account["id"])
    tab.by("log-show").click()
    expect(entries).to_have_count(4)
    assert set(entries.evaluate_all("(es) => es.map((e) => e.dataset.type)")) == {
        "TransactionAppended"
    }
    assert set(entries.evaluate_all("(es) => es.map((e) => e.dataset.originator)")) == {
        account["id"]
    }
    expect(entries.nth(3).get_by_test_id("event-data")).to_contain_text(
        '"amount": "4.00"'
    )

    # Tailing: a new event of the aggregate appears without asking.
    tab.by("log-tail").click()
    expect(tab.by("log-tail")).to_have_attribute("aria-pressed", "true")
    server.deposit(account["id"], "5.00")
    expect(entries.last.get_by_test_id("event-data")).to_contain_text(
        '"amount": "5.00"'
    )
    tab.by("log-tail").click()
    expect(tab.by("log-tail")).to_have_attribute("aria-pressed", "false")
    tab.assert_clean()


# ---------------------------------------------------------------- how it works


def test_how_it_works_shows_the_latest_transaction_step_by_step(
    server: Server,
    browser: Browser,  # noqa: F811 (the fixture imported above)
) -> None:
    name = f"quinn-{uuid.uuid4().hex[:6]}"
    customer = sign_in(server.url, name)
    mine = server.open_account("Everyday", deposit="40.00", as_=customer)
    savings = server.open_account("Savings", as_=customer)
    answer = transfer(server, mine["id"], savings["id"], "15.00", as_=customer)
    context = new_context(browser)
    sign_in_browser(context, server, name)
    tab = Tab(context, server.url)

    tab.by("nav-how").click()
    expect(tab.page).to_have_url(re.compile(r"/how-it-works$"))
    expect(tab.by("how-sagas")).to_contain_text("RefundFundsSaga")
    expect(tab.by("how-accounts")).to_contain_text("ErrorRecorded")
    steps = tab.page.get_by_test_id("how-step")
    expect(tab.by("how-example-summary")).to_contain_text(
        "A transfer of 15.00, succeeded"
    )
    expect(steps.first).to_contain_text("TransferFundsCommand.Created")
    texts = steps.all_text_contents()
    assert any("TransferFundsSaga.DebitRecorded" in t for t in texts), texts
    assert any("TransferFundsSaga.Succeeded" in t for t in texts), texts
    expect(tab.by("how-journey-link")).to_have_attribute(
        "href", f"/explorer/transactions/{answer['transaction_id']}"
    )
    keep_screenshot(tab, "how-it-works", full_page=True)
    tab.by("how-journey-link").click()
    expect(tab.by("journey-outcome")).to_have_attribute("data-state", "succeeded")
    tab.assert_clean()
    context.close()


# ---------------------------------------------------------------- access


def test_a_customer_sees_their_own_and_no_staff_page(
    server: Server,
    browser: Browser,  # noqa: F811 (the fixture imported above)
) -> None:
    other = server.open_account(unique("Rita"), deposit="9.00")
    other_deposit = server.request(
        "GET", f"/api/transactions?account_id={other['id']}&limit=1"
    )[0]
    name = f"sam-{uuid.uuid4().hex[:6]}"
    customer = sign_in(server.url, name)
    mine = server.open_account("Mine", deposit="12.00", as_=customer)
    context = new_context(browser)
    sign_in_browser(context, server, name)
    tab = Tab(context, server.url)

    expect(tab.by("nav-how")).to_be_visible()
    expect(tab.by("nav-system")).to_have_count(0)
    expect(tab.by("nav-logs")).to_have_count(0)
    for path in ("/system", "/explorer/logs"):
        response = tab.page.goto(f"{server.url}{path}")
        assert response is not None
        assert response.status == 403
        expect(tab.by("forbidden")).to_contain_text("Staff only")
        expect(tab.by("nav-system")).to_have_count(0)

    # Their own account's events and their own transaction's journey.
    tab.page.goto(f"{server.url}/explorer/accounts/{mine['id']}")
    expect(tab.page.get_by_test_id("event-row")).to_have_count(2)
    expect(tab.by("state-balance")).to_have_text("12.00")
    # Not another's: the API's 404, in words.
    tab.page.goto(f"{server.url}/explorer/accounts/{other['id']}")
    expect(tab.by("events-error")).to_have_text(
        "No such account, or not one you may see."
    )
    expect(tab.page.get_by_test_id("event-row")).to_have_count(0)
    tab.page.goto(f"{server.url}/explorer/transactions/{other_deposit['id']}")
    expect(tab.by("journey-error")).to_have_text(
        "No such transaction, or not one you may see."
    )
    expect(tab.page.get_by_test_id("journey-node")).to_have_count(0)
    tab.assert_clean(answered=(403, 404))
    context.close()

"""Real-browser tests of a bank with customers: the sign-in page, two customers in
two browser profiles and the staff in a third, side by side and live, and sessions
that end (signed out in another tab, revoked, expired).

The server, the browser and the tabs are tests/test_browser.py's. Screenshots go to
test-artifacts/; BANKACCOUNTS_UPDATE_SCREENSHOT=1 also refreshes the README's
docs/screenshots/ (signin.png, customer.png, staff.png, statement.png).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from tests.signin import PASSWORD, STAFF, sign_in
from tests.test_browser import (
    EXPECT_TIMEOUT_MS,
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
from tests.waiting import wait_for

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips, or fails in CI
    expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "docs" / "screenshots"
#: The screenshots the README shows.
README_SCREENSHOTS = {"signin", "customer", "customer-credit", "staff", "statement"}
#: A session that lasts seconds, for the expiry test (BANKACCOUNTS_TOKEN_DAYS).
SHORT_SESSION_SECONDS = 25
#: How long until a tab notices an ended session: the websocket checks every 5 s.
SESSION_NOTICED_MS = (SHORT_SESSION_SECONDS + 15) * 1000
#: The sign-in page, to come back to the bank's page ("/") afterwards.
SIGN_IN_TO_ROOT = re.compile(r"/signin\?next=(/|%2F)$")
ACCOUNT_NUMBER = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


@pytest.fixture(scope="module")
def server(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A bank of its own for this module, its staff signed up first."""
    server = start_server(tmp_path_factory, "customers")
    assert server.staff.user["role"] == "staff"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def short_server(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A bank whose sessions last seconds (and whose sign-in throttle is its own)."""
    days = SHORT_SESSION_SECONDS / 86_400
    server = start_server(
        tmp_path_factory, "short", {"BANKACCOUNTS_TOKEN_DAYS": f"{days:.8f}"}
    )
    assert server.staff.user["role"] == "staff"  # later users: customers
    yield server
    server.stop()


def username(prefix: str) -> str:
    """A username nobody on the server has yet."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def keep_screenshot(tab: Tab, name: str, **options: Any) -> None:
    """A screenshot in test-artifacts/, and in docs/screenshots/ when asked to."""
    path = tab.screenshot(name, **options)
    if name in README_SCREENSHOTS and env_flag("BANKACCOUNTS_UPDATE_SCREENSHOT"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / path.name)


def sign_up_in_page(tab: Tab, name: str, password: str = PASSWORD) -> None:
    """Creates an account on the sign-in page; the bank's page opens, live."""
    tab.by("mode-signup").click()
    tab.by("signin-username").fill(name)
    tab.by("signin-password").fill(password)
    tab.by("signin-submit").click()
    tab.wait_until_live()
    expect(tab.by("who-name")).to_have_text(name)


def sign_in_page(tab: Tab, name: str, password: str = PASSWORD) -> None:
    """Signs in on the sign-in page."""
    expect(tab.by("signin-form")).to_be_visible()
    tab.by("signin-username").fill(name)
    tab.by("signin-password").fill(password)
    tab.by("signin-submit").click()


def customer_tab(browser: Browser, server: Server, name: str) -> tuple[Tab, str]:  # noqa: F811
    """A customer signed up over REST, in a fresh profile, on the bank's page."""
    session = sign_in(server.url, name)
    assert session.user["role"] == "customer"
    context = new_context(browser)
    sign_in_browser(context, server, name)
    return Tab(context, server.url), name


def test_the_sign_in_page_signs_up_and_in_with_errors_in_words(
    server: Server,
    browser: Browser,  # noqa: F811
) -> None:
    context = new_context(browser)
    try:
        tab = Tab(context, server.url, live=False)
        # Not signed in: the bank's page sends to sign-in, to come back to "/".
        expect(tab.page).to_have_url(SIGN_IN_TO_ROOT)
        expect(tab.by("signin-heading")).to_have_text("Sign in")
        expect(tab.by("signin-username")).to_be_focused()
        keep_screenshot(tab, "signin")

        # Nothing typed: said beside each field, nothing sent.
        tab.by("signin-submit").click()
        expect(tab.by("username-error")).to_have_text("Enter your username.")
        expect(tab.by("password-error")).to_have_text("Enter your password.")

        # A wrong password: one message, whatever the cause (401).
        sign_in_page(tab, STAFF, "not the password")
        expect(tab.by("signin-error")).to_be_visible()
        expect(tab.by("signin-error")).not_to_have_text("")
        unknown = tab.by("signin-error").text_content()
        sign_in_page(tab, username("nobody"), "not the password")
        expect(tab.by("signin-error")).to_have_text(unknown or "")
        expect(tab.page).to_have_url(SIGN_IN_TO_ROOT)

        # Signing up: the page's own checks, then the bank's (409: the name is taken).
        tab.by("mode-signup").click()
        expect(tab.by("signin-heading")).to_have_text("Create your account")
        expect(tab.by("signin-submit")).to_have_text("Create account")
        tab.by("signin-username").fill("a")
        tab.by("signin-password").fill("short")
        tab.by("signin-submit").click()
        expect(tab.by("username-error")).to_contain_text("3 to 32 characters")
        expect(tab.by("password-error")).to_have_text("Use at least 8 characters.")
        tab.by("signin-username").fill(STAFF.upper())
        tab.by("signin-password").fill(PASSWORD)
        tab.by("signin-submit").click()
        expect(tab.by("username-error")).to_be_visible()
        expect(tab.by("signin-username")).to_have_attribute("aria-invalid", "true")
        keep_screenshot(tab, "signin-taken")

        # A new name: signed up as a customer, signed in, and on the bank's page.
        name = username("erin")
        tab.by("signin-username").fill(name)
        tab.by("signin-submit").click()
        tab.wait_until_live()
        expect(tab.page).to_have_url(f"{server.url}/")
        expect(tab.by("who-name")).to_have_text(name)
        expect(tab.by("who-role")).to_have_text("Customer")
        expect(tab.by("accounts-empty")).to_be_visible()
        expect(tab.by("finder")).to_be_hidden()
        tab.assert_clean(answered=(401, 409))
    finally:
        context.close()


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/", "/\\evil.example/", "javascript:1"],
)
def test_after_sign_in_the_page_goes_to_a_path_of_this_site_only(
    server: Server,
    browser: Browser,  # noqa: F811
    target: str,
) -> None:
    context = new_context(browser)
    try:
        tab = Tab(context, f"{server.url}/signin?next={target}", live=False)
        sign_in_page(tab, STAFF)
        tab.wait_until_live()
        expect(tab.page).to_have_url(f"{server.url}/")
        tab.assert_clean()
    finally:
        context.close()


def test_two_customers_and_the_staff_side_by_side_live(
    server: Server,
    browser: Browser,  # noqa: F811
) -> None:
    contexts = [new_context(browser) for _ in range(2)]
    contexts.append(staff_context(browser, server))
    try:
        alice, bob = "alice", "bob"  # the only ones of these names on this server
        tab_a = Tab(contexts[0], server.url, live=False)
        tab_b = Tab(contexts[1], server.url, live=False)
        staff = Tab(contexts[2], server.url)
        sign_up_in_page(tab_a, alice)
        sign_up_in_page(tab_b, bob)
        for tab in (tab_a, tab_b):
            expect(tab.by("who-role")).to_have_text("Customer")
        expect(staff.by("who-role")).to_have_text("Staff")

        # Another customer's accounts, for the staff's list.
        carol = sign_in(server.url, "carol")
        for account_name, amount in (
            ("Carol's business", "5200.00"),
            ("Taxes", "830.25"),
        ):
            server.open_account(account_name, deposit=amount, as_=carol)
        current = tab_a.open_account("Everyday")
        savings = tab_a.open_account("Savings")
        rainy = tab_b.open_account("Rainy day")
        tab_a.select(current)
        tab_a.move_money("deposit", "250")
        expect(tab_a.balance(current)).to_have_text("250.00")

        # The staff see every account as it opens, with its owner, live.
        for account, owner in ((current, alice), (savings, alice), (rainy, bob)):
            card = staff.card(account)
            expect(card.get_by_test_id("account-owner")).to_have_text(owner)
        expect(staff.balance(current)).to_have_text("250.00")

        # A pays B by account number; B's name shows once the number is known.
        tab_a.by("tab-transfer").click()
        tab_a.by("transfer-to").fill(rainy[:8])
        expect(tab_a.by("transfer-payee")).to_be_hidden()
        tab_a.by("transfer-to").fill(rainy)
        expect(tab_a.by("transfer-payee")).to_have_text(f"Rainy day · {bob}")
        tab_a.move_money("transfer", "40")
        expect(tab_a.by("transfer-status")).to_have_text("Transfer of 40.00 succeeded.")
        expect(tab_a.balance(current)).to_have_text("210.00")
        row_a = tab_a.transaction(f"Transfer from Everyday to {bob}")
        expect(row_a.get_by_test_id("transaction-amount")).to_have_text("\u221240.00")
        expect(row_a.get_by_test_id("transaction-by")).to_have_text(f"by {alice}")
        expect(row_a.get_by_test_id("transaction-time")).to_have_text(
            re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d:\d\d [AP]M UTC$")
        )

        # B sees the credit live, from A by name, and nothing of A's balances.
        expect(tab_b.balance(rainy)).to_have_text("40.00")
        row_b = tab_b.transaction(f"Transfer from {alice} to Rainy day")
        expect(row_b).to_have_attribute("data-status", "succeeded")
        expect(row_b.get_by_test_id("transaction-amount")).to_have_text("+40.00")
        expect(row_b.get_by_test_id("transaction-by")).to_have_text(f"by {alice}")
        expect(tab_b.page.get_by_test_id("account-card")).to_have_count(1)
        expect(tab_b.by("activity-list").get_by_test_id("transaction")).to_have_count(1)
        text_b = tab_b.page.locator("body").inner_text()
        assert "210.00" not in text_b
        assert "250.00" not in text_b
        assert "Everyday" not in text_b
        assert current not in tab_b.page.content()

        # A sees neither B's account nor its balance; the API says it does not exist.
        expect(tab_a.card(rainy)).to_have_count(0)
        answer = contexts[0].request.get(f"{server.url}/api/accounts/{rainy}")
        assert answer.status == 404
        expect(tab_a.page.get_by_test_id("account-card")).to_have_count(2)

        # The staff see both sides, live.
        expect(staff.balance(current)).to_have_text("210.00")
        expect(staff.balance(rainy)).to_have_text("40.00")
        expect(
            staff.transaction("Transfer from Everyday to Rainy day")
        ).to_have_attribute("data-status", "succeeded")

        # A customer's own accounts to pick from, instead of typing a number.
        tab_a.by("transfer-pick").select_option(savings)
        expect(tab_a.by("transfer-to")).to_have_value(savings)
        expect(tab_a.by("transfer-payee")).to_have_text("Savings · your account")
        tab_a.move_money("transfer", "10")
        expect(tab_a.balance(savings)).to_have_text("10.00")
        tab_a.by("transfer-to").fill(rainy)
        expect(tab_a.by("transfer-payee")).to_have_text(f"Rainy day · {bob}")
        tab_a.by("transfer-amount").fill("5")
        tab_a.page.mouse.move(0, 0)
        keep_screenshot(tab_a, "customer")
        keep_screenshot(tab_b, "customer-credit")

        # The staff's list: search by name or number, the compact view.
        staff.by("view-list").click()
        staff.by("account-search").fill("rainy")
        expect(staff.page.get_by_test_id("account-card")).to_have_count(1)
        expect(staff.card(rainy)).to_be_visible()
        staff.by("account-search").fill(current[:8])
        expect(staff.page.get_by_test_id("account-card")).to_have_count(1)
        expect(staff.card(current)).to_be_visible()
        staff.by("account-search").fill("")
        expect(staff.card(rainy)).to_be_visible()
        staff.by("account-sort").select_option("balance")
        names = staff.page.get_by_test_id("account-name")
        expect(names.first).to_have_text("Carol's business")  # the largest first
        expect(names.nth(2)).to_have_text("Everyday")
        staff.select(rainy)
        expect(staff.by("panel-owner")).to_have_text(f"Owner: {bob}")
        staff.page.mouse.move(0, 0)
        keep_screenshot(staff, "staff")
        for tab in (tab_a, tab_b, staff):
            tab.assert_clean(answered=(404,))
    finally:
        for context in contexts:
            context.close()


def test_the_statement_pages_filters_and_exports(
    server: Server,
    browser: Browser,  # noqa: F811
) -> None:
    tab, name = customer_tab(browser, server, "sam")
    try:
        session = sign_in(server.url, name)
        account = server.open_account("Holiday fund", deposit="1000.00", as_=session)
        olive = sign_in(server.url, "olive")
        theirs = server.open_account("Olive's", deposit="300.00", as_=olive)
        # Sixty small deposits: more than a page of fifty.
        path = f"/api/accounts/{account['id']}/deposits"
        for number in range(1, 61):
            server.request("POST", path, {"amount": f"{number}.00"}, as_=session)
        url = f"/api/accounts/{account['id']}"
        wait_for(
            lambda: server.request("GET", url, as_=session)["balance"] == "2830.00",
            message="the deposits have finished",
        )
        for payer, payee, amount in (
            (session, theirs, "125.50"),
            (olive, account, "75.00"),
        ):
            debit = account if payer is session else theirs
            answer = server.request(
                "POST",
                "/api/transfers?wait=true",
                {
                    "debit_account_id": debit["id"],
                    "credit_account_id": payee["id"],
                    "amount": amount,
                },
                as_=payer,
            )
            assert answer["status"] == "succeeded", answer
        expect(tab.balance(account["id"])).to_have_text("2,779.50")

        tab.select(account["id"])
        tab.by("open-statement").click()
        statement = tab.by("statement")
        expect(statement).to_be_visible()
        expect(tab.by("statement-title")).to_have_text("Holiday fund")
        entries = tab.page.get_by_test_id("statement-entry")
        expect(entries).to_have_count(50)
        for index, (description, amount, balance, by) in enumerate(
            [
                ("Transfer from Olive's (olive)", "+75.00", "2,779.50", "olive"),
                ("Transfer to Olive's (olive)", "\u2212125.50", "2,704.50", name),
                ("Deposit", "+60.00", "2,830.00", name),
            ]
        ):
            entry = entries.nth(index)
            expect(entry.get_by_test_id("entry-description")).to_have_text(description)
            expect(entry.get_by_test_id("entry-amount")).to_have_text(amount)
            expect(entry.get_by_test_id("entry-balance")).to_have_text(balance)
            expect(entry.get_by_test_id("entry-by")).to_have_text(by)
        expect(entries.first.get_by_test_id("entry-time")).to_have_text(
            re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d:\d\d [AP]M UTC$")
        )
        tab.page.mouse.move(0, 0)
        keep_screenshot(tab, "statement")

        tab.by("statement-more").click()
        expect(entries).to_have_count(63)
        expect(tab.by("statement-more")).to_be_hidden()
        expect(entries.nth(61).get_by_test_id("entry-balance")).to_have_text("1,001.00")
        expect(entries.last.get_by_test_id("entry-balance")).to_have_text("1,000.00")

        # The export: the same rows as CSV, and the date range in its link.
        href = tab.by("statement-csv").get_attribute("href")
        assert href == f"/api/accounts/{account['id']}/statement.csv"
        answer = tab.page.context.request.get(f"{server.url}{href}")
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(answer.text())))
        assert rows[0] == [
            "date",
            "transaction_id",
            "kind",
            "counterparty",
            "amount",
            "balance",
            "initiated_by",
        ]
        assert len(rows) == 64

        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        tab.by("statement-from").fill(tomorrow)
        tab.by("statement-apply").click()
        expect(tab.by("statement-empty")).to_be_visible()
        expect(entries).to_have_count(0)
        assert "from=" in (tab.by("statement-csv").get_attribute("href") or "")
        tab.by("statement-reset").click()
        expect(entries).to_have_count(50)
        today = datetime.now(UTC).date().isoformat()
        tab.by("statement-from").fill(today)
        tab.by("statement-to").fill(today)
        tab.by("statement-apply").click()
        expect(entries).to_have_count(50)
        tab.by("statement-close").click()
        expect(statement).to_be_hidden()
        tab.assert_clean()
    finally:
        tab.page.context.close()


def test_closing_an_account_with_money_moves_it_first_or_is_refused(
    server: Server,
    browser: Browser,  # noqa: F811
) -> None:
    tab, _ = customer_tab(browser, server, username("cleo"))
    try:
        only = tab.open_account("Only one")
        tab.move_money("deposit", "30")
        expect(tab.balance(only)).to_have_text("30.00")

        # No other account to move the money to: the bank refuses (409), in words.
        tab.by("close-account").click()
        expect(tab.by("close-move-none")).to_be_visible()
        expect(tab.by("close-confirm")).to_have_text("Close account")
        tab.by("close-confirm").click()
        expect(tab.by("close-error")).to_be_visible()
        expect(tab.by("close-error")).not_to_have_text("")
        expect(tab.card(only).get_by_test_id("account-closed-badge")).to_be_hidden()
        tab.by("close-cancel").click()

        second = tab.open_account("Second")
        tab.select(only)
        tab.by("close-account").click()
        expect(tab.by("close-confirm-text")).to_contain_text(
            "Its balance of 30.00 moves to another account first"
        )
        expect(tab.by("close-move-to")).to_have_value(second)
        expect(tab.by("close-confirm")).to_have_text("Move 30.00 and close")
        tab.by("close-confirm").click()
        expect(tab.card(only).get_by_test_id("account-closed-badge")).to_be_visible()
        expect(tab.balance(only)).to_have_text("0.00")
        expect(tab.balance(second)).to_have_text("30.00")
        expect(tab.by("closed-note")).to_be_visible()
        tab.assert_clean(answered=(409,))
    finally:
        tab.page.context.close()


def test_signing_out_in_one_tab_sends_the_other_tabs_to_sign_in(
    server: Server,
    browser: Browser,  # noqa: F811
) -> None:
    tab_1, name = customer_tab(browser, server, username("dora"))
    context = tab_1.page.context
    try:
        tab_2 = Tab(context, server.url)  # the same profile: the same session
        expect(tab_2.by("who-name")).to_have_text(name)

        tab_1.by("sign-out").click()

        expect(tab_1.page).to_have_url(f"{server.url}/signin")
        expect(tab_2.page).to_have_url(SIGN_IN_TO_ROOT)
        answer = context.request.get(f"{server.url}/api/me")
        assert answer.status == 401
        tab_1.assert_clean()
        tab_2.assert_clean()
    finally:
        context.close()


def fill_drafts(tab: Tab, account_id: str, payee: str) -> None:
    """Types into the page's forms, sending nothing."""
    tab.by("open-account-name").fill("Holiday")
    tab.select(account_id)
    tab.by("tab-transfer").click()
    tab.by("transfer-to").fill(payee)
    tab.by("transfer-amount").fill("12.34")


def expect_drafts(tab: Tab, account_id: str, payee: str) -> None:
    """What fill_drafts typed is there again, on the same account and tab."""
    expect(tab.by("open-account-name")).to_have_value("Holiday")
    expect(tab.by("account-panel")).to_have_attribute("data-account-id", account_id)
    expect(tab.by("tab-transfer")).to_have_attribute("aria-selected", "true")
    expect(tab.by("transfer-to")).to_have_value(payee)
    expect(tab.by("transfer-amount")).to_have_value("12.34")
    expect(tab.by("transfer-payee")).to_have_text("Payee · your account")
    expect(tab.by("toast")).to_contain_text("What you had typed is still here")


def test_a_revoked_session_goes_to_sign_in_and_comes_back_with_what_was_typed(
    server: Server,
    browser: Browser,  # noqa: F811
) -> None:
    tab_1, name = customer_tab(browser, server, username("flo"))
    context = tab_1.page.context
    try:
        account = tab_1.open_account("Main")
        payee = tab_1.open_account("Payee")
        tab_2 = Tab(context, server.url)
        fill_drafts(tab_1, account, payee)

        # The session ends from the other tab (as an operator's revocation would).
        status = tab_2.page.evaluate(
            """async () => (await fetch("/api/tokens/current", {
                method: "DELETE",
                headers: { "Content-Type": "application/json" },
                body: "{}",
            })).status"""
        )
        assert status == 204
        for tab in (tab_1, tab_2):
            expect(tab.page).to_have_url(SIGN_IN_TO_ROOT, timeout=EXPECT_TIMEOUT_MS * 2)

        sign_in_page(tab_1, name)
        tab_1.wait_until_live()
        expect_drafts(tab_1, account, payee)
        # The other tab shares the new session: back to the bank, live, by itself.
        tab_2.wait_until_live()
        expect(tab_2.by("who-name")).to_have_text(name)
        tab_1.screenshot("session-restored")
        for tab in (tab_1, tab_2):
            tab.assert_clean(answered=(401,))
    finally:
        context.close()


def test_an_expired_session_goes_to_sign_in_and_comes_back_with_what_was_typed(
    short_server: Server,
    browser: Browser,  # noqa: F811
) -> None:
    server = short_server
    name = username("gus")
    sign_in(server.url, name)
    context = new_context(browser)
    try:
        sign_in_browser(context, server, name)
        tab = Tab(context, server.url)
        account = tab.open_account("Main")
        payee = tab.open_account("Payee")
        fill_drafts(tab, account, payee)

        expect(tab.page).to_have_url(SIGN_IN_TO_ROOT, timeout=SESSION_NOTICED_MS)
        sign_in_page(tab, name)
        tab.wait_until_live()
        expect_drafts(tab, account, payee)
        tab.assert_clean(answered=(401,))
    finally:
        context.close()


def test_repeated_failed_sign_ins_wait_as_the_bank_says(
    short_server: Server,
    browser: Browser,  # noqa: F811
) -> None:
    server = short_server
    name = username("hal")
    sign_in(server.url, name)
    context = new_context(browser)
    try:
        tab = Tab(context, f"{server.url}/signin", live=False)
        wait = re.compile(r"^Too many attempts\. Try again in \d+ (second|seconds)\.$")
        for _ in range(10):
            sign_in_page(tab, name, "wrong password")
            expect(tab.by("signin-form")).to_have_attribute("aria-busy", "false")
            if wait.match(tab.by("signin-error").text_content() or ""):
                break
            expect(tab.by("signin-error")).to_be_visible()
        expect(tab.by("signin-error")).to_have_text(wait)
        expect(tab.by("signin-submit")).to_be_disabled()
        keep_screenshot(tab, "signin-throttled")
        tab.assert_clean(answered=(401, 429))
    finally:
        context.close()


def test_a_wrong_account_number_is_said_before_paying(
    server: Server,
    browser: Browser,  # noqa: F811
) -> None:
    tab, _ = customer_tab(browser, server, username("ivy"))
    try:
        account = tab.open_account("Spending")
        expect(tab.by("panel-number")).to_have_text(f"Account no. {account}")
        assert ACCOUNT_NUMBER.fullmatch(account)
        tab.by("tab-transfer").click()
        tab.by("transfer-to").fill(str(uuid.uuid4()))
        expect(tab.by("transfer-payee")).to_have_text("No account has this number.")
        tab.by("transfer-amount").fill("1")
        tab.by("transfer-submit").click()
        expect(tab.by("transfer-target-error")).to_have_text(
            "No account has this number. Check it and try again."
        )
        tab.by("transfer-to").fill(account)
        expect(tab.by("transfer-payee")).to_have_text(
            "That is this account: choose another."
        )
        tab.assert_clean(answered=(404,))
    finally:
        tab.page.context.close()


def test_staff_find_and_page_through_many_accounts(
    server: Server,
    browser: Browser,  # noqa: F811
) -> None:
    """Last in this module: it leaves more than a page of accounts in the bank."""
    bulk = sign_in(server.url, username("bulk"))
    for number in range(1, 106):
        server.open_account(f"Bulk {number:03}", as_=bulk)
    total = len(server.request("GET", "/api/accounts?limit=500"))
    context = staff_context(browser, server)
    try:
        tab = Tab(context, server.url)
        cards = tab.page.get_by_test_id("account-card")
        # A first page only (GET /api/state is bounded): no total, the compact list.
        expect(cards).to_have_count(100)
        expect(tab.by("account-count")).to_have_text("100+ accounts")
        expect(tab.by("total-balance")).to_be_hidden()
        expect(tab.by("account-list")).to_have_class(re.compile(r"--compact\b"))
        tab.by("accounts-more").click()
        expect(cards).to_have_count(total)
        expect(tab.by("accounts-more-box")).to_be_hidden()

        tab.by("account-search").fill("bulk 10")
        expect(cards).to_have_count(6)  # Bulk 100 to 105
        expect(tab.by("account-count")).to_have_text("6 accounts found")
        tab.by("account-sort").select_option("name")
        names = tab.page.get_by_test_id("account-name")
        expect(names.first).to_have_text("Bulk 100")
        expect(names.last).to_have_text("Bulk 105")
        tab.by("account-search").fill("no such account")
        expect(tab.by("accounts-no-match")).to_be_visible()
        tab.assert_clean()
    finally:
        context.close()

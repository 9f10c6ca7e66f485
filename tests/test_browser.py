"""Real-browser tests: the page in Chromium against the real server in a subprocess.

Each test drives two pages (two tabs) of one browser profile, signed in as the
bank's staff (the first user to sign up on a server listening on a loopback
address), and checks that what one does shows in the other without a reload.
tests/test_browser_customers.py has customers side by side and the sign-in page.
A missing browser skips these tests, unless BANKACCOUNTS_REQUIRE_BROWSER is set
(as CI does), which makes it a failure. Screenshots go to test-artifacts/;
BANKACCOUNTS_UPDATE_SCREENSHOT=1 also refreshes docs/screenshot.png, the one the
README shows.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.signin import PASSWORD, STAFF, Session, sign_in

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixture skips, or fails in CI
    sync_playwright = None

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "screenshot.png"
CHROMIUM = Path(
    os.environ.get("BANKACCOUNTS_CHROMIUM")
    or os.environ.get("PLAYWRIGHT_CHROMIUM_EXECUTABLE")
    or "/usr/bin/chromium"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A DNS-rebinding name: it resolves to the server, but is not one it serves.
    "--host-resolver-rules=MAP rebind.evil.example 127.0.0.1",
]
TRUE_VALUES = {"1", "y", "yes", "t", "true", "on"}
#: The browser's time zone in every test: times show as "... 3:04:05 PM UTC".
TIMEZONE = "UTC"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
EXPECT_TIMEOUT_MS = 10_000
RECONNECT_TIMEOUT_MS = 20_000  # the page backs off up to 5 s between attempts
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
XSS_NAME = "<img src=x onerror=alert(1)>"
MINUS = "\u2212"
REFUSED = re.compile(
    r"ERR_CONNECTION_REFUSED|Failed to load resource|WebSocket connection"
)
#: Records the Content-Security-Policy's refusals in the page, for assert_clean.
CSP_RECORDER = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  const what = `${event.effectiveDirective} refused ${event.blockedURI}`;
  window.cspViolations.push(`${what} (${where})`);
});
"""


def env_flag(name: str) -> bool:
    """True if the environment variable is set to a true value."""
    return os.environ.get(name, "").strip().lower() in TRUE_VALUES


def skip_or_fail(reason: str) -> None:
    """Skips, or fails when CI requires the browser."""
    if env_flag("BANKACCOUNTS_REQUIRE_BROWSER"):
        pytest.fail(f"{reason} (BANKACCOUNTS_REQUIRE_BROWSER is set)")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`python bankaccounts/main.py` in a subprocess: started, stopped, restarted."""

    def __init__(
        self, data_dir: Path, logs_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.logs_dir = logs_dir
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self._staff: Session | None = None

    def start(self) -> None:
        """Starts the server and waits until GET /readyz answers."""
        self.runs += 1
        self.stdout_path = self.logs_dir / f"server-{self.runs}.out"
        self.stderr_path = self.logs_dir / f"server-{self.runs}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "bankaccounts/main.py",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                cwd=ROOT,
                stdout=out,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited on start:\n{self.stderr()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.process.kill()
                    pytest.fail(f"the server did not answer in time:\n{self.stderr()}")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stops the server with SIGTERM; it must exit 0 without a traceback."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            returncode = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the server did not stop on SIGTERM:\n{self.stderr()}")
        self.process = None
        stderr = self.stderr()
        assert "Traceback" not in stderr, stderr
        assert returncode == 0, f"exit status {returncode}:\n{stderr}"

    def stderr(self) -> str:
        """What the server wrote to stderr in its current (or last) run."""
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        """What the server wrote to stdout in its current (or last) run."""
        return self.stdout_path.read_text(errors="replace")

    @property
    def staff(self) -> Session:
        """The bank's founder, signed in over REST (signed up first: staff)."""
        if self._staff is None:
            self._staff = sign_in(self.url, STAFF)
            assert self._staff.user["role"] == "staff", self._staff.user
        return self._staff

    def forget_users(self) -> None:
        """Forgets the sessions (the server starts on a new data directory)."""
        self._staff = None

    def request(
        self, method: str, path: str, body: object = None, as_: Session | None = None
    ) -> Any:
        """Calls the REST API as staff (or as another user); returns the JSON answer."""
        status, answer = (as_ or self.staff).request(method, path, body)
        assert status < 400, (method, path, status, answer)
        return answer

    def open_account(
        self, name: str, deposit: str | None = None, as_: Session | None = None
    ) -> dict[str, Any]:
        """Opens an account (as staff, or as_), with a finished first deposit."""
        account: dict[str, Any] = self.request(
            "POST", "/api/accounts", {"name": name}, as_=as_
        )
        if deposit:
            self.deposit(account["id"], deposit, as_=as_)
        return account

    def deposit(self, account_id: str, amount: str, as_: Session | None = None) -> None:
        """Deposits and waits until the transaction has finished."""
        path = f"/api/accounts/{account_id}/deposits?wait=true"
        answer = self.request("POST", path, {"amount": amount}, as_=as_)
        assert answer["status"] == "succeeded", answer


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    if sync_playwright is None:
        skip_or_fail("Python playwright is not installed")
    if not CHROMIUM.exists():
        skip_or_fail(f"Chromium is not installed at {CHROMIUM}")
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
        except PlaywrightError as error:
            skip_or_fail(f"Chromium does not start: {error}")
        yield browser
        browser.close()


def start_server(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    env: dict[str, str] | None = None,
) -> Server:
    """A started server with its own data directory (and these variables)."""
    base = tmp_path_factory.mktemp(name)
    server = Server(base / "data", base, env)
    server.start()
    return server


@pytest.fixture(scope="module")
def server(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server shared by the tests that don't restart it (none without a browser)."""
    server = start_server(tmp_path_factory, "server")
    yield server
    server.stop()


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    """A fresh desktop-sized browser profile, nobody signed in."""
    return browser.new_context(
        **{"viewport": DESKTOP, "locale": "en-US", "timezone_id": TIMEZONE, **options}
    )


def sign_in_browser(
    context: BrowserContext,
    server: Server,
    username: str = STAFF,
    password: str = PASSWORD,
) -> None:
    """Signs the profile in (the server sets the session cookie every tab shares)."""
    if username == STAFF:
        assert server.staff  # signed up first: the founder, staff
    response = context.request.post(
        f"{server.url}/api/tokens", data={"username": username, "password": password}
    )
    assert response.status == 201, response.text()


def staff_context(browser: Browser, server: Server, **options: Any) -> BrowserContext:
    """A fresh browser profile signed in as the bank's staff."""
    context = new_context(browser, **options)
    sign_in_browser(context, server)
    return context


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    """A fresh browser profile signed in as staff; its pages are tabs of one person."""
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    context = staff_context(browser, server)
    yield context
    context.close()


def new_phone_context(browser: Browser, server: Server) -> BrowserContext:
    """A phone-sized profile signed in as staff: 375 px wide, touch, high density."""
    return staff_context(
        browser,
        server,
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )


@pytest.fixture
def phone_context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    """A fresh phone-sized browser profile, signed in as staff."""
    context = new_phone_context(browser, server)
    yield context
    context.close()


class Tab:
    """One page of the app, with what went wrong in it (errors, dialogs)."""

    def __init__(self, context: BrowserContext, url: str, *, live: bool = True) -> None:
        self.page: Page = context.new_page()
        self.page.add_init_script(CSP_RECORDER)
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: (
                self.errors.append(message.text) if message.type == "error" else None
            ),
        )
        self.page.on("dialog", self._on_dialog)
        self.page.goto(url)
        if live:
            self.wait_until_live()

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def by(self, test_id: str) -> Any:
        """The element with this data-testid."""
        return self.page.get_by_test_id(test_id)

    def wait_until_live(self, timeout: float = EXPECT_TIMEOUT_MS) -> None:
        """Waits until the connection status says Live."""
        expect(self.by("connection-status")).to_have_text("Live", timeout=timeout)

    def card(self, account_id: str) -> Any:
        """The card of one account."""
        return self.page.locator(
            f'[data-testid="account-card"][data-account-id="{account_id}"]'
        )

    def balance(self, account_id: str) -> Any:
        """The balance shown on an account's card."""
        return self.card(account_id).get_by_test_id("balance")

    def select(self, account_id: str) -> None:
        """Chooses the account for the actions."""
        self.card(account_id).click()
        expect(self.by("account-panel")).to_have_attribute(
            "data-account-id", account_id
        )

    def open_account(self, name: str) -> str:
        """Opens an account through the form; returns its id."""
        self.by("open-account-name").fill(name)
        self.by("open-account-name").press("Enter")
        card = self.page.get_by_test_id("account-card").filter(
            has=self.page.get_by_test_id("account-name").get_by_text(name, exact=True)
        )
        expect(card).to_have_count(1)
        account_id: str = card.get_attribute("data-account-id")
        return account_id

    def move_money(self, action: str, amount: str, target: str | None = None) -> None:
        """Uses the deposit, withdraw or transfer form of the selected account."""
        self.by(f"tab-{action}").click()
        if target is not None:
            self.by("transfer-to").fill(target)
        self.by(f"{action}-amount").fill(amount)
        self.by(f"{action}-submit").click()

    def transaction(self, text: str) -> Any:
        """The activity row whose title is exactly this."""
        return self.page.get_by_test_id("transaction").filter(
            has=self.page.get_by_test_id("transaction-title").get_by_text(
                text, exact=True
            )
        )

    def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        """Saves a screenshot to test-artifacts/."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path

    def csp_violations(self) -> list[str]:
        """What the Content-Security-Policy refused in the page so far."""
        violations: list[str] = self.page.evaluate("window.cspViolations")
        return violations

    def assert_clean(
        self, *, while_server_was_down: bool = False, answered: tuple[int, ...] = ()
    ) -> None:
        """No script errors, no dialogs (an alert would mean injected script ran),
        and nothing the Content-Security-Policy refused.

        While the server is down, Chromium itself logs each refused connection; it
        also logs each answer with an error status, which `answered` expects.
        """
        errors = self.errors
        if while_server_was_down:
            errors = [e for e in errors if not REFUSED.search(e)]
        for status in answered:
            expected = re.compile(rf"Failed to load resource: .*status of {status}\b")
            errors = [e for e in errors if not expected.search(e)]
        assert errors == []
        assert self.dialogs == []
        assert self.csp_violations() == []


def unique(name: str) -> str:
    """A name no other test uses on the shared server."""
    return f"{name} {uuid.uuid4().hex[:6]}"


def test_account_opened_in_one_page_appears_in_the_other(
    server: Server, context: BrowserContext
) -> None:
    tab_a, tab_b = Tab(context, server.url), Tab(context, server.url)
    name = unique("Alice")

    account_id = tab_a.open_account(name)

    expect(tab_b.card(account_id).get_by_test_id("account-name")).to_have_text(name)
    expect(tab_b.balance(account_id)).to_have_text("0.00")
    expect(tab_a.by("account-panel")).to_have_attribute("data-account-id", account_id)
    assert server.request("GET", f"/api/accounts/{account_id}")["name"] == name
    tab_a.assert_clean()
    tab_b.assert_clean()


def test_deposit_in_one_page_changes_the_balance_in_the_other_without_reload(
    server: Server, context: BrowserContext
) -> None:
    tab_a, tab_b = Tab(context, server.url), Tab(context, server.url)
    name = unique("Bob")
    account_id = tab_a.open_account(name)
    tab_a.page.evaluate("window.notReloaded = true")

    tab_b.select(account_id)
    tab_b.move_money("deposit", "1234567.5")

    expect(tab_b.by("deposit-status")).to_have_text(
        "Deposit of 1,234,567.50 succeeded."
    )
    expect(tab_a.balance(account_id)).to_have_text("1,234,567.50")
    expect(tab_b.balance(account_id)).to_have_text("1,234,567.50")
    expect(tab_a.transaction(f"Deposit to {name}")).to_have_attribute(
        "data-status", "succeeded"
    )
    assert tab_a.page.evaluate("window.notReloaded") is True
    assert server.request("GET", f"/api/accounts/{account_id}")["balance"] == (
        "1234567.50"
    )
    tab_a.assert_clean()
    tab_b.assert_clean()


def test_transfer_between_two_accounts(server: Server, context: BrowserContext) -> None:
    payer_name, payee_name = unique("Carol"), unique("Dave")
    payer = server.open_account(payer_name, deposit="500.00")
    payee = server.open_account(payee_name, deposit="20.00")
    tab_a, tab_b = Tab(context, server.url), Tab(context, server.url)

    tab_a.select(payer["id"])
    tab_a.by("tab-transfer").click()
    tab_a.by("transfer-to").fill(f"  {payee['id'].upper()} ")  # as pasted
    # The payee's name shows once the number is recognised.
    expect(tab_a.by("transfer-payee")).to_have_text(f"{payee_name} · your account")
    tab_a.move_money("transfer", "120.25")

    expect(tab_a.by("transfer-status")).to_have_text("Transfer of 120.25 succeeded.")
    for tab in (tab_a, tab_b):
        expect(tab.balance(payer["id"])).to_have_text("379.75")
        expect(tab.balance(payee["id"])).to_have_text("140.25")
        row = tab.transaction(f"Transfer from {payer_name} to {payee_name}")
        expect(row).to_have_attribute("data-status", "succeeded")
        expect(row.get_by_test_id("transaction-amount")).to_have_text("120.25")
    # Seen from the payer's account, the money goes out.
    tab_a.by("scope-account").click()
    expect(
        tab_a.transaction(f"Transfer from {payer_name} to {payee_name}").get_by_test_id(
            "transaction-amount"
        )
    ).to_have_text(f"{MINUS}120.25")
    tab_a.screenshot("desktop-transfer")
    tab_a.assert_clean()
    tab_b.assert_clean()


def test_withdrawal_beyond_the_balance_fails_with_the_reason_in_words(
    server: Server, context: BrowserContext
) -> None:
    name = unique("Erin")
    account = server.open_account(name, deposit="10.00")
    tab_a, tab_b = Tab(context, server.url), Tab(context, server.url)
    reason = f"Insufficient funds in {name}'s account"

    tab_a.select(account["id"])
    tab_a.move_money("withdraw", "25")

    expect(tab_a.by("withdraw-status")).to_have_text(
        f"Withdrawal of 25.00 failed: {reason}."
    )
    for tab in (tab_a, tab_b):
        row = tab.transaction(f"Withdrawal from {name}")
        expect(row).to_have_attribute("data-status", "failed")
        expect(row.get_by_test_id("transaction-status")).to_have_text("Failed")
        expect(row.get_by_test_id("transaction-error")).to_have_text(reason)
        expect(tab.balance(account["id"])).to_have_text("10.00")
    expect(tab_a.by("announcer")).to_contain_text(reason)
    tab_a.screenshot("desktop-withdrawal-failed")
    tab_a.assert_clean()
    tab_b.assert_clean()


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        # The bank's words (tests/test_validation.py has them all).
        ("", "Amount is missing: write digits, such as 12.34."),
        ("12.345", "Amount must have at most 2 decimal places."),
        ("-5", "Amount must be greater than zero."),
        ("0", "Amount must be greater than zero."),
        (" 5", "Amount must not contain spaces."),
        (
            "1e3",
            "Amount must be a plain decimal number such as 12.34: "
            "digits, optionally a point and 1 or 2 digits.",
        ),
        ("1000000000000.01", "Amount must be at most 1,000,000,000,000.00."),
    ],
)
def test_bad_amounts_are_refused_in_the_page(
    server: Server, context: BrowserContext, amount: str, message: str
) -> None:
    account = server.open_account(unique("Frank"))
    tab = Tab(context, server.url)
    tab.select(account["id"])
    sent: list[str] = []
    tab.page.on("request", lambda request: sent.append(request.url))
    tab.page.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda frame: sent.append(str(frame))),
    )

    tab.move_money("deposit", amount)

    expect(tab.by("deposit-error")).to_have_text(message)
    expect(tab.by("deposit-amount")).to_have_attribute("aria-invalid", "true")
    expect(tab.by("deposit-amount")).to_be_focused()
    assert not [url for url in sent if "/deposits" in url or "deposit" in url]
    tab.assert_clean()


PARSED = {
    # The bank's one form of money: digits, optionally a point and 1 or 2 digits.
    "12.5": "12.50",
    "7": "7.00",
    " 7 ": None,
    ".5": None,
    "0.01": "0.01",
    "1,234.56": None,
    "12,50": None,
    "1000000000000": "1000000000000.00",
    "0001.10": "1.10",
    "1.": None,
    "12.345": None,
    "1,5000": None,
    "1e3": None,
    "Infinity": None,
    "0x10": None,
    ".": None,
    "1000000000000.01": None,
    "99999999999999": None,
}
FORMATTED = {
    "0.00": "0.00",
    "-0.00": "0.00",
    "12.3": "12.30",
    "-1234567.89": f"{MINUS}1,234,567.89",
    # Beyond what a float holds exactly: formatted from the digits.
    "98765432109876543.21": "98,765,432,109,876,543.21",
}


def test_money_in_the_page(server: Server, context: BrowserContext) -> None:
    tab = Tab(context, server.url)
    results = tab.page.evaluate(
        """async ([parsed, formatted]) => {
            const money = await import("/static/money.js");
            return {
                parsed: parsed.map((text) => {
                    const result = money.parseAmount(text);
                    return result.ok ? result.value : null;
                }),
                formatted: formatted.map((text) => money.formatMoney(text)),
                signed: money.formatMoney("5", { signed: true }),
                limitZero: money.parseAmount("0", { allowZero: true }).value,
            };
        }""",
        [list(PARSED), list(FORMATTED)],
    )
    assert dict(zip(PARSED, results["parsed"], strict=True)) == PARSED
    assert dict(zip(FORMATTED, results["formatted"], strict=True)) == FORMATTED
    assert results["signed"] == "+5.00"
    assert results["limitZero"] == "0.00"
    tab.assert_clean()


def test_the_largest_amount_is_accepted(
    server: Server, context: BrowserContext
) -> None:
    account = server.open_account(unique("Grace"))
    tab = Tab(context, server.url)
    tab.select(account["id"])

    tab.move_money("deposit", "1000000000000")

    expect(tab.balance(account["id"])).to_have_text("1,000,000,000,000.00")
    tab.assert_clean()


def test_a_name_with_html_shows_as_text(
    server: Server, context: BrowserContext
) -> None:
    tab_a, tab_b = Tab(context, server.url), Tab(context, server.url)

    account_id = tab_a.open_account(XSS_NAME)
    tab_a.move_money("deposit", "5")

    for tab in (tab_a, tab_b):
        expect(tab.card(account_id).get_by_test_id("account-name")).to_have_text(
            XSS_NAME
        )
        expect(tab.transaction(f"Deposit to {XSS_NAME}")).to_have_attribute(
            "data-status", "succeeded"
        )
        assert tab.page.locator('img[src="x"]').count() == 0
    tab_b.select(account_id)
    expect(tab_b.by("panel-name")).to_have_text(XSS_NAME)
    tab_a.assert_clean()
    tab_b.assert_clean()


def test_overdraft_limit_negative_balance_and_closing(
    server: Server, context: BrowserContext
) -> None:
    name = unique("Heidi")
    account = server.open_account(name)
    tab_a, tab_b = Tab(context, server.url), Tab(context, server.url)
    tab_a.select(account["id"])

    tab_a.by("tab-overdraft").click()
    tab_a.by("overdraft-limit").fill("500")
    tab_a.by("overdraft-submit").click()
    expect(tab_a.by("overdraft-status")).to_have_text("Overdraft limit set to 500.00.")
    expect(tab_b.card(account["id"]).get_by_test_id("account-limit")).to_have_text(
        "Overdraft up to 500.00"
    )

    tab_a.move_money("withdraw", "30.5")
    for tab in (tab_a, tab_b):
        balance = tab.balance(account["id"])
        expect(balance).to_have_text(f"{MINUS}30.50")
        expect(balance).to_have_class(re.compile(r"\bis-negative\b"))
        color = balance.evaluate("element => getComputedStyle(element).color")
        assert color == "rgb(194, 38, 29)"
    expect(tab_a.by("panel-available")).to_have_text("469.50")

    # A limit below the debt is asked about first; "Cancel" sends nothing.
    tab_a.by("tab-overdraft").click()
    tab_a.by("overdraft-limit").fill("10")
    tab_a.by("overdraft-submit").click()
    expect(tab_a.by("overdraft-confirm-text")).to_contain_text(
        "overdrawn by 30.50, more than a limit of 10.00"
    )
    tab_a.by("overdraft-cancel").click()
    expect(tab_a.by("overdraft-confirm-box")).to_be_hidden()
    expect(tab_a.by("panel-limit")).to_have_text("500.00")
    tab_a.by("overdraft-submit").click()
    tab_a.by("overdraft-confirm").click()
    expect(tab_a.by("overdraft-status")).to_have_text("Overdraft limit set to 10.00.")
    expect(tab_b.card(account["id"]).get_by_test_id("account-limit")).to_have_text(
        "Overdraft up to 10.00"
    )

    # Closing with a debt: it is covered from another of the owner's accounts first.
    funder = server.open_account(unique("Funder"), deposit="100.00")
    expect(tab_a.card(funder["id"])).to_be_visible()
    tab_a.by("close-account").click()
    expect(tab_a.by("close-confirm-text")).to_contain_text(
        f"Close {name}? It is overdrawn by 30.50"
    )
    tab_a.by("close-move-to").select_option(funder["id"])
    expect(tab_a.by("close-confirm")).to_have_text("Cover 30.50 and close")
    tab_a.by("close-confirm").click()
    for tab in (tab_a, tab_b):
        expect(
            tab.card(account["id"]).get_by_test_id("account-closed-badge")
        ).to_be_visible()
        expect(tab.balance(account["id"])).to_have_text("0.00")
        expect(tab.balance(funder["id"])).to_have_text("69.50")
    expect(tab_a.by("closed-note")).to_be_visible()
    expect(tab_a.by("actions")).to_be_hidden()
    assert server.request("GET", f"/api/accounts/{account['id']}")["is_closed"]
    tab_a.assert_clean()
    tab_b.assert_clean()


def test_keyboard_only(server: Server, context: BrowserContext) -> None:
    account = server.open_account(unique("Ivan"), deposit="1.00")
    tab = Tab(context, server.url)
    card = tab.card(account["id"])

    card.focus()
    tab.page.keyboard.press("Enter")
    expect(card).to_have_attribute("aria-pressed", "true")
    tab.by("tab-deposit").focus()
    tab.page.keyboard.press("ArrowRight")
    expect(tab.by("tab-withdraw")).to_be_focused()
    expect(tab.by("tab-withdraw")).to_have_attribute("aria-selected", "true")
    tab.page.keyboard.press("Tab")
    expect(tab.by("withdraw-amount")).to_be_focused()
    tab.page.keyboard.type("0.75")
    tab.page.keyboard.press("Enter")
    expect(tab.balance(account["id"])).to_have_text("0.25")
    tab.assert_clean()


def test_phone_width(server: Server, phone_context: BrowserContext) -> None:
    account = server.open_account(unique("Judy"), deposit="98765.43")
    tab = Tab(phone_context, server.url)

    tab.card(account["id"]).click()
    expect(tab.by("panel-balance")).to_have_text("98,765.43")
    expect(tab.by("account-panel")).to_be_in_viewport()
    tab.screenshot("phone-account")
    width = tab.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    tab.assert_clean()


def test_both_pages_reconnect_after_a_server_restart(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser
) -> None:
    server = start_server(tmp_path_factory, "restart")
    assert server.url in server.stdout()
    context = staff_context(browser, server)
    try:
        account = server.open_account("Kim", deposit="70.00")
        tab_a, tab_b = Tab(context, server.url), Tab(context, server.url)
        for tab in (tab_a, tab_b):
            expect(tab.balance(account["id"])).to_have_text("70.00")

        server.stop()
        for tab in (tab_a, tab_b):
            expect(tab.by("connection-status")).to_have_text("Reconnecting…")
            expect(tab.by("connection")).to_have_attribute("data-state", "reconnecting")
        tab_a.screenshot("desktop-reconnecting")

        server.start()
        for tab in (tab_a, tab_b):
            tab.wait_until_live(timeout=RECONNECT_TIMEOUT_MS)
            expect(tab.balance(account["id"])).to_have_text("70.00")

        # The feed resumed: a change after the restart shows in both pages.
        tab_a.select(account["id"])
        tab_a.move_money("deposit", "5.55")
        for tab in (tab_a, tab_b):
            expect(tab.balance(account["id"])).to_have_text("75.55")
        for tab in (tab_a, tab_b):
            tab.assert_clean(while_server_was_down=True)
    finally:
        context.close()
        if server.process is not None:
            server.stop()


def test_a_page_starts_again_when_the_server_has_lost_its_data(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser
) -> None:
    server = start_server(tmp_path_factory, "newdata")
    context = staff_context(browser, server)
    try:
        account = server.open_account("Leo", deposit="3.00")
        tab = Tab(context, server.url)
        expect(tab.balance(account["id"])).to_have_text("3.00")

        server.stop()
        expect(tab.by("connection-status")).to_have_text("Reconnecting…")
        server.data_dir = server.data_dir.with_name("data-new")
        server.forget_users()
        server.start()

        # The new bank knows neither the session nor its user: to sign-in, where
        # the first to sign up founds the new bank.
        expect(tab.page).to_have_url(
            f"{server.url}/signin?next=%2F", timeout=RECONNECT_TIMEOUT_MS
        )
        tab.by("mode-signup").click()
        tab.by("signin-username").fill(STAFF)
        tab.by("signin-password").fill(PASSWORD)
        tab.by("signin-submit").click()
        tab.wait_until_live()
        expect(tab.by("who-role")).to_have_text("Staff")
        expect(tab.card(account["id"])).to_have_count(0)
        expect(tab.by("accounts-empty")).to_be_visible()
        newcomer = server.open_account("Mia")
        expect(tab.card(newcomer["id"])).to_be_visible()
        tab.assert_clean(while_server_was_down=True)
    finally:
        context.close()
        if server.process is not None:
            server.stop()


def test_screenshots(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser
) -> None:
    """The main screens with a small bank's worth of data, for people to look at."""
    server = start_server(tmp_path_factory, "screenshots")
    context = staff_context(browser, server)
    phone_context = new_phone_context(browser, server)
    try:
        empty = Tab(context, server.url)
        expect(empty.by("accounts-empty")).to_be_visible()
        empty.screenshot("desktop-empty")

        alice = server.open_account("Alice Johnson", deposit="12480.00")
        bob = server.open_account("Bob Martinez", deposit="3250.75")
        carol = server.open_account("Carol Nguyen", deposit="890.10")
        server.request(
            "PUT",
            f"/api/accounts/{carol['id']}/overdraft-limit",
            {"overdraft_limit": "1000.00"},
        )
        server.request(
            "POST",
            f"/api/accounts/{carol['id']}/withdrawals?wait=true",
            {"amount": "1125.60"},
        )
        server.request(
            "POST",
            "/api/transfers?wait=true",
            {
                "debit_account_id": alice["id"],
                "credit_account_id": bob["id"],
                "amount": "1500.00",
            },
        )
        desktop = Tab(context, server.url)
        desktop.select(alice["id"])
        desktop.move_money("withdraw", "25000")
        expect(desktop.by("withdraw-status")).to_contain_text("Insufficient funds")
        desktop.by("tab-transfer").click()
        desktop.by("transfer-to").fill(bob["id"])
        expect(desktop.by("transfer-payee")).to_contain_text("Bob Martinez")
        desktop.by("transfer-amount").fill("250.00")
        desktop.page.mouse.move(0, 0)
        path = desktop.screenshot("desktop")
        desktop.screenshot("desktop-full", full_page=True)
        if env_flag("BANKACCOUNTS_UPDATE_SCREENSHOT"):
            DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOT)

        phone = Tab(phone_context, server.url)
        phone.screenshot("phone")
        phone.card(carol["id"]).click()
        expect(phone.by("panel-balance")).to_have_text(f"{MINUS}235.50")
        # Choosing an account on a phone scrolls its actions into view.
        phone.page.wait_for_function(
            "() => Math.abs(document.getElementById('account-panel')"
            ".getBoundingClientRect().top - 72) < 2"
        )
        phone.screenshot("phone-selected")
        phone.by("activity").scroll_into_view_if_needed()
        phone.screenshot("phone-activity")
        for tab in (empty, desktop, phone):
            tab.assert_clean()
    finally:
        context.close()
        phone_context.close()
        server.stop()


def test_the_page_works_under_its_content_security_policy(
    server: Server, context: BrowserContext
) -> None:
    """The header's policy, the feed (connect-src 'self' covers ws:), every write."""
    with urllib.request.urlopen(server.url, timeout=5) as response:
        policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    tab = Tab(context, server.url)
    name = unique("Sam")

    account_id = tab.open_account(name)
    tab.move_money("deposit", "12.50")
    expect(tab.balance(account_id)).to_have_text("12.50")
    tab.by("tab-overdraft").click()
    tab.by("overdraft-limit").fill("5")
    tab.by("overdraft-submit").click()
    expect(tab.by("panel-limit")).to_have_text("5.00")
    tab.by("close-account").click()
    tab.by("close-confirm").click()  # a bodyless write, sent as JSON
    expect(tab.card(account_id).get_by_test_id("account-closed-badge")).to_be_visible()
    tab.assert_clean()


def test_the_policy_refuses_inline_script_and_the_tests_see_it(
    server: Server, context: BrowserContext
) -> None:
    """The check that every test's assert_clean makes can fail."""
    tab = Tab(context, server.url)
    ran = tab.page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.append(script);
            return window.injected === true;
        }"""
    )
    assert ran is False
    expect(tab.page.locator("body")).to_be_visible()
    assert any(v.startswith("script-src") for v in tab.csp_violations())
    with pytest.raises(AssertionError):
        tab.assert_clean()


def test_the_api_docs_work_without_internet(
    server: Server, context: BrowserContext
) -> None:
    """Swagger UI and ReDoc from the server alone, under the policy."""
    elsewhere: list[str] = []

    def local_only(route: Any) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    operations = sum(
        1
        for item in server.request("GET", "/openapi.json")["paths"].values()
        for _ in item
    )

    docs = Tab(context, f"{server.url}/docs", live=False)
    expect(docs.page.locator(".opblock")).to_have_count(operations)
    docs.page.locator(".opblock-summary", has_text="/api/transfers").click()
    expect(docs.page.locator(".response-col_status", has_text="415")).to_be_visible()
    redoc = Tab(context, f"{server.url}/redoc", live=False)
    expect(redoc.page.get_by_role("heading", name="Open Account")).to_be_visible()
    expect(
        redoc.page.get_by_text("Content-Type is not application/json").first
    ).to_be_attached()
    docs.screenshot("api-docs")
    redoc.screenshot("api-redoc")
    docs.assert_clean()
    redoc.assert_clean()
    assert elsewhere == []


def test_another_site_cannot_frame_the_page(
    server: Server, context: BrowserContext
) -> None:
    page = context.new_page()
    with page.expect_console_message(lambda message: "frame-ancestors" in message.text):
        page.set_content(f'<iframe src="{server.url}/"></iframe>')
    frame = page.frames[-1]
    assert frame.locator('[data-testid="app"]').count() == 0


def test_a_rebinding_host_name_reaches_nothing(
    server: Server, context: BrowserContext
) -> None:
    """A page of rebind.evil.example, which resolves to the server, as in the issue."""
    rebound = f"http://rebind.evil.example:{server.port}"
    before = server.request("GET", "/api/accounts")
    page = context.new_page()
    response = page.goto(f"{rebound}/")
    assert response is not None
    assert response.status == 400
    answers = page.evaluate(
        """async () => {
            const read = await fetch("/api/accounts");
            const write = await fetch("/api/accounts", {
                method: "POST",
                headers: { "Content-Type": "application/json" },
                body: "{}",
            });
            const closed = await new Promise((resolve) => {
                const ws = new WebSocket(`ws://${location.host}/ws`);
                ws.onopen = () => resolve("open");
                ws.onclose = (event) => resolve(event.code);
            });
            return [read.status, write.status, closed];
        }"""
    )
    assert answers == [400, 400, 1006]  # 1006: the handshake was refused
    assert server.request("GET", "/api/accounts") == before


@pytest.mark.postgres
def test_two_distributed_web_processes_show_the_same_live_feed(
    browser: Browser, postgres_env: dict[str, str], tmp_path: Path
) -> None:
    """Two `serve --distributed` processes on different ports, a tab on each."""
    from tests.cluster import WORKERS, Cluster

    cluster = Cluster(postgres_env, tmp_path)
    cluster.init_db()
    context = new_context(browser)
    try:
        for name in WORKERS:
            cluster.add_worker(name)
        web1, web2 = cluster.add_web("web1"), cluster.add_web("web2")
        assert web1 != web2
        assert cluster.signed_in(web1).user["role"] == "staff"
        # One sign-in at web1: the cookie (host 127.0.0.1, any port) serves web2 too.
        answer = context.request.post(
            f"{web1}/api/tokens", data={"username": STAFF, "password": PASSWORD}
        )
        assert answer.status == 201, answer.text()
        tab_1, tab_2 = Tab(context, web1), Tab(context, web2)

        alice = tab_1.open_account("Alice")
        expect(tab_2.card(alice).get_by_test_id("account-name")).to_have_text("Alice")
        bob = tab_2.open_account("Bob")
        expect(tab_1.card(bob).get_by_test_id("account-name")).to_have_text("Bob")

        tab_2.select(alice)
        tab_2.move_money("deposit", "250")
        expect(tab_1.balance(alice)).to_have_text("250.00")
        tab_1.select(alice)
        tab_1.move_money("transfer", "100", target=bob)
        expect(tab_1.by("transfer-status")).to_have_text(
            "Transfer of 100.00 succeeded."
        )
        for tab in (tab_1, tab_2):
            expect(tab.balance(alice)).to_have_text("150.00")
            expect(tab.balance(bob)).to_have_text("100.00")
            expect(tab.transaction("Transfer from Alice to Bob")).to_have_attribute(
                "data-status", "succeeded"
            )
        tab_2.select(bob)
        tab_2.move_money("withdraw", "1000")
        expect(tab_1.transaction("Withdrawal from Bob")).to_have_attribute(
            "data-status", "failed"
        )
        tab_1.screenshot("distributed-web1")
        tab_2.screenshot("distributed-web2")
        tab_1.assert_clean()
        tab_2.assert_clean()
    finally:
        context.close()
        cluster.stop_all()


def test_the_page_checks_amounts_by_the_banks_rule_in_its_words(
    server: Server, context: BrowserContext
) -> None:
    """static/money.js and bankaccounts/validation.py: same rule, same words."""
    from bankaccounts.exceptions import InvalidAmountError
    from bankaccounts.validation import to_amount, to_limit
    from tests.test_validation import AMOUNT_WORDS, AMOUNTS_READ, LIMIT_WORDS

    def bank_says(text: str, *, limit: bool) -> str:
        try:
            return str((to_limit if limit else to_amount)(text))
        except InvalidAmountError as error:
            return f"{error}."

    texts = [*AMOUNT_WORDS, *LIMIT_WORDS, *AMOUNTS_READ, "1.", "00", "0.0", "\u22125"]
    tab = Tab(context, server.url)
    page_says = tab.page.evaluate(
        """async (texts) => {
            const money = await import("/static/money.js");
            const say = (result) => (result.ok ? result.value : result.error);
            return texts.map((text) => [
                say(money.parseAmount(text)),
                say(money.parseAmount(text, { allowZero: true })),
            ]);
        }""",
        texts,
    )
    for text, (amount, limit) in zip(texts, page_says, strict=True):
        assert amount == bank_says(text, limit=False), text[:20]
        assert limit == bank_says(text, limit=True), text[:20]
    tab.assert_clean()


def test_keyboard_focus_shows_on_an_unselected_card(
    server: Server, context: BrowserContext
) -> None:
    first = server.open_account(unique("Olga"))
    second = server.open_account(unique("Pete"))
    tab = Tab(context, server.url)
    tab.select(first["id"])
    card = tab.card(second["id"])
    expect(card).to_have_attribute("aria-pressed", "false")
    tab.card(first["id"]).focus()
    tab.page.keyboard.press("Tab")  # the keyboard: :focus-visible applies
    expect(card).to_be_focused()
    # The focus colour (--focus: 3px of rgb(11 87 164 / 35%)) shows round the card,
    # once the shadow's 0.15 s transition has run.
    ring = "rgba(11, 87, 164, 0.35) 0px 0px 0px 3px"
    tab.page.wait_for_function(
        "([element, ring]) => getComputedStyle(element).boxShadow.includes(ring)",
        arg=[card.element_handle(), ring],
        timeout=5000,
    )
    unfocused = tab.card(first["id"]).evaluate(
        "element => getComputedStyle(element).boxShadow"
    )
    assert "rgba(11, 87, 164, 0.35)" not in unfocused
    tab.screenshot("desktop-card-focus")
    tab.assert_clean()


def test_a_new_error_replaces_the_message_of_the_last_success(
    server: Server, context: BrowserContext
) -> None:
    account = server.open_account(unique("Quinn"))
    tab = Tab(context, server.url)
    tab.select(account["id"])
    tab.move_money("deposit", "5")
    expect(tab.by("deposit-status")).to_have_text("Deposit of 5.00 succeeded.")

    tab.move_money("deposit", "5.5.5")

    expect(tab.by("deposit-error")).to_be_visible()
    expect(tab.by("deposit-status")).to_be_hidden()
    tab.by("tab-overdraft").click()
    tab.by("overdraft-limit").fill("10")
    tab.by("overdraft-submit").click()
    expect(tab.by("overdraft-status")).to_have_text("Overdraft limit set to 10.00.")
    tab.by("overdraft-limit").fill("-1")
    tab.by("overdraft-submit").click()
    expect(tab.by("overdraft-error")).to_have_text(
        "Overdraft limit must not be negative."
    )
    expect(tab.by("overdraft-status")).to_be_hidden()
    tab.assert_clean()


def test_the_open_account_error_clears_as_you_type(
    server: Server, context: BrowserContext
) -> None:
    tab = Tab(context, server.url)
    tab.by("open-account-name").press("Enter")
    expect(tab.by("open-account-error")).to_have_text(
        "Enter the account holder's name."
    )
    expect(tab.by("open-account-name")).to_have_attribute("aria-invalid", "true")

    tab.by("open-account-name").press_sequentially("R")

    expect(tab.by("open-account-error")).to_be_hidden()
    expect(tab.by("open-account-name")).not_to_have_attribute("aria-invalid", "true")
    tab.assert_clean()

// The bank's page: the signed-in user's accounts (staff: every account, searched and
// paged) with live balances, actions on the chosen account, its statement, and
// recent activity. State comes from GET /api/state, then every change from the
// websocket feed, resumed from the last position seen after any lost connection.
// A session that ends (a 401, or the socket closed with 4401) sends the tab to the
// sign-in page, keeping what was typed for when it comes back.
//
// Text from people (account and user names) and from the server (error reasons)
// only ever goes into the page through textContent, never as HTML.

import { ApiError, accountNumber, api, fullTime, newId, nextLink, onSignedOut, request, sentence } from "./api.js";
import { formatCents, formatMoney, parseAmount, toCents } from "./money.js";
import {
  forgetDrafts,
  goToSignIn,
  isLeaving,
  onOtherTabs,
  saveDrafts,
  takeDrafts,
  tellOtherTabs,
} from "./session.js";
import { openStatement } from "./statement.js";

const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 5000;
const REQUEST_TIMEOUT_MS = 15000;
const MAX_TRANSACTIONS_SHOWN = 50;
const MAX_TRANSACTIONS_KEPT = 1000;
const ANNOUNCEMENTS_KEPT = 5;
const ACCOUNTS_PAGE = 100;
const SEARCH_DELAY_MS = 250;
const PAYEE_DELAY_MS = 150;
const TOAST_MS = 6000;
const SIGNED_OUT_CLOSE_CODE = 4401;
const TABS = ["deposit", "withdraw", "transfer", "overdraft"];

/** Who is signed in: the server put it on <body>. */
const me = {
  id: document.body.dataset.userId,
  username: document.body.dataset.username,
  role: document.body.dataset.role,
};
const isStaff = me.role === "staff";

// ---------------------------------------------------------------- the page's parts

const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

const page = {
  app: byTestId("app"),
  connection: byTestId("connection"),
  connectionLabel: byTestId("connection-status"),
  signOut: byTestId("sign-out"),
  announcer: byTestId("announcer"),
  toast: byTestId("toast"),
  accountCount: byTestId("account-count"),
  totalWrap: document.querySelector(".summary__total"),
  total: byTestId("total-balance"),
  viewButtons: [...document.querySelectorAll("[data-view]")],
  openForm: byTestId("open-account-form"),
  openName: byTestId("open-account-name"),
  openError: byTestId("open-account-error"),
  finderForm: byTestId("finder-form"),
  search: byTestId("account-search"),
  sort: byTestId("account-sort"),
  accountsEmpty: byTestId("accounts-empty"),
  accountsNoMatch: byTestId("accounts-no-match"),
  accountsLoading: byTestId("accounts-loading"),
  accountList: byTestId("account-list"),
  moreBox: byTestId("accounts-more-box"),
  more: byTestId("accounts-more"),
  moreError: byTestId("accounts-more-error"),
  cardTemplate: document.getElementById("account-card-template"),
  panel: byTestId("account-panel"),
  panelEmpty: byTestId("panel-empty"),
  panelBody: byTestId("panel-body"),
  panelName: byTestId("panel-name"),
  panelNumber: byTestId("panel-number"),
  copyNumber: byTestId("copy-number"),
  panelOwner: byTestId("panel-owner"),
  panelClosedBadge: byTestId("panel-closed-badge"),
  panelBalance: byTestId("panel-balance"),
  panelAvailable: byTestId("panel-available"),
  panelLimit: byTestId("panel-limit"),
  openStatement: byTestId("open-statement"),
  openEvents: byTestId("open-events"),
  closedNote: byTestId("closed-note"),
  actions: byTestId("actions"),
  tabs: [...document.querySelectorAll('[role="tab"]')],
  transferTo: byTestId("transfer-to"),
  transferPayee: byTestId("transfer-payee"),
  transferTargetError: byTestId("transfer-target-error"),
  transferPick: byTestId("transfer-pick"),
  transferPickLabel: byTestId("transfer-pick-label"),
  overdraftInput: byTestId("overdraft-limit"),
  overdraftConfirmBox: byTestId("overdraft-confirm-box"),
  overdraftConfirmText: byTestId("overdraft-confirm-text"),
  overdraftConfirm: byTestId("overdraft-confirm"),
  overdraftCancel: byTestId("overdraft-cancel"),
  dangerZone: byTestId("danger-zone"),
  closeButton: byTestId("close-account"),
  closeBox: byTestId("close-confirm-box"),
  closeText: byTestId("close-confirm-text"),
  closeMove: byTestId("close-move"),
  closeMoveTo: byTestId("close-move-to"),
  closeMoveNone: byTestId("close-move-none"),
  closeConfirm: byTestId("close-confirm"),
  closeCancel: byTestId("close-cancel"),
  closeProgress: byTestId("close-progress"),
  closeError: byTestId("close-error"),
  scopeButtons: [...document.querySelectorAll("[data-scope]")],
  activityEmpty: byTestId("activity-empty"),
  activityList: byTestId("activity-list"),
  transactionTemplate: document.getElementById("transaction-template"),
};

// ---------------------------------------------------------------- what the page knows

const store = {
  loaded: false,
  position: 0,
  accounts: new Map(), // id -> Account, as the server sends it (every one this page has seen)
  transactions: new Map(), // id -> Transaction
};

/**
 * The list of accounts shown: the pages the server gave for the search and sort
 * (in its order), then the accounts opened since, which match the search.
 */
const listing = {
  q: "",
  sort: "opened",
  ids: [], // the server's pages, in order
  recent: [], // opened while the page was open, not in a page yet
  next: null, // the next page's address, or null: the list is whole
  loading: false,
  query: 0, // a newer search makes the answers of older ones stale
};

const ui = {
  selectedId: sessionStorage.getItem("bankaccounts.selected"),
  scope: "all", // or "account": activity of the selected account only
  tab: "deposit",
  view: localStorage.getItem("bankaccounts.view"), // "cards" | "list" | null: chosen by size
  connection: "connecting", // "live" | "reconnecting"
  watches: new Map(), // form action -> { transactionId, kind, cents, accountId } | { text }
  confirmingClose: false,
  closing: false,
  overdraftPending: null, // a limit below the debt, waiting for "Set it anyway"
  payee: { number: null, state: "idle", payee: null }, // the transfer's "to account number"
};

/** Microseconds since the epoch from the server's ISO 8601 times (which may omit them). */
function stamp(iso) {
  const match = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$/.exec(iso ?? "");
  if (!match) return Date.parse(iso ?? "") * 1000 || 0;
  const fraction = match[2] ? Math.round(Number(`0${match[2]}`) * 1e6) : 0;
  return Date.parse(match[1] + match[3]) * 1000 + fraction;
}

/** Keeps the newer of two versions of an account, so a late message never undoes a change. */
function putAccount(account) {
  const known = store.accounts.get(account.id);
  if (known && stamp(known.updated_at) > stamp(account.updated_at)) return known;
  store.accounts.set(account.id, account);
  return account;
}

const STATUS_RANK = { pending: 0, succeeded: 1, failed: 1 };

function putTransaction(transaction) {
  const known = store.transactions.get(transaction.id);
  if (known) {
    const rank = STATUS_RANK[transaction.status] ?? 0;
    const knownRank = STATUS_RANK[known.status] ?? 0;
    if (rank < knownRank) return known;
    if (rank === knownRank && stamp(known.updated_at) > stamp(transaction.updated_at)) return known;
  }
  store.transactions.set(transaction.id, transaction);
  return transaction;
}

function pruneTransactions() {
  if (store.transactions.size <= MAX_TRANSACTIONS_KEPT) return;
  const watched = new Set([...ui.watches.values()].map((watch) => watch.transactionId));
  const oldestFirst = [...store.transactions.values()].sort(
    (a, b) => stamp(a.created_at) - stamp(b.created_at),
  );
  for (const transaction of oldestFirst) {
    if (store.transactions.size <= MAX_TRANSACTIONS_KEPT) break;
    if (!watched.has(transaction.id)) store.transactions.delete(transaction.id);
  }
}

function applyState(state) {
  store.position = state.position;
  store.accounts = new Map(state.accounts.map((account) => [account.id, account]));
  store.transactions = new Map(state.transactions.map((t) => [t.id, t]));
  store.loaded = true;
  listing.ids = state.accounts.map((account) => account.id);
  listing.recent = [];
  listing.next = state.accounts_next
    ? `/api/accounts?${new URLSearchParams({ sort: "opened", limit: String(ACCOUNTS_PAGE), cursor: state.accounts_next })}`
    : null;
  listing.query += 1;
  if (listing.q || listing.sort !== "opened") search();
  if (ui.selectedId) {
    if (store.accounts.has(ui.selectedId)) loadAccountHistory(ui.selectedId);
    else fetchSelected(ui.selectedId);
  }
}

/** The chosen account when it is not in the first page (staff): asked for on its own. */
async function fetchSelected(id) {
  try {
    putAccount(await api("GET", `/api/accounts/${encodeURIComponent(id)}`));
    loadAccountHistory(id);
  } catch {
    if (ui.selectedId === id) selectAccount(null);
  }
  render();
}

// ---------------------------------------------------------------- words

function shortId(id) {
  return String(id ?? "").slice(0, 8);
}

function accountLabel(account) {
  return account?.name || (account ? `Account ${shortId(account.id)}` : "an unknown account");
}

/** One side of a transaction in words: the account's name, else its owner's. */
function sideLabel(transaction, side) {
  const id = transaction[`${side}_account_id`];
  if (store.accounts.has(id)) return accountLabel(store.accounts.get(id));
  const owner = transaction[`${side}_owner`];
  if (!isStaff && owner?.username && owner.id !== me.id) return owner.username;
  return `account ${shortId(id)}` + (owner?.username ? ` (${owner.username})` : "");
}

const KIND_WORDS = { deposit: "Deposit", withdrawal: "Withdrawal", transfer: "Transfer" };

/** "Transfer from Alice to Bob"; a customer sees another's account by its owner: "from bob". */
function transactionTitle(transaction) {
  switch (transaction.kind) {
    case "deposit":
      return `Deposit to ${sideLabel(transaction, "credit")}`;
    case "withdrawal":
      return `Withdrawal from ${sideLabel(transaction, "debit")}`;
    default:
      return `Transfer from ${sideLabel(transaction, "debit")} to ${sideLabel(transaction, "credit")}`;
  }
}

/** "Transfer of 12.00 from Alice to Bob" */
function transactionSentence(transaction) {
  const [kind, ...rest] = transactionTitle(transaction).split(" ");
  return `${kind} of ${formatMoney(transaction.amount)} ${rest.join(" ")}`;
}

/** Tells screen readers about a change (the region is aria-live="polite"). */
function announce(text) {
  const line = document.createElement("p");
  line.textContent = text;
  page.announcer.append(line);
  while (page.announcer.childElementCount > ANNOUNCEMENTS_KEPT) page.announcer.firstElementChild.remove();
}

let toastTimer = null;

/** A short note at the bottom of the page, gone after a few seconds. */
function toast(text) {
  clearTimeout(toastTimer);
  page.toast.textContent = text;
  page.toast.hidden = false;
  toastTimer = setTimeout(() => {
    page.toast.hidden = true;
  }, TOAST_MS);
}

// ---------------------------------------------------------------- rendering

const RENDER_INTERVAL_MS = 50;
let renderQueued = false;
let lastRender = -Infinity;

/**
 * Renders soon: at once after a quiet spell, else at most every 50 ms, so a busy
 * feed (thousands of messages a second) costs a few renders, not one per message.
 */
function render() {
  if (renderQueued) return;
  renderQueued = true;
  const wait = lastRender + RENDER_INTERVAL_MS - performance.now();
  if (wait <= 0) queueMicrotask(renderNow);
  else setTimeout(renderNow, wait);
}

function renderNow() {
  renderQueued = false;
  lastRender = performance.now();
  renderConnection();
  if (!store.loaded) return;
  page.app.dataset.state = "ready";
  renderAccounts();
  renderPanel();
  renderActivity();
  renderWatches();
}

const CONNECTION_LABELS = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };

function renderConnection() {
  page.connection.dataset.state = ui.connection;
  page.connectionLabel.textContent = CONNECTION_LABELS[ui.connection];
}

function setMoney(element, cents, options) {
  element.textContent = formatCents(cents, options);
  element.classList.toggle("is-negative", cents < 0n);
}

/** Whether an account answers the search as the server's does: name, or the number's start. */
function matchesSearch(account) {
  const q = listing.q.trim().toLowerCase();
  if (!q) return true;
  const digits = q.replaceAll("-", "");
  return (
    (account.name ?? "").toLowerCase().includes(q) ||
    (/^[0-9a-f]+$/.test(digits) && account.id.replaceAll("-", "").startsWith(digits))
  );
}

function shownAccounts() {
  const seen = new Set();
  const accounts = [];
  for (const id of [...listing.ids, ...listing.recent]) {
    const account = store.accounts.get(id);
    if (!account || seen.has(id)) continue;
    seen.add(id);
    accounts.push(account);
  }
  return accounts;
}

/** The accounts of one owner this page knows, oldest first (a customer's: all their own). */
function ownersAccounts(owner) {
  return [...store.accounts.values()]
    .filter((account) => (account.owner?.id ?? null) === (owner?.id ?? null))
    .sort((a, b) => stamp(a.opened_at) - stamp(b.opened_at) || (a.id < b.id ? -1 : 1));
}

function currentView() {
  if (ui.view === "cards" || ui.view === "list") return ui.view;
  return isStaff && (listing.next || store.accounts.size > 12) ? "list" : "cards";
}

const cards = new Map(); // account id -> <li>

function renderAccounts() {
  const accounts = shownAccounts();
  const view = currentView();
  page.accountList.classList.toggle("account-list--compact", view === "list");
  for (const button of page.viewButtons) button.setAttribute("aria-pressed", String(button.dataset.view === view));
  const searching = Boolean(listing.q.trim());
  const whole = !listing.next;
  page.accountsLoading.hidden = true;
  page.accountsEmpty.hidden = accounts.length > 0 || searching || listing.loading;
  page.accountsNoMatch.hidden = accounts.length > 0 || !searching || listing.loading;
  const closed = accounts.filter((account) => account.is_closed).length;
  const count = `${accounts.length}${whole ? "" : "+"} ${accounts.length === 1 && whole ? "account" : "accounts"}`;
  page.accountCount.textContent =
    accounts.length === 0
      ? searching
        ? "No matches"
        : "No accounts yet"
      : (searching ? `${count} found` : count) + (closed && whole ? ` (${closed} closed)` : "");
  // A total means something only over every account, not over a page or a search.
  const showTotal = accounts.length > 0 && whole && !searching;
  page.totalWrap.hidden = !showTotal;
  if (showTotal) {
    setMoney(
      page.total,
      accounts.filter((a) => !a.is_closed).reduce((sum, account) => sum + toCents(account.balance), 0n),
    );
  }
  page.moreBox.hidden = !listing.next;
  page.more.disabled = listing.loading;
  page.more.textContent = listing.loading ? "Loading…" : "Load more accounts";

  const ids = new Set(accounts.map((account) => account.id));
  for (const [id, item] of cards) {
    if (!ids.has(id)) {
      item.remove();
      cards.delete(id);
    }
  }
  accounts.forEach((account, index) => {
    let item = cards.get(account.id);
    if (!item) {
      item = page.cardTemplate.content.firstElementChild.cloneNode(true);
      const card = item.querySelector("button");
      card.dataset.accountId = account.id;
      card.addEventListener("click", () => {
        selectAccount(account.id);
        revealPanelOnSmallScreens();
      });
      cards.set(account.id, item);
    }
    // Move only misplaced cards: moving a card would take the focus away from it.
    if (page.accountList.children[index] !== item) {
      page.accountList.insertBefore(item, page.accountList.children[index] ?? null);
    }
    fillCard(item, account);
  });
}

function fillCard(item, account) {
  const card = item.querySelector("button");
  const balance = toCents(account.balance);
  const limit = toCents(account.overdraft_limit);
  card.setAttribute("aria-pressed", String(account.id === ui.selectedId));
  card.classList.toggle("is-closed", account.is_closed);
  byTestId("account-name", card).textContent = accountLabel(account);
  byTestId("account-number", card).textContent = `No. ${shortId(account.id)}`;
  const owner = byTestId("account-owner", card);
  owner.textContent = account.owner?.username ?? "no owner";
  owner.hidden = !isStaff;
  byTestId("account-closed-badge", card).hidden = !account.is_closed;
  const balanceElement = byTestId("balance", card);
  if (card.dataset.balance !== undefined && card.dataset.balance !== account.balance) {
    flash(balanceElement, toCents(card.dataset.balance) < balance ? "is-up" : "is-down");
  }
  card.dataset.balance = account.balance;
  setMoney(balanceElement, balance);
  byTestId("account-limit", card).textContent =
    limit > 0n ? `Overdraft up to ${formatCents(limit)}` : "No overdraft";
}

function flash(element, direction) {
  element.classList.remove("is-up", "is-down");
  void element.offsetWidth; // restart the animation
  element.classList.add(direction);
}

function renderPanel() {
  const account = store.accounts.get(ui.selectedId);
  page.panelEmpty.hidden = Boolean(account);
  page.panelBody.hidden = !account;
  for (const button of page.scopeButtons) {
    if (button.dataset.scope === "account") button.disabled = !account;
    button.setAttribute("aria-pressed", String(button.dataset.scope === currentScope()));
  }
  if (!account) return;
  const balance = toCents(account.balance);
  const limit = toCents(account.overdraft_limit);
  page.panel.dataset.accountId = account.id;
  page.panelName.textContent = accountLabel(account);
  page.panelNumber.textContent = `Account no. ${account.id}`;
  page.openEvents.href = `/explorer/accounts/${encodeURIComponent(account.id)}`;
  page.panelOwner.hidden = !isStaff;
  page.panelOwner.textContent = account.owner ? `Owner: ${account.owner.username}` : "No owner";
  page.panelClosedBadge.hidden = !account.is_closed;
  setMoney(page.panelBalance, balance);
  setMoney(page.panelAvailable, account.is_closed ? 0n : balance + limit);
  setMoney(page.panelLimit, limit);
  page.closedNote.hidden = !account.is_closed;
  page.actions.hidden = account.is_closed;
  page.dangerZone.hidden = account.is_closed;
  page.overdraftInput.placeholder = formatCents(limit).replaceAll(",", "");
  renderTransferPick(account);
  renderPayee();
  renderTabs();
  renderOverdraftConfirm(account);
  renderClose(account);
}

function optionsSignature(options) {
  return options.map((o) => `${o.value}|${o.textContent}|${o.disabled}`).join("\n");
}

/** Rebuilding a list would close it under someone's pointer: only on change. */
function fillSelect(select, options, keep) {
  const signature = optionsSignature(options);
  if (select.dataset.signature === signature) return;
  const chosen = select.value;
  select.replaceChildren(...options);
  select.dataset.signature = signature;
  select.value = keep && options.some((o) => o.value === chosen && !o.disabled) ? chosen : "";
}

function option(value, text, { disabled = false } = {}) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  element.disabled = disabled;
  return element;
}

/** The owner's other accounts, to pick as the transfer's payee instead of typing a number. */
function renderTransferPick(account) {
  const others = ownersAccounts(account.owner).filter((other) => other.id !== account.id);
  const own = !isStaff || account.owner?.id === me.id;
  page.transferPickLabel.textContent = own
    ? "Or pick one of your accounts"
    : `Or pick one of ${account.owner?.username ?? "the owner"}'s accounts`;
  const options = [option("", others.length ? "Choose an account" : "No other account to pick")];
  for (const other of others) {
    options.push(
      option(other.id, `${accountLabel(other)} · No. ${shortId(other.id)}${other.is_closed ? " (closed)" : ""}`, {
        disabled: other.is_closed,
      }),
    );
  }
  fillSelect(page.transferPick, options, false);
  page.transferPick.disabled = others.length === 0;
}

function renderPayee() {
  const { state, payee } = ui.payee;
  const element = page.transferPayee;
  element.dataset.state = state;
  element.hidden = state === "idle";
  if (state === "checking") element.textContent = "Looking up this account…";
  else if (state === "found") {
    const owner = payee.owner?.username;
    const mine = payee.owner?.id === me.id || (!isStaff && store.accounts.has(payee.id));
    element.textContent =
      `${payee.name || `Account ${shortId(payee.id)}`}` +
      (mine ? " · your account" : owner ? ` · ${owner}` : "") +
      (payee.is_closed ? " · closed" : "");
    element.dataset.state = payee.is_closed ? "closed" : "found";
  } else if (state === "missing") element.textContent = "No account has this number.";
  else if (state === "same") element.textContent = "That is this account: choose another.";
  else if (state === "error") element.textContent = ui.payee.error ?? "This account could not be checked.";
}

function renderTabs() {
  for (const tab of page.tabs) {
    const selected = tab.dataset.tab === ui.tab;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
  }
}

function renderOverdraftConfirm(account) {
  const pending = ui.overdraftPending;
  page.overdraftConfirmBox.hidden = !pending || pending.accountId !== account.id;
  if (page.overdraftConfirmBox.hidden) return;
  const debt = -toCents(account.balance);
  page.overdraftConfirmText.textContent =
    `${accountLabel(account)} is overdrawn by ${formatCents(debt)}, more than a limit of ` +
    `${formatCents(pending.cents)}. It stays overdrawn, and nothing more can be taken out ` +
    `until the debt is within the limit. Set the limit anyway?`;
}

function renderClose(account) {
  page.closeButton.hidden = ui.confirmingClose;
  page.closeBox.hidden = !ui.confirmingClose;
  if (!ui.confirmingClose) return;
  const balance = toCents(account.balance);
  const label = accountLabel(account);
  const candidates = ownersAccounts(account.owner).filter((o) => o.id !== account.id && !o.is_closed);
  const moving = balance !== 0n && candidates.length > 0;
  if (balance === 0n) {
    page.closeText.textContent = `Close ${label}? Nothing can be paid in or taken out after that. Its balance is 0.00.`;
  } else if (balance > 0n) {
    page.closeText.textContent =
      `Close ${label}? Its balance of ${formatCents(balance)} moves to another account first; ` +
      "after that, nothing can be paid in or taken out.";
  } else {
    page.closeText.textContent =
      `Close ${label}? It is overdrawn by ${formatCents(-balance)}: that is paid from another ` +
      "account first; after that, nothing can be paid in or taken out.";
  }
  page.closeMove.hidden = !moving;
  page.closeMoveNone.hidden = balance === 0n || moving;
  page.closeMoveNone.textContent =
    "The balance has to be zero before the account closes, and there is no other open account " +
    "to move it to. Open one first, or bring the balance to zero.";
  const options = candidates.map((other) =>
    option(other.id, `${accountLabel(other)} · No. ${shortId(other.id)} · ${formatMoney(other.balance)}`),
  );
  fillSelect(page.closeMoveTo, options, true);
  if (!page.closeMoveTo.value && options.length) page.closeMoveTo.value = options[0].value;
  page.closeConfirm.textContent = moving
    ? `${balance > 0n ? "Move" : "Cover"} ${formatCents(balance < 0n ? -balance : balance)} and close`
    : "Close account";
  page.closeConfirm.disabled = ui.closing;
  page.closeCancel.disabled = ui.closing;
}

function currentScope() {
  return ui.scope === "account" && store.accounts.has(ui.selectedId) ? "account" : "all";
}

function renderActivity() {
  const scope = currentScope();
  const selected = ui.selectedId;
  const shown = [...store.transactions.values()]
    .filter(
      (t) => scope === "all" || t.debit_account_id === selected || t.credit_account_id === selected,
    )
    .sort((a, b) => stamp(b.created_at) - stamp(a.created_at))
    .slice(0, MAX_TRANSACTIONS_SHOWN);
  page.activityEmpty.hidden = shown.length > 0;
  page.activityEmpty.textContent =
    scope === "all" ? "No transactions yet." : "No transactions for this account yet.";
  page.activityList.replaceChildren(...shown.map((t) => transactionRow(t, scope === "account" ? selected : null)));
}

const KIND_ICONS = { deposit: "↓", withdrawal: "↑", transfer: "⇄" };
const STATUS_WORDS = { pending: "Pending", succeeded: "Succeeded", failed: "Failed" };

/** Whether an account is the viewer's own (for a customer: every account they can see). */
function isMine(accountId, owner) {
  if (owner) return owner.id === me.id;
  return !isStaff && store.accounts.has(accountId);
}

function transactionRow(transaction, accountId) {
  const row = page.transactionTemplate.content.firstElementChild.cloneNode(true);
  row.dataset.transactionId = transaction.id;
  row.dataset.status = transaction.status;
  row.dataset.kind = transaction.kind;
  row.classList.add(`txn--${transaction.kind}`, `is-${transaction.status}`);
  row.querySelector(".txn__icon").textContent = KIND_ICONS[transaction.kind] ?? "•";
  byTestId("transaction-title", row).textContent = transactionTitle(transaction);
  const time = byTestId("transaction-time", row);
  time.dateTime = transaction.created_at;
  time.textContent = fullTime(transaction.created_at);
  const by = byTestId("transaction-by", row);
  by.textContent = transaction.initiated_by?.username ? `by ${transaction.initiated_by.username}` : "";
  by.hidden = !transaction.initiated_by?.username;
  const status = byTestId("transaction-status", row);
  status.textContent = STATUS_WORDS[transaction.status] ?? transaction.status;
  status.className = `status status--${transaction.status}`;
  const error = byTestId("transaction-error", row);
  error.hidden = !transaction.error;
  error.textContent = transaction.error ?? "";
  byTestId("transaction-journey", row).href = `/explorer/transactions/${encodeURIComponent(transaction.id)}`;
  // Money in is "+", money out "−"; a transfer between two accounts of the same
  // viewer (or, for staff, seen from all accounts) has no sign.
  let cents = toCents(transaction.amount);
  let signed = true;
  if (transaction.kind === "withdrawal") cents = -cents;
  else if (transaction.kind === "transfer") {
    if (accountId === transaction.debit_account_id) cents = -cents;
    else if (accountId !== transaction.credit_account_id) {
      const debitMine = !isStaff && isMine(transaction.debit_account_id, transaction.debit_owner);
      const creditMine = !isStaff && isMine(transaction.credit_account_id, transaction.credit_owner);
      if (debitMine && !creditMine) cents = -cents;
      else if (debitMine === creditMine) signed = false;
    }
  }
  row.dataset.direction = !signed ? "between" : cents < 0n ? "out" : "in";
  const amount = byTestId("transaction-amount", row);
  setMoney(amount, cents, { signed });
  amount.classList.toggle("is-positive", signed && cents > 0n);
  return row;
}

function renderWatches() {
  for (const action of ["deposit", "withdraw", "transfer", "overdraft"]) {
    const element = byTestId(`${action}-status`);
    const watch = ui.watches.get(action);
    element.hidden = !watch;
    if (!watch) continue;
    if (watch.text) {
      element.textContent = watch.text;
      element.dataset.status = watch.status ?? "succeeded";
      continue;
    }
    const transaction = store.transactions.get(watch.transactionId);
    const what = `${KIND_WORDS[watch.kind]} of ${formatCents(watch.cents)}${watch.to ? ` to ${watch.to}` : ""}`;
    const status = transaction?.status ?? "pending";
    element.dataset.status = status;
    element.textContent =
      status === "succeeded"
        ? `${what} succeeded.`
        : status === "failed"
          ? `${what} failed: ${transaction.error ?? "the bank refused it"}.`
          : `${what} is pending…`;
  }
}

// ---------------------------------------------------------------- choosing an account

function selectAccount(id) {
  if (ui.selectedId !== id) {
    ui.watches.clear();
    ui.confirmingClose = false;
    ui.overdraftPending = null;
    for (const form of document.querySelectorAll(".action-form")) {
      form.reset();
      clearErrors(form);
    }
    ui.selectedId = id;
    checkPayee();
  }
  ui.selectedId = id;
  if (id) {
    sessionStorage.setItem("bankaccounts.selected", id);
    loadAccountHistory(id);
  } else {
    sessionStorage.removeItem("bankaccounts.selected");
  }
  render();
}

function revealPanelOnSmallScreens() {
  if (!window.matchMedia("(max-width: 899px)").matches) return;
  const top = page.panel.getBoundingClientRect().top;
  if (top > window.innerHeight * 0.6 || top < 0) {
    const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    page.panel.scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
  }
}

/** The selected account's older transactions, which the page's first 50 may not hold. */
async function loadAccountHistory(id) {
  try {
    const params = new URLSearchParams({ account_id: id, limit: String(MAX_TRANSACTIONS_SHOWN) });
    const transactions = await api("GET", `/api/transactions?${params}`);
    transactions.forEach(putTransaction);
    render();
  } catch {
    // The feed and the first page of state still show what they hold.
  }
}

// ---------------------------------------------------------------- searching and paging accounts

let searchTimer = null;

/** Asks the server for the first page of the current search and sort. */
async function search() {
  clearTimeout(searchTimer);
  const query = ++listing.query;
  listing.loading = true;
  render();
  const params = new URLSearchParams({ sort: listing.sort, limit: String(ACCOUNTS_PAGE) });
  if (listing.q.trim()) params.set("q", listing.q.trim());
  try {
    const { data, response } = await request("GET", `/api/accounts?${params}`);
    if (query !== listing.query) return;
    data.forEach(putAccount);
    listing.ids = data.map((account) => account.id);
    listing.recent = [];
    listing.next = nextLink(response);
    showError(page.moreError, null, "");
  } catch (error) {
    if (query === listing.query) showError(page.moreError, null, error.message);
  } finally {
    if (query === listing.query) {
      listing.loading = false;
      render();
    }
  }
}

async function loadMore() {
  if (!listing.next || listing.loading) return;
  const query = listing.query;
  listing.loading = true;
  render();
  try {
    const { data, response } = await request("GET", listing.next);
    if (query !== listing.query) return;
    data.forEach(putAccount);
    const fresh = data.map((account) => account.id).filter((id) => !listing.ids.includes(id));
    listing.ids.push(...fresh);
    listing.recent = listing.recent.filter((id) => !fresh.includes(id));
    listing.next = nextLink(response);
    showError(page.moreError, null, "");
  } catch (error) {
    if (query === listing.query) showError(page.moreError, null, error.message);
  } finally {
    if (query === listing.query) {
      listing.loading = false;
      render();
    }
  }
}

/** An account the feed brought: listed after the pages if it matches the search. */
function listNewAccount(account) {
  if (listing.ids.includes(account.id) || listing.recent.includes(account.id)) return;
  if (matchesSearch(account)) listing.recent.push(account.id);
}

page.finderForm.addEventListener("submit", (event) => {
  event.preventDefault();
  listing.q = page.search.value;
  search();
});
page.search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    if (listing.q === page.search.value) return;
    listing.q = page.search.value;
    search();
  }, SEARCH_DELAY_MS);
});
page.sort.addEventListener("change", () => {
  listing.sort = page.sort.value;
  search();
});
page.more.addEventListener("click", loadMore);
for (const button of page.viewButtons) {
  button.addEventListener("click", () => {
    ui.view = button.dataset.view;
    localStorage.setItem("bankaccounts.view", ui.view);
    render();
  });
}

// ---------------------------------------------------------------- the session

function keepDrafts() {
  saveDrafts(me.username, { selected: ui.selectedId, tab: ui.tab, scope: ui.scope });
}

/** The session ended (expired, revoked): to sign-in, keeping what was typed. */
function sessionEnded() {
  closeSocketQuietly();
  goToSignIn(keepDrafts);
}

onSignedOut(sessionEnded);

onOtherTabs((change) => {
  // Signed out on purpose in another tab: nothing is kept behind.
  if (change === "signed-out") {
    closeSocketQuietly();
    goToSignIn(forgetDrafts);
  }
});

page.signOut.addEventListener("click", async () => {
  page.signOut.disabled = true;
  try {
    await request("DELETE", "/api/tokens/current", {});
  } catch (error) {
    if (error.status !== 401) {
      page.signOut.disabled = false;
      toast(`Could not sign out: ${error.message}`);
      return;
    }
  }
  forgetDrafts();
  tellOtherTabs("signed-out");
  closeSocketQuietly();
  location.replace("/signin");
});

/** Puts back what was typed before the session ended, once the accounts are known. */
function restoreDrafts() {
  const drafts = takeDrafts(me.username);
  if (!drafts) return;
  if (drafts.selected && store.accounts.has(drafts.selected)) selectAccount(drafts.selected);
  if (TABS.includes(drafts.tab)) ui.tab = drafts.tab;
  if (drafts.scope === "account" || drafts.scope === "all") ui.scope = drafts.scope;
  let restored = 0;
  for (const [id, value] of Object.entries(drafts.fields ?? {})) {
    const element = document.getElementById(id);
    if (!element?.hasAttribute("data-draft") || typeof value !== "string" || element.value) continue;
    element.value = value;
    element.dispatchEvent(new Event("input", { bubbles: true }));
    restored += 1;
  }
  renderNow();
  if (restored) toast("Welcome back. What you had typed is still here.");
}


// ---------------------------------------------------------------- the feed

let socket = null;
let retryDelay = RETRY_FIRST_MS;
let retryTimer = null;
let replaying = true; // true until "ready": the backlog is not announced
let started = false;
const requests = new Map(); // request_id -> { resolve, reject, timer }

function setConnection(state) {
  if (ui.connection === state) return;
  ui.connection = state;
  render();
}

async function start() {
  clearTimeout(retryTimer);
  try {
    applyState(await api("GET", "/api/state"));
  } catch (error) {
    if (error.status === 401 || isLeaving()) return;
    setConnection("reconnecting");
    scheduleRetry(start);
    return;
  }
  render();
  if (!started) {
    started = true;
    restoreDrafts();
  }
  connect();
}

function scheduleRetry(action) {
  clearTimeout(retryTimer);
  if (isLeaving()) return;
  retryTimer = setTimeout(action, retryDelay);
  retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
}

function connect() {
  clearTimeout(retryTimer);
  if (isLeaving()) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws?after=${store.position}`);
  socket = ws;
  replaying = true;
  ws.addEventListener("message", (event) => {
    if (socket !== ws) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    receive(message);
  });
  ws.addEventListener("close", (event) => {
    if (socket !== ws) return;
    socket = null;
    failRequests();
    if (event.code === SIGNED_OUT_CLOSE_CODE) {
      sessionEnded();
      return;
    }
    setConnection("reconnecting");
    // A refused handshake (the session ended meanwhile) shows as a plain close:
    // the state request that comes first answers 401 then.
    scheduleRetry(store.loaded ? reconnect : start);
  });
}

/**
 * Resumes the feed from the last position seen, unless the server now knows less
 * than this page (it was restarted on a new data directory): then starts again
 * from its state.
 */
async function reconnect() {
  clearTimeout(retryTimer);
  let state;
  try {
    state = await api("GET", "/api/state");
  } catch (error) {
    if (error.status !== 401) scheduleRetry(reconnect);
    return;
  }
  if (state.position < store.position) {
    ui.watches.clear();
    applyState(state);
    render();
  }
  connect();
}

function closeSocketQuietly() {
  clearTimeout(retryTimer);
  const ws = socket;
  socket = null;
  failRequests();
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "signed out");
}

/** Forgets the current socket without treating its end as a lost connection. */
function dropSocket() {
  const ws = socket;
  socket = null;
  failRequests();
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "resync");
}

/** The server knows less than this page (a new data directory): start again from its state. */
async function resync() {
  dropSocket();
  setConnection("reconnecting");
  ui.watches.clear();
  await start();
}

function receive(message) {
  switch (message.type) {
    case "ready":
      if (typeof message.last_position === "number" && message.last_position < store.position) {
        resync();
        return;
      }
      replaying = false;
      retryDelay = RETRY_FIRST_MS;
      setConnection("live");
      return;
    case "ack":
    case "error": {
      const pending = requests.get(message.request_id);
      if (!pending) return;
      requests.delete(message.request_id);
      clearTimeout(pending.timer);
      if (message.type === "ack") pending.resolve(message.transaction_id);
      else {
        pending.reject(
          new ApiError(sentence(message.error ?? "The bank refused the request"), { field: message.field ?? null }),
        );
      }
      return;
    }
    default:
      if (typeof message.position !== "number" || message.position <= store.position) return;
      store.position = message.position;
      applyChange(message);
      render();
  }
}

function applyChange(message) {
  if (message.account) {
    const before = store.accounts.get(message.account.id);
    const account = putAccount(message.account);
    if (message.type === "account_opened") listNewAccount(account);
    if (ui.payee.payee?.id === account.id) setPayee("found", payeeOf(account));
    if (replaying) return;
    if (message.type === "account_opened" && !before) announce(`New account opened: ${accountLabel(account)}.`);
    if (message.type === "account_closed") announce(`${accountLabel(account)} was closed.`);
    if (message.type === "overdraft_limit_set") {
      announce(`Overdraft limit of ${accountLabel(account)} set to ${formatMoney(account.overdraft_limit)}.`);
    }
  }
  if (message.transaction) {
    const transaction = putTransaction(message.transaction);
    pruneTransactions();
    if (replaying || transaction !== message.transaction) return;
    if (message.type === "transaction_succeeded") announce(`${transactionSentence(transaction)} succeeded.`);
    if (message.type === "transaction_failed") {
      announce(`${transactionSentence(transaction)} failed: ${transaction.error ?? "refused"}.`);
    }
  }
}

function failRequests() {
  for (const [id, pending] of requests) {
    clearTimeout(pending.timer);
    pending.reject(
      new ApiError("The connection dropped before the bank confirmed. Check the recent activity before trying again."),
    );
    requests.delete(id);
  }
}

const REST_COMMANDS = {
  deposit: (body) => [`/api/accounts/${encodeURIComponent(body.credit_account_id)}/deposits`, { amount: body.amount }],
  withdraw: (body) => [`/api/accounts/${encodeURIComponent(body.debit_account_id)}/withdrawals`, { amount: body.amount }],
  transfer: (body) => ["/api/transfers", body],
};

/** Sends a deposit, withdrawal or transfer; resolves to the transaction id. */
async function sendMoneyCommand(type, body) {
  const requestId = newId();
  if (socket && socket.readyState === WebSocket.OPEN && ui.connection === "live") {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        requests.delete(requestId);
        reject(new ApiError("No answer from the bank yet. Check the recent activity before trying again."));
      }, REQUEST_TIMEOUT_MS);
      requests.set(requestId, { resolve, reject, timer });
      socket.send(JSON.stringify({ type, ...body, request_id: requestId }));
    });
  }
  // Without the live connection, REST does the same; the key makes a retry safe.
  const [path, payload] = REST_COMMANDS[type](body);
  const answer = await api("POST", path, payload, { "Idempotency-Key": requestId });
  return answer.transaction_id;
}

// ---------------------------------------------------------------- forms

function showError(element, input, message) {
  element.textContent = message ?? "";
  element.hidden = !message;
  if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
}

function clearErrors(form) {
  for (const element of form.querySelectorAll(".field-error")) showError(element, null, "");
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/** Hides the last outcome of a form, so that it never stands beside a new error. */
function forgetOutcome(action) {
  ui.watches.delete(action);
  renderWatches();
}

function setBusy(form, busy) {
  form.setAttribute("aria-busy", String(busy));
  for (const button of form.querySelectorAll("button")) button.disabled = busy;
}

page.openForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = page.openName.value.replace(/\s+/g, " ").trim();
  if (!name) {
    showError(page.openError, page.openName, isStaff ? "Enter the account holder's name." : "Enter a name for the account.");
    page.openName.focus();
    return;
  }
  showError(page.openError, page.openName, "");
  setBusy(page.openForm, true);
  try {
    const opened = await api("POST", "/api/accounts", { name });
    const announced = store.accounts.has(opened.id); // the feed was quicker
    const account = putAccount(opened);
    listNewAccount(account);
    if (!listing.ids.includes(account.id) && !listing.recent.includes(account.id)) listing.recent.push(account.id);
    page.openForm.reset();
    selectAccount(account.id);
    if (!announced) announce(`New account opened: ${accountLabel(account)}.`);
  } catch (error) {
    showError(page.openError, page.openName, error.message);
    page.openName.focus();
  } finally {
    setBusy(page.openForm, false);
  }
});

// An error stays only until the field is changed.
page.openName.addEventListener("input", () => showError(page.openError, page.openName, ""));
for (const form of document.querySelectorAll(".action-form")) {
  form.addEventListener("input", (event) => {
    const described = (event.target.getAttribute("aria-describedby") ?? "").split(/\s+/);
    for (const error of described.map((id) => document.getElementById(id))) {
      if (error?.classList.contains("field-error")) showError(error, event.target, "");
    }
  });
}

// ---------------------------------------------------------------- the payee of a transfer

let payeeTimer = null;
let payeeLookup = null; // { number, promise, start } of the last number looked up

function payeeOf(account) {
  return { id: account.id, name: account.name, owner: account.owner, is_closed: account.is_closed };
}

function setPayee(state, payee = null, error = null) {
  ui.payee = { number: payee?.id ?? ui.payee.number, state, payee, error };
  renderPayee();
}

/**
 * Looks up the typed account number (soon, or `now`): the payee's name shows once
 * it is recognised. Resolves when the answer is in; the same number is asked once.
 */
function checkPayee({ now = false } = {}) {
  const number = accountNumber(page.transferTo.value);
  if (!number || number === ui.selectedId) {
    clearTimeout(payeeTimer);
    payeeLookup = null;
    ui.payee = { number, state: number ? "same" : "idle", payee: null };
    renderPayee();
    return Promise.resolve();
  }
  if (payeeLookup?.number === number && ui.payee.state !== "error") {
    if (now) payeeLookup.start();
    return payeeLookup.promise;
  }
  clearTimeout(payeeTimer);
  ui.payee = { number, state: "checking", payee: null };
  renderPayee();
  let started = false;
  const lookup = { number, promise: null, start: null };
  lookup.promise = new Promise((resolve) => {
    lookup.start = async () => {
      if (started) return;
      started = true;
      clearTimeout(payeeTimer);
      try {
        const payee = await api("GET", `/api/accounts/${encodeURIComponent(number)}/payee`);
        if (payeeLookup === lookup) setPayee("found", payee);
      } catch (error) {
        if (payeeLookup === lookup) {
          if (error.status === 404) ui.payee = { number, state: "missing", payee: null };
          else ui.payee = { number, state: "error", payee: null, error: error.message };
          renderPayee();
        }
      } finally {
        resolve();
      }
    };
  });
  payeeLookup = lookup;
  if (now) lookup.start();
  else payeeTimer = setTimeout(lookup.start, PAYEE_DELAY_MS);
  return lookup.promise;
}

page.transferTo.addEventListener("input", () => checkPayee());
page.transferTo.addEventListener("paste", () => setTimeout(() => checkPayee({ now: true })));
page.transferPick.addEventListener("change", () => {
  if (!page.transferPick.value) return;
  page.transferTo.value = page.transferPick.value;
  page.transferPick.value = "";
  showError(page.transferTargetError, page.transferTo, "");
  checkPayee({ now: true });
  byTestId("transfer-amount").focus();
});

// ---------------------------------------------------------------- money forms

// Each form's websocket message type, and the kind of transaction it makes.
const MONEY_ACTIONS = {
  deposit: { type: "deposit", kind: "deposit" },
  withdraw: { type: "withdraw", kind: "withdrawal" },
  transfer: { type: "transfer", kind: "transfer" },
};

for (const form of document.querySelectorAll(".action-form")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const action = form.dataset.action;
    if (action === "overdraft") submitOverdraft(form);
    else submitMoney(form, action);
  });
}

/** Why the typed payee can't be paid, in words; null if it can. */
async function payeeProblem() {
  const text = page.transferTo.value.trim();
  if (!text) return "Enter the account number to transfer to, or pick one of the accounts below.";
  if (!accountNumber(text)) {
    return "Enter the whole account number: 36 characters such as 1b4e28ba-2fa1-11d2-883f-0016d3cca427.";
  }
  await checkPayee({ now: true });
  switch (ui.payee.state) {
    case "same":
      return "That is this account's own number: enter another account's.";
    case "missing":
      return "No account has this number. Check it and try again.";
    case "error":
      return ui.payee.error ?? "This account could not be checked. Try again.";
    case "found":
      return ui.payee.payee.is_closed ? "That account is closed: it can't receive money." : null;
    default:
      return null;
  }
}

async function submitMoney(form, action) {
  const account = store.accounts.get(ui.selectedId);
  if (!account) return;
  const input = form.elements.amount;
  const amountError = byTestId(`${action}-error`);
  clearErrors(form);
  forgetOutcome(action);
  const amount = parseAmount(input.value);
  let firstBad = null;
  let payee = null;
  if (action === "transfer") {
    setBusy(form, true);
    const problem = await payeeProblem();
    setBusy(form, false);
    if (problem) {
      showError(page.transferTargetError, page.transferTo, problem);
      firstBad = page.transferTo;
    } else {
      payee = ui.payee.payee;
    }
  }
  if (!amount.ok) {
    showError(amountError, input, amount.error);
    firstBad ??= input;
  }
  if (firstBad) {
    firstBad.focus();
    return;
  }
  const body =
    action === "deposit"
      ? { credit_account_id: account.id, amount: amount.value }
      : action === "withdraw"
        ? { debit_account_id: account.id, amount: amount.value }
        : { debit_account_id: account.id, credit_account_id: payee.id, amount: amount.value };
  setBusy(form, true);
  try {
    const transactionId = await sendMoneyCommand(MONEY_ACTIONS[action].type, body);
    if (ui.selectedId === account.id) {
      ui.watches.set(action, { transactionId, kind: MONEY_ACTIONS[action].kind, cents: amount.cents });
      input.value = "";
    }
  } catch (error) {
    const onTarget = action === "transfer" && /credit_account_id/.test(error.field ?? "");
    showError(onTarget ? page.transferTargetError : amountError, onTarget ? page.transferTo : input, error.message);
  } finally {
    setBusy(form, false);
    render();
  }
}

async function submitOverdraft(form, { confirmed = false } = {}) {
  const account = store.accounts.get(ui.selectedId);
  if (!account) return;
  const input = form.elements.overdraft_limit;
  const error = byTestId("overdraft-error");
  clearErrors(form);
  forgetOutcome("overdraft");
  ui.overdraftPending = null;
  const limit = parseAmount(input.value, { allowZero: true });
  if (!limit.ok) {
    showError(error, input, limit.error);
    input.focus();
    render();
    return;
  }
  // A limit below what the account already owes: asked for, but only on purpose.
  if (!confirmed && toCents(account.balance) < 0n && limit.cents < -toCents(account.balance)) {
    ui.overdraftPending = { accountId: account.id, cents: limit.cents };
    renderNow();
    page.overdraftCancel.focus();
    return;
  }
  setBusy(form, true);
  try {
    const path = `/api/accounts/${encodeURIComponent(account.id)}/overdraft-limit`;
    const updated = putAccount(await api("PUT", path, { overdraft_limit: limit.value }));
    input.value = "";
    ui.watches.set("overdraft", { text: `Overdraft limit set to ${formatMoney(updated.overdraft_limit)}.` });
  } catch (failure) {
    showError(error, input, failure.message);
  } finally {
    setBusy(form, false);
    render();
  }
}

page.overdraftConfirm.addEventListener("click", () => {
  submitOverdraft(byTestId("overdraft-form"), { confirmed: true });
});
page.overdraftCancel.addEventListener("click", () => {
  ui.overdraftPending = null;
  renderNow();
  page.overdraftInput.focus();
});

// ---------------------------------------------------------------- closing an account

page.closeButton.addEventListener("click", () => {
  ui.confirmingClose = true;
  showError(page.closeError, null, "");
  page.closeProgress.hidden = true;
  page.closeMoveTo.dataset.signature = "";
  renderNow();
  page.closeCancel.focus();
});

page.closeCancel.addEventListener("click", () => {
  ui.confirmingClose = false;
  renderNow();
  page.closeButton.focus();
});

function closeProgress(text) {
  page.closeProgress.textContent = text ?? "";
  page.closeProgress.hidden = !text;
}

/** Moves the balance to (or covers a debt from) the chosen account, then closes. */
page.closeConfirm.addEventListener("click", async () => {
  const account = store.accounts.get(ui.selectedId);
  if (!account) return;
  ui.closing = true;
  showError(page.closeError, null, "");
  renderNow();
  try {
    const balance = toCents(account.balance);
    const otherId = page.closeMove.hidden ? null : page.closeMoveTo.value;
    if (balance !== 0n && otherId) {
      const other = store.accounts.get(otherId);
      const amount = formatCents(balance < 0n ? -balance : balance).replaceAll(",", "");
      const body =
        balance > 0n
          ? { debit_account_id: account.id, credit_account_id: otherId, amount }
          : { debit_account_id: otherId, credit_account_id: account.id, amount };
      closeProgress(`${balance > 0n ? "Moving" : "Covering"} ${amount} ${balance > 0n ? "to" : "from"} ${accountLabel(other)}…`);
      const answer = await api("POST", "/api/transfers?wait=true", body, { "Idempotency-Key": newId() });
      if (answer.status === "failed") {
        throw new ApiError(`The transfer failed: ${answer.error ?? "the bank refused it"}. The account stays open.`);
      }
      if (answer.status !== "succeeded") {
        throw new ApiError("The transfer has not finished yet. Check the activity, then close the account again.");
      }
    }
    closeProgress("Closing…");
    putAccount(await api("POST", `/api/accounts/${encodeURIComponent(account.id)}/close`, {}));
    ui.confirmingClose = false;
    announce(`${accountLabel(account)} was closed.`);
  } catch (error) {
    showError(page.closeError, null, error.message);
  } finally {
    ui.closing = false;
    closeProgress("");
    render();
  }
});

// ---------------------------------------------------------------- the rest of the panel

page.openStatement.addEventListener("click", () => {
  const account = store.accounts.get(ui.selectedId);
  if (account) openStatement(account, me, accountLabel(account));
});

page.copyNumber.addEventListener("click", async () => {
  const id = ui.selectedId;
  if (!id) return;
  try {
    await navigator.clipboard.writeText(id);
    toast("Account number copied.");
  } catch {
    // No clipboard here (not a secure context): select the number for copying by hand.
    const range = document.createRange();
    range.selectNodeContents(page.panelNumber);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
});

// Tabs: arrow keys, Home and End move between them (and choose them), as in ARIA's pattern.
for (const tab of page.tabs) {
  tab.addEventListener("click", () => {
    ui.tab = tab.dataset.tab;
    render();
  });
  tab.addEventListener("keydown", (event) => {
    const index = page.tabs.indexOf(tab);
    const last = page.tabs.length - 1;
    const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: last }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    const target = page.tabs[(next + last + 1) % (last + 1)];
    ui.tab = target.dataset.tab;
    renderTabs();
    target.focus();
  });
}

for (const button of page.scopeButtons) {
  button.addEventListener("click", () => {
    ui.scope = button.dataset.scope;
    render();
  });
}

// Come back quickly when the network does.
window.addEventListener("online", () => {
  if (socket || isLeaving()) return;
  retryDelay = RETRY_FIRST_MS;
  if (store.loaded) reconnect();
  else start();
});

render();
start();

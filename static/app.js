// The bank's page: accounts with live balances, actions on the chosen account and
// recent activity. State comes from GET /api/state, then every change from the
// websocket feed, resumed from the last position seen after any lost connection.
//
// Text from people (account names) and from the server (error reasons) only ever
// goes into the page through textContent, never as HTML.

import { formatCents, formatMoney, parseAmount, toCents } from "./money.js";

const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 5000;
const REQUEST_TIMEOUT_MS = 15000;
const MAX_TRANSACTIONS_SHOWN = 50;
const MAX_TRANSACTIONS_KEPT = 1000;
const ANNOUNCEMENTS_KEPT = 5;

// ---------------------------------------------------------------- the page's parts

const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

const page = {
  app: byTestId("app"),
  connection: byTestId("connection"),
  connectionLabel: byTestId("connection-status"),
  announcer: byTestId("announcer"),
  accountCount: byTestId("account-count"),
  totalWrap: document.querySelector(".summary__total"),
  total: byTestId("total-balance"),
  openForm: byTestId("open-account-form"),
  openName: byTestId("open-account-name"),
  openError: byTestId("open-account-error"),
  accountsEmpty: byTestId("accounts-empty"),
  accountsLoading: byTestId("accounts-loading"),
  accountList: byTestId("account-list"),
  cardTemplate: document.getElementById("account-card-template"),
  panel: byTestId("account-panel"),
  panelEmpty: byTestId("panel-empty"),
  panelBody: byTestId("panel-body"),
  panelName: byTestId("panel-name"),
  panelNumber: byTestId("panel-number"),
  panelClosedBadge: byTestId("panel-closed-badge"),
  panelBalance: byTestId("panel-balance"),
  panelAvailable: byTestId("panel-available"),
  panelLimit: byTestId("panel-limit"),
  closedNote: byTestId("closed-note"),
  actions: byTestId("actions"),
  tabs: [...document.querySelectorAll('[role="tab"]')],
  transferTarget: byTestId("transfer-target"),
  overdraftInput: byTestId("overdraft-limit"),
  dangerZone: byTestId("danger-zone"),
  closeButton: byTestId("close-account"),
  closeBox: byTestId("close-confirm-box"),
  closeText: byTestId("close-confirm-text"),
  closeConfirm: byTestId("close-confirm"),
  closeCancel: byTestId("close-cancel"),
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
  accounts: new Map(), // id -> Account, as the server sends it
  transactions: new Map(), // id -> Transaction
};

const ui = {
  selectedId: sessionStorage.getItem("bankaccounts.selected"),
  scope: "all", // or "account": activity of the selected account only
  tab: "deposit",
  connection: "connecting", // "live" | "reconnecting"
  watches: new Map(), // form action -> { transactionId, kind, cents, accountId } | { text }
  confirmingClose: false,
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
  if (ui.selectedId && !store.accounts.has(ui.selectedId)) selectAccount(null);
  if (ui.selectedId) loadAccountHistory(ui.selectedId);
}

// ---------------------------------------------------------------- words

function accountLabel(account) {
  return account?.name || (account ? `Account ${shortId(account.id)}` : "an unknown account");
}

function accountLabelById(id) {
  return store.accounts.has(id) ? accountLabel(store.accounts.get(id)) : `account ${shortId(id)}`;
}

function shortId(id) {
  return String(id ?? "").slice(0, 8);
}

const KIND_WORDS = { deposit: "Deposit", withdrawal: "Withdrawal", transfer: "Transfer" };

/** "Transfer from Alice to Bob" */
function transactionTitle(transaction) {
  const credit = accountLabelById(transaction.credit_account_id);
  const debit = accountLabelById(transaction.debit_account_id);
  switch (transaction.kind) {
    case "deposit":
      return `Deposit to ${credit}`;
    case "withdrawal":
      return `Withdrawal from ${debit}`;
    default:
      return `Transfer from ${debit} to ${credit}`;
  }
}

/** "Transfer of 12.00 from Alice to Bob" */
function transactionSentence(transaction) {
  const [kind, ...rest] = transactionTitle(transaction).split(" ");
  return `${kind} of ${formatMoney(transaction.amount)} ${rest.join(" ")}`;
}

const timeOfDay = new Intl.DateTimeFormat("en", { hour: "numeric", minute: "2-digit" });
const dayAndTime = new Intl.DateTimeFormat("en", { day: "numeric", month: "short", hour: "numeric", minute: "2-digit" });
const fullTime = new Intl.DateTimeFormat("en", { dateStyle: "medium", timeStyle: "medium" });

function formatTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "";
  return when.toDateString() === new Date().toDateString() ? timeOfDay.format(when) : dayAndTime.format(when);
}

/** Tells screen readers about a change (the region is aria-live="polite"). */
function announce(text) {
  const line = document.createElement("p");
  line.textContent = text;
  page.announcer.append(line);
  while (page.announcer.childElementCount > ANNOUNCEMENTS_KEPT) page.announcer.firstElementChild.remove();
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

function sortedAccounts() {
  return [...store.accounts.values()].sort(
    (a, b) => stamp(a.opened_at) - stamp(b.opened_at) || (a.id < b.id ? -1 : 1),
  );
}

const cards = new Map(); // account id -> <li>

function renderAccounts() {
  const accounts = sortedAccounts();
  const open = accounts.filter((account) => !account.is_closed);
  page.accountsLoading.hidden = true;
  page.accountsEmpty.hidden = accounts.length > 0;
  page.accountCount.textContent =
    accounts.length === 0
      ? "No accounts yet"
      : `${accounts.length} ${accounts.length === 1 ? "account" : "accounts"}` +
        (open.length < accounts.length ? ` (${accounts.length - open.length} closed)` : "");
  page.totalWrap.hidden = accounts.length === 0;
  setMoney(page.total, open.reduce((sum, account) => sum + toCents(account.balance), 0n));

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
  page.panelClosedBadge.hidden = !account.is_closed;
  setMoney(page.panelBalance, balance);
  setMoney(page.panelAvailable, account.is_closed ? 0n : balance + limit);
  setMoney(page.panelLimit, limit);
  page.closedNote.hidden = !account.is_closed;
  page.actions.hidden = account.is_closed;
  page.dangerZone.hidden = account.is_closed;
  page.overdraftInput.placeholder = formatCents(limit).replaceAll(",", "");
  renderTransferTargets(account);
  renderTabs();
  page.closeButton.hidden = ui.confirmingClose;
  page.closeBox.hidden = !ui.confirmingClose;
  page.closeText.textContent =
    `Close ${accountLabel(account)}? Nothing can be paid in or taken out after that. ` +
    `Its balance is ${formatCents(balance)}.`;
}

function renderTransferTargets(account) {
  const select = page.transferTarget;
  const chosen = select.value;
  const others = sortedAccounts().filter((other) => other.id !== account.id);
  const options = [];
  const placeholder = document.createElement("option");
  placeholder.value = "";
  placeholder.textContent = others.length ? "Choose an account" : "Open another account first";
  options.push(placeholder);
  for (const other of others) {
    const option = document.createElement("option");
    option.value = other.id;
    option.textContent = `${accountLabel(other)} · No. ${shortId(other.id)}${other.is_closed ? " (closed)" : ""}`;
    option.disabled = other.is_closed;
    options.push(option);
  }
  // Rebuilding the list would close it under someone's pointer: only do it on change.
  const signature = options.map((o) => `${o.value}|${o.textContent}|${o.disabled}`).join("\n");
  if (select.dataset.signature !== signature) {
    select.replaceChildren(...options);
    select.dataset.signature = signature;
    select.value = others.some((o) => o.id === chosen && !o.is_closed) ? chosen : "";
  }
}

function renderTabs() {
  for (const tab of page.tabs) {
    const selected = tab.dataset.tab === ui.tab;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
  }
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
  time.textContent = formatTime(transaction.created_at);
  time.title = Number.isNaN(Date.parse(transaction.created_at)) ? "" : fullTime.format(new Date(transaction.created_at));
  const status = byTestId("transaction-status", row);
  status.textContent = STATUS_WORDS[transaction.status] ?? transaction.status;
  status.className = `status status--${transaction.status}`;
  const error = byTestId("transaction-error", row);
  error.hidden = !transaction.error;
  error.textContent = transaction.error ?? "";
  // Money in is "+", money out "−"; a transfer seen from all accounts has no sign.
  let cents = toCents(transaction.amount);
  let signed = true;
  if (transaction.kind === "withdrawal") cents = -cents;
  else if (transaction.kind === "transfer") {
    if (accountId === transaction.debit_account_id) cents = -cents;
    else if (accountId !== transaction.credit_account_id) signed = false;
  }
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
    const what = `${KIND_WORDS[watch.kind]} of ${formatCents(watch.cents)}`;
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
    for (const form of document.querySelectorAll(".action-form")) {
      form.reset();
      clearErrors(form);
    }
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

// ---------------------------------------------------------------- talking to the server

class ApiError extends Error {
  constructor(message, { status = 0, field = null } = {}) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

/** FastAPI's errors in words: {"detail": "..."} or {"detail": [{"loc", "msg"}...]}. */
function describeError(body, status) {
  const detail = body?.detail;
  if (typeof detail === "string" && detail) return { message: detail, field: null };
  if (Array.isArray(detail) && detail.length) {
    const first = detail[0];
    const field = first.field ?? (Array.isArray(first.loc) ? first.loc.at(-1) : null);
    const message = detail
      .map((item) => String(item.msg ?? "is not valid").replace(/^Value error, /, ""))
      .join(" ");
    return { message: sentence(message), field: typeof field === "string" ? field : null };
  }
  return { message: `The bank answered with an error (${status}). Please try again.`, field: null };
}

function sentence(text) {
  const trimmed = String(text).trim();
  return /[.!?…]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

async function api(method, path, body, headers = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Accept: "application/json", ...(body === undefined ? {} : { "Content-Type": "application/json" }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("Can't reach the bank right now. Check the connection and try again.");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const { message, field } = describeError(data, response.status);
    throw new ApiError(message, { status: response.status, field });
  }
  return data;
}

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

let socket = null;
let retryDelay = RETRY_FIRST_MS;
let retryTimer = null;
let replaying = true; // true until "ready": the backlog is not announced
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
  } catch {
    setConnection("reconnecting");
    scheduleRetry(start);
    return;
  }
  render();
  connect();
}

function scheduleRetry(action) {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(action, retryDelay);
  retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
}

function connect() {
  clearTimeout(retryTimer);
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
  ws.addEventListener("close", () => {
    if (socket !== ws) return;
    socket = null;
    failRequests();
    setConnection("reconnecting");
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
  } catch {
    scheduleRetry(reconnect);
    return;
  }
  if (state.position < store.position) {
    ui.watches.clear();
    applyState(state);
    render();
  }
  connect();
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
      const request = requests.get(message.request_id);
      if (!request) return;
      requests.delete(message.request_id);
      clearTimeout(request.timer);
      if (message.type === "ack") request.resolve(message.transaction_id);
      else request.reject(new ApiError(sentence(message.error ?? "The bank refused the request"), { field: message.field ?? null }));
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
  for (const [id, request] of requests) {
    clearTimeout(request.timer);
    request.reject(
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
    showError(page.openError, page.openName, "Enter the account holder's name.");
    page.openName.focus();
    return;
  }
  showError(page.openError, page.openName, "");
  setBusy(page.openForm, true);
  try {
    const opened = await api("POST", "/api/accounts", { name });
    const announced = store.accounts.has(opened.id); // the feed was quicker
    const account = putAccount(opened);
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

async function submitMoney(form, action) {
  const account = store.accounts.get(ui.selectedId);
  if (!account) return;
  const input = form.elements.amount;
  const amountError = byTestId(`${action}-error`);
  const targetError = byTestId("transfer-target-error");
  clearErrors(form);
  forgetOutcome(action);
  const amount = parseAmount(input.value);
  let firstBad = null;
  if (action === "transfer" && !page.transferTarget.value) {
    showError(targetError, page.transferTarget, "Choose the account to transfer to.");
    firstBad = page.transferTarget;
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
        : { debit_account_id: account.id, credit_account_id: page.transferTarget.value, amount: amount.value };
  setBusy(form, true);
  try {
    const transactionId = await sendMoneyCommand(MONEY_ACTIONS[action].type, body);
    if (ui.selectedId === account.id) {
      ui.watches.set(action, { transactionId, kind: MONEY_ACTIONS[action].kind, cents: amount.cents });
      input.value = "";
    }
  } catch (error) {
    const onTarget = action === "transfer" && /credit_account_id/.test(error.field ?? "");
    showError(onTarget ? targetError : amountError, onTarget ? page.transferTarget : input, error.message);
  } finally {
    setBusy(form, false);
    render();
  }
}

async function submitOverdraft(form) {
  const account = store.accounts.get(ui.selectedId);
  if (!account) return;
  const input = form.elements.overdraft_limit;
  const error = byTestId("overdraft-error");
  clearErrors(form);
  forgetOutcome("overdraft");
  const limit = parseAmount(input.value, { allowZero: true });
  if (!limit.ok) {
    showError(error, input, limit.error);
    input.focus();
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

page.closeButton.addEventListener("click", () => {
  ui.confirmingClose = true;
  showError(page.closeError, null, "");
  renderNow();
  page.closeCancel.focus();
});

page.closeCancel.addEventListener("click", () => {
  ui.confirmingClose = false;
  renderNow();
  page.closeButton.focus();
});

page.closeConfirm.addEventListener("click", async () => {
  const account = store.accounts.get(ui.selectedId);
  if (!account) return;
  page.closeConfirm.disabled = true;
  try {
    // {}: every write is JSON, so that no cross-site form can send one.
    putAccount(await api("POST", `/api/accounts/${encodeURIComponent(account.id)}/close`, {}));
    ui.confirmingClose = false;
  } catch (error) {
    showError(page.closeError, null, error.message);
  } finally {
    page.closeConfirm.disabled = false;
    render();
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
  if (socket) return;
  retryDelay = RETRY_FIRST_MS;
  if (store.loaded) reconnect();
  else start();
});

render();
start();

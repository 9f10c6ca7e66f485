// An account's statement in a dialog: every transaction with its date, time and
// zone, counterparty, amount, the balance after it and who made it; newest first,
// a page at a time ("Load older" follows the server's cursor), between two dates,
// and the same rows as CSV.

import { api, fullTime } from "./api.js";
import { formatCents, toCents } from "./money.js";

const PAGE_SIZE = 50;
const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

const parts = {
  dialog: byTestId("statement"),
  title: byTestId("statement-title"),
  number: byTestId("statement-number"),
  close: byTestId("statement-close"),
  events: byTestId("statement-events"),
  filter: byTestId("statement-filter"),
  from: byTestId("statement-from"),
  to: byTestId("statement-to"),
  reset: byTestId("statement-reset"),
  csv: byTestId("statement-csv"),
  error: byTestId("statement-error"),
  rows: byTestId("statement-rows"),
  table: byTestId("statement-table"),
  empty: byTestId("statement-empty"),
  loading: byTestId("statement-loading"),
  count: byTestId("statement-count"),
  more: byTestId("statement-more"),
  template: document.getElementById("statement-row-template"),
};

const KINDS = { deposit: "Deposit", withdrawal: "Withdrawal", transfer: "Transfer", refund: "Refund" };

const current = {
  account: null,
  viewer: null,
  cursor: null,
  shown: 0,
  query: 0, // a newer query makes the answers of older ones stale
};

/** Local midnight of a yyyy-mm-dd as an ISO time; with `after`, of the day after. */
function dayStart(text, { after = false } = {}) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text ?? "");
  if (!match) return null;
  const day = new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]) + (after ? 1 : 0));
  return day.toISOString();
}

/** The range the filter asks for, as the API's from/to (the "to" day included). */
function range() {
  const params = new URLSearchParams();
  const from = dayStart(parts.from.value);
  const to = dayStart(parts.to.value, { after: true });
  if (from) params.set("from", from);
  if (to) params.set("to", to);
  return params;
}

function counterpartyLabel(entry) {
  const other = entry.counterparty;
  if (!other) return null;
  const name = other.name || `account ${String(other.id).slice(0, 8)}`;
  const owner = other.owner?.username;
  return owner && owner !== current.viewer.username ? `${name} (${owner})` : name;
}

function describe(entry) {
  const kind = KINDS[entry.kind] ?? entry.kind;
  const other = counterpartyLabel(entry);
  if (!other) return kind;
  return toCents(entry.amount) < 0n ? `${kind} to ${other}` : `${kind} from ${other}`;
}

function row(entry) {
  const item = parts.template.content.firstElementChild.cloneNode(true);
  item.dataset.seq = entry.seq;
  item.dataset.transactionId = entry.transaction_id;
  const time = byTestId("entry-time", item);
  time.dateTime = entry.at;
  time.textContent = fullTime(entry.at);
  byTestId("entry-description", item).textContent = describe(entry);
  const journey = byTestId("entry-journey", item);
  journey.href = `/explorer/transactions/${encodeURIComponent(entry.transaction_id)}`;
  if (entry.kind === "refund") {
    // A refund has an id of its own; its journey is its transfer's, linked once
    // the transfer's line is shown (refundJourneys).
    item.dataset.kind = "refund";
    item.dataset.counterparty = entry.counterparty?.id ?? "";
    item.dataset.amount = entry.amount;
    journey.hidden = true;
  } else if (entry.kind === "transfer") {
    item.dataset.kind = "transfer";
    item.dataset.counterparty = entry.counterparty?.id ?? "";
    item.dataset.amount = entry.amount;
  }
  byTestId("entry-by", item).textContent = entry.initiated_by?.username ?? "—";
  const amount = toCents(entry.amount);
  const amountCell = byTestId("entry-amount", item);
  amountCell.textContent = formatCents(amount, { signed: true });
  amountCell.classList.toggle("is-positive", amount > 0n);
  amountCell.classList.toggle("is-negative", amount < 0n);
  const balance = toCents(entry.balance);
  const balanceCell = byTestId("entry-balance", item);
  balanceCell.textContent = formatCents(balance);
  balanceCell.classList.toggle("is-negative", balance < 0n);
  return item;
}

/**
 * Links each refund's line to the journey of the transfer it pays back: the
 * latest older transfer to the same account of the same amount, not yet taken.
 */
function refundJourneys() {
  const rows = [...parts.rows.children]; // newest first
  const taken = new Set();
  rows.forEach((refund, index) => {
    if (refund.dataset.kind !== "refund") return;
    const transfer = rows
      .slice(index + 1)
      .find(
        (other) =>
          other.dataset.kind === "transfer" &&
          !taken.has(other) &&
          other.dataset.counterparty === refund.dataset.counterparty &&
          toCents(other.dataset.amount) === -toCents(refund.dataset.amount),
      );
    if (!transfer) return;
    taken.add(transfer);
    const link = byTestId("entry-journey", refund);
    link.setAttribute("href", byTestId("entry-journey", transfer).getAttribute("href"));
    link.textContent = "Journey of the transfer →";
    link.hidden = false;
  });
}

function showError(message) {
  parts.error.textContent = message ?? "";
  parts.error.hidden = !message;
}

function renderFoot() {
  parts.more.hidden = !current.cursor;
  parts.empty.hidden = current.shown > 0;
  parts.table.hidden = current.shown === 0;
  parts.count.textContent =
    current.shown === 0
      ? ""
      : `${current.shown} ${current.shown === 1 ? "transaction" : "transactions"} shown` +
        (current.cursor ? ", newest first" : ", all of them");
}

async function load({ first }) {
  const account = current.account;
  const query = first ? ++current.query : current.query;
  const params = range();
  params.set("limit", String(PAGE_SIZE));
  if (!first && current.cursor) params.set("cursor", current.cursor);
  parts.loading.hidden = false;
  parts.more.disabled = true;
  showError("");
  try {
    const page = await api("GET", `/api/accounts/${encodeURIComponent(account.id)}/statement?${params}`);
    if (query !== current.query || account !== current.account) return;
    if (first) {
      parts.rows.replaceChildren();
      current.shown = 0;
    }
    parts.rows.append(...page.entries.map(row));
    refundJourneys();
    current.shown += page.entries.length;
    current.cursor = page.next_cursor ?? null;
  } catch (error) {
    if (query === current.query) showError(error.message);
  } finally {
    if (query === current.query) {
      parts.loading.hidden = true;
      parts.more.disabled = false;
      renderFoot();
    }
  }
}

function updateCsvLink() {
  const params = range();
  const query = params.toString();
  parts.csv.href = `/api/accounts/${encodeURIComponent(current.account.id)}/statement.csv${query ? `?${query}` : ""}`;
  const name = (current.account.name || "account").replace(/[^A-Za-z0-9._-]+/g, "-");
  parts.csv.download = `statement-${name}-${current.account.id.slice(0, 8)}.csv`;
}

function apply() {
  if (parts.from.value && parts.to.value && parts.from.value > parts.to.value) {
    showError("The start date must be on or before the end date.");
    parts.from.setAttribute("aria-invalid", "true");
    return;
  }
  parts.from.removeAttribute("aria-invalid");
  updateCsvLink();
  load({ first: true });
}

/** Opens the statement of an account for a viewer ({ id, username, role }). */
export function openStatement(account, viewer, label) {
  current.account = account;
  current.viewer = viewer;
  current.cursor = null;
  parts.title.textContent = label;
  parts.number.textContent = `Account no. ${account.id}` + (viewer.role === "staff" && account.owner ? ` · ${account.owner.username}` : "");
  parts.from.value = "";
  parts.to.value = "";
  parts.rows.replaceChildren();
  current.shown = 0;
  parts.table.hidden = true;
  parts.empty.hidden = true;
  parts.count.textContent = "";
  parts.more.hidden = true;
  updateCsvLink();
  parts.events.href = `/explorer/accounts/${encodeURIComponent(account.id)}`;
  if (!parts.dialog.open) parts.dialog.showModal();
  load({ first: true });
}

parts.filter.addEventListener("submit", (event) => {
  event.preventDefault();
  apply();
});
parts.reset.addEventListener("click", () => {
  parts.from.value = "";
  parts.to.value = "";
  apply();
});
for (const input of [parts.from, parts.to]) input.addEventListener("change", updateCsvLink);
parts.more.addEventListener("click", () => load({ first: false }));
parts.close.addEventListener("click", () => parts.dialog.close());
// A click on the backdrop (the dialog itself, outside its content) closes it too.
parts.dialog.addEventListener("click", (event) => {
  if (event.target === parts.dialog) parts.dialog.close();
});

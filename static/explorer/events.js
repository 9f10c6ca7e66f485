// An account's stored events, oldest first, and its state at any version: a slider
// and a stepper over the versions, each showing the account as rebuilt by the
// server from the events (GET /api/accounts/{id}?version=N) and the event that
// led to it. Snapshots are listed apart.

import { api, nextLink, request } from "../api.js";
import { formatMoney, toCents } from "../money.js";
import { byTestId, dataDetails, el, errorOf, preciseTime, prettyJson, say } from "./common.js";

const PAGE_SIZE = 500;
const LOADED_AT_ONCE = 5000;
const SLIDER_DELAY_MS = 120;

const accountId = byTestId("events-head").dataset.accountId;
const base = `/api/accounts/${encodeURIComponent(accountId)}`;

const parts = {
  title: byTestId("events-title"),
  number: byTestId("events-number"),
  error: byTestId("events-error"),
  travel: byTestId("time-travel"),
  slider: byTestId("version-slider"),
  label: byTestId("version-label"),
  steps: [...document.querySelectorAll("[data-step]")],
  balance: byTestId("state-balance"),
  limit: byTestId("state-limit"),
  status: byTestId("state-status"),
  eventType: byTestId("state-event-type"),
  eventVersion: byTestId("state-event-version"),
  eventTime: byTestId("state-event-time"),
  eventError: byTestId("state-event-error"),
  eventData: byTestId("state-event-data"),
  events: byTestId("events"),
  list: byTestId("events-list"),
  count: byTestId("events-count"),
  more: byTestId("events-more"),
  basis: byTestId("version-basis"),
  snapshots: byTestId("snapshots"),
  snapshotList: byTestId("snapshots-list"),
  snapshotsEmpty: byTestId("snapshots-empty"),
};

const state = {
  events: [], // as the API gives them, version order
  next: null, // the next page's address
  version: null, // shown
  states: new Map(), // version -> the account at it
  snapshots: [], // { version, ... } in version order
  query: 0,
  timer: null,
};

const TYPE_WORDS = {
  Created: "The account was opened",
  Opened: "The account was opened",
  TransactionAppended: "Money came in or went out",
  OverdraftLimitSet: "The overdraft limit changed",
  Closed: "The account was closed",
  ErrorRecorded: "A transaction was refused",
};

function money(element, text) {
  element.textContent = formatMoney(text);
  element.classList.toggle("is-negative", toCents(text) < 0n);
}

/** A line of the list: version, type, time, what it changed, the data. */
function eventItem(event) {
  const amount = event.type === "TransactionAppended" ? event.data?.amount : null;
  const problem = event.type === "ErrorRecorded" ? errorOf(event.data) : null;
  const transactionId = event.data?.transaction_id;
  const item = el(
    "li",
    { class: "event", testid: "event-row", dataset: { version: event.version, type: event.type } },
    el(
      "button",
      { type: "button", class: "event__pick", "aria-label": `Show version ${event.version}`, testid: "event-pick" },
      el("span", { class: "event__version" }, `v${event.version}`),
    ),
    el(
      "div",
      { class: "event__main" },
      el(
        "p",
        { class: "event__head" },
        el("span", { class: `etype etype--${event.type}`, testid: "event-type" }, event.type),
        amount ? el("span", { class: `event__amount money${toCents(amount) < 0n ? " is-negative" : " is-positive"}` }, formatMoney(amount, { signed: true })) : null,
        el("time", { class: "event__time", datetime: event.timestamp, testid: "event-time" }, preciseTime(event.timestamp)),
        transactionId
          ? el("a", { class: "event__link", href: `/explorer/transactions/${encodeURIComponent(transactionId)}`, testid: "event-journey" }, "Journey →")
          : null,
      ),
      problem ? el("p", { class: "event__error" }, problem) : null,
      dataDetails(event.data),
    ),
  );
  item.querySelector("button").addEventListener("click", () => show(event.version));
  return item;
}

function snapshotItem(snapshot) {
  return el(
    "li",
    { class: "event event--snapshot", testid: "snapshot-row", dataset: { version: snapshot.version } },
    el("span", { class: "event__version" }, `v${snapshot.version}`),
    el(
      "div",
      { class: "event__main" },
      el(
        "p",
        { class: "event__head" },
        el("span", { class: "badge badge--snapshot", testid: "snapshot-badge" }, "Snapshot"),
        el("time", { class: "event__time", datetime: snapshot.timestamp }, preciseTime(snapshot.timestamp)),
      ),
      dataDetails(snapshot.data, { testid: "snapshot-data", label: "State" }),
    ),
  );
}

function lastVersion() {
  return state.events.at(-1)?.version ?? 0;
}

function renderList() {
  parts.list.replaceChildren(...state.events.map(eventItem));
  parts.events.hidden = false;
  parts.more.hidden = !state.next;
  const n = state.events.length;
  parts.count.textContent = `${n} ${n === 1 ? "event" : "events"}${state.next ? " so far" : ""}, oldest first`;
  parts.slider.max = String(Math.max(1, lastVersion()));
  parts.slider.min = String(state.events[0]?.version ?? 1);
  parts.travel.hidden = n === 0;
  markSelected();
  markSnapshots();
}

function markSnapshots() {
  const versions = new Set(state.snapshots.map((s) => s.version));
  for (const item of parts.list.children) {
    const has = versions.has(Number(item.dataset.version));
    item.classList.toggle("has-snapshot", has);
    const head = item.querySelector(".event__head");
    if (has && !head.querySelector(".badge--snapshot")) {
      head.append(el("span", { class: "badge badge--snapshot", title: "A snapshot of the state at this version is stored too" }, "Snapshot here"));
    }
  }
}

function markSelected() {
  for (const item of parts.list.children) {
    const selected = Number(item.dataset.version) === state.version;
    item.classList.toggle("is-selected", selected);
    item.querySelector("button")?.setAttribute("aria-pressed", String(selected));
  }
}

/** Shows the account at a version: the slider, the list, then the state (when it comes). */
function show(version, { scroll = false } = {}) {
  const last = lastVersion();
  const first = state.events[0]?.version ?? 1;
  const chosen = Math.min(Math.max(Number(version) || last, first), last);
  state.version = chosen;
  parts.slider.value = String(chosen);
  parts.label.textContent = `Version ${chosen} of ${last}${state.next ? "+" : ""}`;
  parts.steps.forEach((button) => {
    const back = button.dataset.step === "first" || button.dataset.step === "previous";
    button.disabled = back ? chosen <= first : chosen >= last;
  });
  markSelected();
  if (scroll) scrollListTo(parts.list.querySelector(".is-selected"));
  showBasis(chosen);
  const url = new URL(location.href);
  url.searchParams.set("version", String(chosen));
  history.replaceState(null, "", url);
  const event = state.events.find((e) => e.version === chosen);
  showEvent(event);
  loadState(chosen);
}

/** Scrolls the list (not the page) to show an item in its middle. */
function scrollListTo(item) {
  if (!item) return;
  const list = parts.list;
  const top = item.offsetTop - list.clientHeight / 2 + item.offsetHeight / 2;
  list.scrollTop = Math.max(0, top);
}

/** What the state at a version is rebuilt from: the nearest snapshot at or below it, and the events after. */
function showBasis(version) {
  const snapshot = state.snapshots.filter((s) => s.version <= version).at(-1);
  const after = version - (snapshot?.version ?? 0);
  const events = `${after} ${after === 1 ? "event" : "events"}`;
  parts.basis.textContent = snapshot
    ? after
      ? `Rebuilt from the snapshot at version ${snapshot.version} and the ${events} after it.`
      : `Rebuilt from the snapshot at version ${snapshot.version}.`
    : `Rebuilt from ${events}${state.snapshots.length ? ", no snapshot below it" : ""}.`;
}

function showEvent(event) {
  parts.eventType.textContent = event?.type ?? "";
  parts.eventType.className = `etype etype--${event?.type ?? ""}`;
  parts.eventVersion.textContent = event ? `version ${event.version} · ${TYPE_WORDS[event.type] ?? ""}` : "";
  parts.eventTime.textContent = event ? preciseTime(event.timestamp) : "";
  say(parts.eventError, event?.type === "ErrorRecorded" ? errorOf(event.data) : "");
  parts.eventData.replaceChildren(event ? prettyJson(event.data, { testid: "state-event-json" }) : "");
}

async function loadState(version) {
  const query = ++state.query;
  let account = state.states.get(version);
  if (!account) {
    parts.travel.dataset.loading = "true";
    try {
      account = await api("GET", `${base}?version=${version}`);
    } catch (error) {
      if (query === state.query) say(parts.error, `Version ${version}: ${error.message}`);
      return;
    } finally {
      if (query === state.query) delete parts.travel.dataset.loading;
    }
    state.states.set(version, account);
  }
  if (query !== state.query) return;
  say(parts.error, "");
  money(parts.balance, account.balance);
  money(parts.limit, account.overdraft_limit);
  parts.status.textContent = account.is_closed ? "Closed" : "Open";
  parts.travel.dataset.version = String(version);
  parts.travel.dataset.shownVersion = String(account.version ?? version);
}

async function loadEvents(path, { upTo = LOADED_AT_ONCE } = {}) {
  let address = path;
  let loaded = 0;
  while (address && loaded < upTo) {
    const { data, response } = await request("GET", address);
    state.events.push(...data);
    loaded += data.length;
    address = nextLink(response);
  }
  state.next = address;
}

async function loadSnapshots() {
  try {
    const snapshots = await api("GET", `${base}/snapshots`);
    state.snapshots = snapshots;
    markSnapshots();
    if (state.version) showBasis(state.version);
    parts.snapshotList.replaceChildren(...snapshots.map(snapshotItem));
    parts.snapshotsEmpty.hidden = snapshots.length > 0;
    parts.snapshots.hidden = false;
  } catch {
    parts.snapshots.hidden = true;
  }
}

async function start() {
  try {
    const account = await api("GET", base);
    parts.title.textContent = account.name ? `Events of ${account.name}` : "Events of an account";
    parts.number.textContent = `Account no. ${account.id}${account.owner ? ` · ${account.owner.username}` : ""}`;
    await loadEvents(`${base}/events?limit=${PAGE_SIZE}`);
  } catch (error) {
    say(parts.error, error.status === 404 ? "No such account, or not one you may see." : error.message);
    return;
  }
  renderList();
  const asked = Number(new URL(location.href).searchParams.get("version"));
  show(asked || lastVersion(), { scroll: Boolean(asked) });
  loadSnapshots();
}

parts.slider.addEventListener("input", () => {
  clearTimeout(state.timer);
  const version = Number(parts.slider.value);
  state.timer = setTimeout(() => show(version), SLIDER_DELAY_MS);
});
for (const button of parts.steps) {
  button.addEventListener("click", () => {
    const first = state.events[0]?.version ?? 1;
    const step = button.dataset.step;
    const target =
      step === "first" ? first : step === "last" ? lastVersion() : state.version + (step === "next" ? 1 : -1);
    show(target, { scroll: true });
  });
}
parts.more.addEventListener("click", async () => {
  parts.more.disabled = true;
  try {
    await loadEvents(state.next);
    renderList();
    show(state.version);
  } catch (error) {
    say(parts.error, error.message);
  } finally {
    parts.more.disabled = false;
  }
});

start();

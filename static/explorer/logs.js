// An application's notification log, a page at a time (the next page from the
// Link header), filtered by event type and aggregate id, each event pretty-printed;
// "Tail live" polls for the ids after the last one shown.

import { api, nextLink, request } from "../api.js";
import { byTestId, dataDetails, el, preciseTime, say, shortId, whileVisible } from "./common.js";

const TAIL_MS = 1000;
const MAX_SHOWN = 500;
const APPLICATIONS = ["Commands", "Sagas", "Accounts", "Interface"];

const parts = {
  form: byTestId("log-filter"),
  app: byTestId("log-app"),
  type: byTestId("log-type"),
  originator: byTestId("log-originator"),
  after: byTestId("log-after"),
  limit: byTestId("log-limit"),
  tail: byTestId("log-tail"),
  error: byTestId("log-error"),
  heading: byTestId("log-heading"),
  count: byTestId("log-count"),
  list: byTestId("log-list"),
  empty: byTestId("log-empty"),
  first: byTestId("log-first"),
  next: byTestId("log-next"),
  previous: byTestId("log-previous"),
};

const state = { next: null, pages: [], lastId: 0, shown: 0, query: 0, stopTail: null };

function filters() {
  const params = new URLSearchParams();
  const type = parts.type.value.trim();
  const originator = parts.originator.value.trim().toLowerCase();
  if (type) params.set("type", type);
  if (originator) params.set("originator_id", originator);
  params.set("limit", parts.limit.value);
  return params;
}

function base() {
  return `/api/applications/${encodeURIComponent(parts.app.value)}/notifications`;
}

function remember() {
  const url = new URL(location.href);
  url.search = "";
  url.searchParams.set("app", parts.app.value);
  for (const [key, value] of filters()) url.searchParams.set(key, value);
  if (parts.after.value.trim()) url.searchParams.set("after", parts.after.value.trim());
  history.replaceState(null, "", url);
}

function item(notification) {
  const accountLike = parts.app.value === "Accounts" && /(^|\.)BankAccount\./.test(notification.topic ?? "");
  return el(
    "li",
    { class: "log__item", testid: "log-entry", dataset: { id: notification.id, type: notification.type, originator: notification.originator_id } },
    el("span", { class: "log__id", testid: "log-entry-id" }, `#${notification.id}`),
    el(
      "div",
      { class: "log__main" },
      el(
        "p",
        { class: "log__head" },
        el("span", { class: `etype etype--${notification.type}`, testid: "log-entry-type" }, notification.type),
        el(
          "button",
          { type: "button", class: "log__originator", title: `Only aggregate ${notification.originator_id}`, testid: "log-entry-originator" },
          `${shortId(notification.originator_id)} v${notification.originator_version}`,
        ),
        el("time", { class: "event__time", datetime: notification.timestamp }, preciseTime(notification.timestamp)),
        accountLike
          ? el("a", { class: "event__link", href: `/explorer/accounts/${notification.originator_id}?version=${notification.originator_version}` }, "Account at this version →")
          : null,
      ),
      el("p", { class: "log__topic" }, notification.topic ?? ""),
      dataDetails(notification.data),
    ),
  );
}

function renderFoot() {
  parts.empty.hidden = state.shown > 0;
  const tailing = parts.tail.getAttribute("aria-pressed") === "true";
  parts.next.hidden = !state.next || tailing;
  parts.previous.hidden = state.pages.length < 2 || tailing;
  parts.heading.textContent = `Notifications of ${parts.app.value}`;
  parts.count.textContent = state.shown ? `${state.shown} shown, ids #${parts.list.firstElementChild?.dataset.id} to #${state.lastId}` : "";
}

function append(notifications) {
  parts.list.append(...notifications.map(item));
  state.shown += notifications.length;
  if (notifications.length) state.lastId = Math.max(state.lastId, ...notifications.map((n) => Number(n.id)));
  while (parts.list.children.length > MAX_SHOWN) {
    parts.list.firstElementChild.remove();
    state.shown -= 1;
  }
}

/** Loads a page in place of the one shown (`fresh`), or after it (tailing). */
async function load(address, { fresh }) {
  const query = fresh ? ++state.query : state.query;
  parts.form.dataset.loading = "true";
  try {
    const { data, response } = await request("GET", address);
    if (query !== state.query) return;
    if (fresh) {
      parts.list.replaceChildren();
      state.shown = 0;
      state.lastId = Number(new URL(address, location.origin).searchParams.get("after") ?? 0) || 0;
    }
    append(data);
    state.next = nextLink(response);
    say(parts.error, "");
  } catch (error) {
    if (query === state.query) say(parts.error, error.message);
  } finally {
    if (query === state.query) delete parts.form.dataset.loading;
    renderFoot();
  }
}

function show() {
  const params = filters();
  const after = parts.after.value.trim();
  if (after && !/^\d+$/.test(after)) {
    say(parts.error, "After id must be a whole number, such as 120.");
    return;
  }
  if (after) params.set("after", after);
  remember();
  state.pages = [`${base()}?${params}`];
  return load(state.pages[0], { fresh: true });
}

async function tailOnce() {
  const params = filters();
  params.set("after", String(state.lastId));
  const query = state.query;
  try {
    const { data } = await request("GET", `${base()}?${params}`);
    if (query !== state.query || parts.tail.getAttribute("aria-pressed") !== "true") return;
    append(data);
    say(parts.error, "");
    if (data.length) parts.list.lastElementChild?.scrollIntoView({ block: "nearest" });
  } catch (error) {
    say(parts.error, error.message);
  }
  renderFoot();
}

async function startTail() {
  parts.tail.setAttribute("aria-pressed", "true");
  document.body.dataset.tailing = "true";
  // Start near the end of the log: its last page, for context.
  try {
    const system = await api("GET", "/api/system");
    const application = (system.applications ?? []).find((a) => String(a.name).startsWith(parts.app.value));
    if (application) {
      parts.after.value = String(Math.max(0, Number(application.max_notification_id) - Number(parts.limit.value)));
      await show();
    }
  } catch {
    // Tailing still works from what is shown.
  }
  state.stopTail = whileVisible(tailOnce, TAIL_MS);
}

function stopTail() {
  parts.tail.setAttribute("aria-pressed", "false");
  delete document.body.dataset.tailing;
  state.stopTail?.();
  state.stopTail = null;
  renderFoot();
}

parts.form.addEventListener("submit", (event) => {
  event.preventDefault();
  show();
});
parts.app.addEventListener("change", () => {
  parts.after.value = "";
  show();
});
parts.limit.addEventListener("change", () => show());
parts.next.addEventListener("click", () => {
  if (!state.next) return;
  state.pages.push(state.next);
  load(state.next, { fresh: true });
});
parts.previous.addEventListener("click", () => {
  if (state.pages.length < 2) return;
  state.pages.pop();
  load(state.pages.at(-1), { fresh: true });
});
parts.first.addEventListener("click", () => {
  parts.after.value = "";
  show();
});
parts.tail.addEventListener("click", () => {
  if (parts.tail.getAttribute("aria-pressed") === "true") stopTail();
  else startTail();
});
parts.list.addEventListener("click", (event) => {
  const button = event.target.closest("[data-testid='log-entry-originator']");
  if (!button) return;
  parts.originator.value = button.closest("li").dataset.originator;
  parts.after.value = "";
  show();
});

// The address's filters, as the journey's and the pipes' links give them.
const asked = new URL(location.href).searchParams;
if (APPLICATIONS.includes(asked.get("app"))) parts.app.value = asked.get("app");
parts.type.value = asked.get("type") ?? "";
parts.originator.value = asked.get("originator_id") ?? "";
parts.after.value = asked.get("after") ?? "";
if (["10", "25", "50", "100"].includes(asked.get("limit"))) parts.limit.value = asked.get("limit");
show();

// What the explorer's pages share: the header's sign-out, building elements safely
// (text only ever through textContent), events' data pretty-printed, and times
// to the millisecond (a journey's steps are milliseconds apart).

import { onSignedOut, request } from "../api.js";
import { forgetDrafts, goToSignIn, onOtherTabs, tellOtherTabs } from "../session.js";

export const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

/** Who is signed in: the server put it on <body>. */
export const me = {
  id: document.body.dataset.userId,
  username: document.body.dataset.username,
  role: document.body.dataset.role,
};
export const isStaff = me.role === "staff";

/**
 * An element: el("a", { class: "x", href: "/", testid: "t" }, "text", child...).
 * Attributes are set one by one (never `style`: the CSP forbids inline styles).
 */
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element with its attributes (and children). */
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  setAttributes(element, attributes);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "testid") element.setAttribute("data-testid", String(value));
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
}

/** The first 8 characters of an id, as people compare them. */
export function shortId(id) {
  return String(id ?? "").slice(0, 8);
}

const timeFormat = new Intl.DateTimeFormat("en", {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  fractionalSecondDigits: 3,
  hour12: false,
  timeZoneName: "short",
});
const clockFormat = new Intl.DateTimeFormat("en", {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  fractionalSecondDigits: 3,
  hour12: false,
});

/** "Dec 1, 2026, 15:04:05.123 UTC". */
export function preciseTime(iso) {
  const when = new Date(iso ?? "");
  return Number.isNaN(when.getTime()) ? String(iso ?? "") : timeFormat.format(when);
}

/** "15:04:05.123". */
export function clockTime(iso) {
  const when = new Date(iso ?? "");
  return Number.isNaN(when.getTime()) ? "" : clockFormat.format(when);
}

/** Microseconds since the epoch of an ISO 8601 time (which may carry them). */
export function micros(iso) {
  const match = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$/.exec(iso ?? "");
  if (!match) return (Date.parse(iso ?? "") || 0) * 1000;
  const fraction = match[2] ? Math.round(Number(`0${match[2]}`) * 1e6) : 0;
  return Date.parse(match[1] + match[3]) * 1000 + fraction;
}

/** "+1.234 ms", "+2.5 s": the time from one step to the next. */
export function elapsed(fromIso, toIso) {
  const us = micros(toIso) - micros(fromIso);
  if (!Number.isFinite(us)) return "";
  if (Math.abs(us) < 1000) return `+${us} µs`;
  if (Math.abs(us) < 1_000_000) return `+${(us / 1000).toFixed(1)} ms`;
  return `+${(us / 1_000_000).toFixed(2)} s`;
}

/**
 * JSON as a tree of spans, coloured by kind (keys, strings, numbers, literals):
 * a <pre> people can read, built with textContent only.
 */
export function prettyJson(value, { testid = "event-data" } = {}) {
  const pre = el("pre", { class: "json", testid });
  write(pre, value, 0);
  return pre;
}

function write(parent, value, depth) {
  const pad = "  ".repeat(depth);
  if (Array.isArray(value)) {
    if (!value.length) return parent.append("[]");
    parent.append("[\n");
    value.forEach((item, index) => {
      parent.append(`${pad}  `);
      write(parent, item, depth + 1);
      parent.append(index < value.length - 1 ? ",\n" : "\n");
    });
    return parent.append(`${pad}]`);
  }
  if (value && typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length) return parent.append("{}");
    parent.append("{\n");
    entries.forEach(([key, item], index) => {
      parent.append(`${pad}  `, el("span", { class: "json__key" }, JSON.stringify(key)), ": ");
      write(parent, item, depth + 1);
      parent.append(index < entries.length - 1 ? ",\n" : "\n");
    });
    return parent.append(`${pad}}`);
  }
  const kind = value === null ? "null" : typeof value;
  const className = { string: "json__string", number: "json__number", boolean: "json__literal", null: "json__literal" }[kind];
  parent.append(el("span", { class: className ?? "" }, JSON.stringify(value) ?? String(value)));
}

/**
 * An event's data folded: a one-line preview that opens to the pretty-printed
 * JSON (`testid` on the <pre>).
 */
export function dataDetails(data, { testid = "event-data", label = "Data" } = {}) {
  const preview = JSON.stringify(data ?? null);
  return el(
    "details",
    { class: "event__details" },
    el("summary", {}, el("span", { class: "event__summary-label" }, label), el("code", { class: "event__preview" }, preview)),
    prettyJson(data, { testid }),
  );
}

/** The error in an event's or a step's data, in words; null if none. */
export function errorOf(data) {
  if (!data || typeof data !== "object") return null;
  const error = data.error ?? data.credit_error ?? null;
  if (error && typeof error === "object") return error.message || error.type || null;
  if (typeof error === "string") return error;
  if (Array.isArray(data.errors) && data.errors.length) return errorOf({ error: data.errors.at(-1) });
  if (typeof data.reason === "string") return data.reason;
  return null;
}

/** A message in a status line ("" hides it). */
export function say(element, text, state = null) {
  element.textContent = text ?? "";
  element.hidden = !text;
  if (state) element.dataset.state = state;
  else delete element.dataset.state;
}

/** Calls back every `ms` while the page is visible (and once at once); returns a stop. */
export function whileVisible(callback, ms) {
  let timer = null;
  let running = false;
  let stopped = false;
  const tick = async () => {
    timer = null;
    if (document.visibilityState !== "visible") return;
    running = true;
    try {
      await callback();
    } finally {
      running = false;
      if (document.visibilityState === "visible" && timer === null && !stopped) timer = setTimeout(tick, ms);
    }
  };
  const onVisibility = () => {
    if (document.visibilityState === "visible" && timer === null && !running && !stopped) tick();
  };
  document.addEventListener("visibilitychange", onVisibility);
  tick();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisibility);
  };
}

// ---------------------------------------------------------------- the header

onSignedOut(() => goToSignIn());
onOtherTabs((event) => {
  if (event === "signed-out") goToSignIn();
});

const signOut = byTestId("sign-out");
signOut?.addEventListener("click", async () => {
  signOut.disabled = true;
  try {
    await request("DELETE", "/api/tokens/current", {});
  } catch (error) {
    if (error.status !== 401) {
      signOut.disabled = false;
      return;
    }
  }
  forgetDrafts();
  tellOtherTabs("signed-out");
  location.replace("/signin");
});

// The system, live: the pipes (Commands -> Sagas -> Accounts -> Sagas, and the
// Interface following Sagas and Accounts) drawn with each application's last
// notification id and each follower's position and lag, read from GET /api/system
// about once a second while the page is visible.

import { api } from "../api.js";
import { byTestId, clockTime, el, say, svg, whileVisible } from "./common.js";
import { laneOf } from "./journey.js";

const POLL_MS = 1000;
const WIDTH = 940;
const HEIGHT = 430;
const BOX_W = 188;
const BOX_H = 92;

/** Where each application's box is drawn (its centre). */
const PLACES = {
  Commands: { x: 110, y: 120 },
  Sagas: { x: 420, y: 120 },
  Accounts: { x: 780, y: 120 },
  Interface: { x: 600, y: 350 },
};
const ROLES = {
  Commands: "records requests",
  Sagas: "runs the sagas",
  Accounts: "applies them",
  Interface: "read model & feed",
};
const LOGS = new Set(["Commands", "Sagas", "Accounts", "Interface"]);

/** The arrows' paths and where their labels go: upstream -> follower. */
const EDGES = {
  "Commands>Sagas": { d: "M204 120 L324 120", label: { x: 266, y: 74 } },
  "Sagas>Accounts": { d: "M514 104 C580 40 620 40 686 104", label: { x: 600, y: 44 } },
  "Accounts>Sagas": { d: "M686 136 C620 200 580 200 514 136", label: { x: 600, y: 196 } },
  "Sagas>Interface": { d: "M440 166 C440 300 470 350 504 350", label: { x: 420, y: 300 } },
  "Accounts>Interface": { d: "M760 166 C760 300 730 350 696 350", label: { x: 780, y: 300 } },
};

const parts = {
  pipes: byTestId("system-pipes"),
  rows: byTestId("system-rows"),
  health: byTestId("system-health"),
  updated: byTestId("system-updated"),
  error: byTestId("system-error"),
};

const seen = new Map(); // "what" -> the last value shown, to flash changes
let diagram = null;

function build() {
  const root = svg("svg", {
    class: "pipes",
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    width: WIDTH,
    height: HEIGHT,
    role: "img",
    "aria-label": "Commands, Sagas, Accounts and the Interface, and who follows whom",
  });
  root.append(
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "pipe-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        svg("path", { d: "M0 0 L10 5 L0 10 z", class: "pipes__head" }),
      ),
    ),
  );
  const edges = {};
  for (const [key, shape] of Object.entries(EDGES)) {
    const [from, to] = key.split(">");
    const position = svg("text", { x: shape.label.x, y: shape.label.y - 2, class: "pipes__position", "data-testid": "edge-position" }, "…");
    const lag = svg("text", { x: shape.label.x, y: shape.label.y + 14, class: "pipes__lag", "data-testid": "edge-lag" }, "");
    const group = svg(
      "g",
      { class: "pipes__edge", "data-testid": "system-edge", "data-from": from, "data-to": to },
      svg("path", { d: shape.d, class: "pipes__line" }),
      svg("path", { d: shape.d, class: "pipes__flow" }),
      svg("path", { d: shape.d, class: "pipes__tip", "marker-end": "url(#pipe-arrow)" }),
      svg("rect", { x: shape.label.x - 56, y: shape.label.y - 17, width: 112, height: 38, rx: 8, class: "pipes__label" }),
      position,
      lag,
    );
    root.append(group);
    edges[key] = { group, position, lag };
  }
  const nodes = {};
  for (const [name, place] of Object.entries(PLACES)) {
    const max = svg("text", { x: place.x, y: place.y + 14, class: "pipes__max", "data-testid": "node-max" }, "…");
    const group = svg(
      "g",
      { class: `pipes__node pipes__node--${name}`, "data-testid": "system-node", "data-app": name },
      svg("rect", { x: place.x - BOX_W / 2, y: place.y - BOX_H / 2, width: BOX_W, height: BOX_H, rx: 14, class: "pipes__box" }),
      svg("text", { x: place.x, y: place.y - 16, class: "pipes__name" }, name),
      max,
      svg("text", { x: place.x, y: place.y + 33, class: "pipes__role" }, ROLES[name]),
    );
    root.append(LOGS.has(name) ? svg("a", { href: `/explorer/logs?app=${name}`, class: "pipes__link" }, group) : group);
    nodes[name] = { group, max };
  }
  parts.pipes.replaceChildren(root);
  return { edges, nodes };
}

/** Sets a text and flashes it if it changed since the last reading. */
function update(element, what, text) {
  const before = seen.get(what);
  element.textContent = text;
  if (before !== undefined && before !== text) {
    element.classList.remove("is-changed");
    // Restarts the animation: reading a layout property flushes the removal.
    void element.getBoundingClientRect();
    element.classList.add("is-changed");
  }
  seen.set(what, text);
}

/** The applications from the followers' statuses, for a server without "applications". */
function fromFollowers(followers) {
  const byName = new Map();
  const of = (name) => {
    if (!byName.has(name)) byName.set(name, { name, max_notification_id: null, upstreams: [] });
    return byName.get(name);
  };
  for (const status of followers) {
    of(status.upstream).max_notification_id = status.latest;
    of(status.follower).upstreams.push({ name: status.upstream, position: status.position, lag: status.lag });
  }
  return [...byName.values()];
}

function render(system) {
  const applications = system.applications ?? fromFollowers(system.followers ?? []);
  diagram ??= build();
  const rows = [];
  for (const application of applications) {
    const name = laneOf(application.name);
    const node = diagram.nodes[name];
    if (node) {
      const max = application.max_notification_id;
      // The Interface records no events of its own: its work is the read model.
      const text = max == null || (name === "Interface" && !max) ? "no events of its own" : `log at #${max}`;
      update(node.max, `max:${name}`, text);
      node.group.dataset.max = String(application.max_notification_id ?? 0);
    }
    const upstreams = application.upstreams ?? [];
    if (!upstreams.length) rows.push(row(name, application, null));
    for (const upstream of upstreams) {
      const from = laneOf(upstream.name);
      const edge = diagram.edges[`${from}>${name}`];
      if (edge) {
        update(edge.position, `pos:${from}>${name}`, `at #${upstream.position ?? 0}`);
        update(edge.lag, `lag:${from}>${name}`, upstream.lag ? `${upstream.lag} behind` : "up to date");
        edge.group.dataset.position = String(upstream.position ?? 0);
        edge.group.dataset.lag = String(upstream.lag ?? 0);
        edge.group.classList.toggle("is-behind", Number(upstream.lag) > 0);
      }
      rows.push(row(name, application, upstream));
    }
  }
  parts.rows.replaceChildren(...rows);
  const healthy = system.healthy !== false;
  parts.health.dataset.state = healthy ? "healthy" : "failing";
  parts.health.textContent = healthy ? "Healthy" : "A follower is failing";
  parts.updated.textContent = `Updated ${clockTime(new Date().toISOString())}`;
  document.body.dataset.polls = String(Number(document.body.dataset.polls ?? 0) + 1);
}

function row(name, application, upstream) {
  const lag = Number(upstream?.lag ?? 0);
  return el(
    "tr",
    { testid: "system-row", dataset: { app: name, upstream: upstream ? laneOf(upstream.name) : "" } },
    el("th", { scope: "row" }, name),
    el("td", { class: "num" }, application.max_notification_id == null ? "—" : `#${application.max_notification_id}`),
    el("td", {}, upstream ? laneOf(upstream.name) : "—"),
    el("td", { class: "num" }, upstream ? `#${upstream.position ?? 0}` : "—"),
    el("td", { class: `num${lag > 0 ? " is-behind" : ""}` }, upstream ? String(lag) : "—"),
    el("td", {}, LOGS.has(name) ? el("a", { href: `/explorer/logs?app=${name}` }, "Read the log") : "—"),
  );
}

whileVisible(async () => {
  try {
    const system = await api("GET", "/api/system");
    say(parts.error, "");
    render(system);
  } catch (error) {
    say(parts.error, error.message);
  }
}, POLL_MS);

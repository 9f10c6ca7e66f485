// A transaction's journey: every stored event of it in every application
// (GET /api/transactions/{id}/timeline) drawn as a swim-lane diagram, one lane per
// application, the steps in time order, arrows following the pipes
// (Commands -> Sagas -> Accounts -> Sagas, and the Interface after them); then the
// steps one by one with their data. A failed step says why; a refund's steps are
// marked as the refund's.

import { clockTime, dataDetails, el, elapsed, errorOf, isStaff, preciseTime, shortId, svg } from "./common.js";

export const LANES = ["Commands", "Sagas", "Accounts", "Interface"];

const LABEL_WIDTH = 128;
const COLUMN = 116;
const NODE_WIDTH = 104;
const NODE_HEIGHT = 54;
const LANE_HEIGHT = 86;
const TOP = 34;
const PAD_RIGHT = 24;

const FAILED_TYPES = new Set(["ErrorRecorded", "Errored", "transaction_failed"]);
const FAILED_AGGREGATES = new Set(["RejectedTransaction", "AbortedTransaction"]);

/** The lane of an application's name ("InterfaceApplication" is the Interface). */
export function laneOf(application) {
  const name = String(application ?? "");
  return name.startsWith("Interface") ? "Interface" : name;
}

/** "failed", "refund" or "" : how a step is marked. */
export function stepMark(step) {
  if (FAILED_TYPES.has(step.type) || FAILED_AGGREGATES.has(step.aggregate) || step.type === "RefundRequested") return "failed";
  if (step.aggregate === "RefundFundsSaga" || step.data?.is_refund === true || /refund/i.test(step.type)) return "refund";
  return "";
}

/** Which step each step came from: the previous one along the pipes. */
export function causes(steps) {
  const from = [];
  let lastProcess = -1; // the latest step of Commands, Sagas or Accounts
  steps.forEach((step, index) => {
    if (laneOf(step.application) === "Interface") {
      from.push(lastProcess >= 0 ? lastProcess : index - 1);
    } else {
      from.push(lastProcess);
      lastProcess = index;
    }
  });
  return from;
}

/** A step's name as the diagram shows it: "TransferFundsSaga.DebitRecorded". */
export function stepName(step) {
  return step.aggregate ? `${step.aggregate}.${step.type}` : step.type;
}

function aggregateText(step, x, y) {
  const text = step.aggregate ?? (step.position != null ? `feed #${step.position}` : "");
  return svg("text", { x, y: y + 14, class: "journey__aggregate", ...squeezed(text, 15, NODE_WIDTH - 14) }, fitted(text, 26));
}

/** A long name drawn narrower, to fit its box (SVG's textLength). */
function squeezed(text, over, width) {
  return text.length > over ? { textLength: width, lengthAdjust: "spacingAndGlyphs" } : {};
}

function fitted(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The swim-lane diagram of a timeline's steps, as an <svg>; `href(index)` gives
 * the address each node links to (null: none).
 */
export function drawJourney(steps, { href = (index) => `#step-${index + 1}`, id = "journey", minWidth = 0 } = {}) {
  const lanes = [...LANES];
  for (const step of steps) {
    const lane = laneOf(step.application);
    if (!lanes.includes(lane)) lanes.push(lane);
  }
  const width = Math.max(LABEL_WIDTH + Math.max(steps.length, 1) * COLUMN + PAD_RIGHT, Math.floor(minWidth));
  const height = TOP + lanes.length * LANE_HEIGHT + 8;
  const laneY = (lane) => TOP + lanes.indexOf(lane) * LANE_HEIGHT;
  const centre = (index) => ({
    x: LABEL_WIDTH + index * COLUMN + COLUMN / 2,
    y: laneY(laneOf(steps[index].application)) + LANE_HEIGHT / 2,
  });
  const marker = `${id}-arrow`;
  const root = svg("svg", {
    class: "journey",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": `The journey: ${steps.length} steps across ${lanes.filter((lane) => steps.some((s) => laneOf(s.application) === lane)).join(", ")}`,
    "data-testid": "journey-diagram",
  });
  root.append(
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: marker, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        svg("path", { d: "M0 0 L10 5 L0 10 z", class: "journey__head" }),
      ),
    ),
  );
  // The lanes, with their names.
  lanes.forEach((lane, index) => {
    const y = laneY(lane);
    root.append(
      svg(
        "g",
        { class: `journey__lane journey__lane--${index % 2 ? "odd" : "even"}`, "data-testid": "journey-lane", "data-lane": lane },
        svg("rect", { x: 0, y, width, height: LANE_HEIGHT, class: "journey__band" }),
        svg("text", { x: 16, y: y + LANE_HEIGHT / 2 - 4, class: "journey__lane-name" }, lane),
        svg("text", { x: 16, y: y + LANE_HEIGHT / 2 + 13, class: "journey__lane-note" }, LANE_NOTES[lane] ?? "application"),
      ),
    );
  });
  // The time axis: each column is a step, in time order.
  steps.forEach((step, index) => {
    const x = LABEL_WIDTH + index * COLUMN + COLUMN / 2;
    root.append(svg("text", { x, y: 20, class: "journey__tick" }, index === 0 ? clockTime(step.timestamp) : elapsed(steps[0].timestamp, step.timestamp)));
  });
  // The arrows, under the nodes.
  const arrows = svg("g", { class: "journey__arrows" });
  causes(steps).forEach((from, index) => {
    if (from < 0) return;
    const a = centre(from);
    const b = centre(index);
    const x2 = b.x - NODE_WIDTH / 2 - 2;
    // Along the lane: edge to edge; to another lane: down (or up) from the step,
    // then across into the next one's side.
    const y1 = a.y + (b.y > a.y ? 1 : -1) * (NODE_HEIGHT / 2);
    const d =
      a.y === b.y
        ? `M${a.x + NODE_WIDTH / 2} ${a.y} L${x2} ${b.y}`
        : `M${a.x} ${y1} C${a.x} ${b.y} ${a.x} ${b.y} ${x2} ${b.y}`;
    const mark = stepMark(steps[index]);
    arrows.append(
      svg("path", {
        d,
        class: `journey__arrow${mark ? ` journey__arrow--${mark}` : ""}${laneOf(steps[index].application) === "Interface" ? " journey__arrow--feed" : ""}`,
        "marker-end": `url(#${marker})`,
        "data-testid": "journey-arrow",
      }),
    );
  });
  root.append(arrows);
  // The steps.
  steps.forEach((step, index) => {
    const { x, y } = centre(index);
    const mark = stepMark(step);
    const name = step.type;
    const node = svg(
      "g",
      {
        class: `journey__node${mark ? ` journey__node--${mark}` : ""}`,
        "data-testid": "journey-node",
        "data-lane": laneOf(step.application),
        "data-type": step.type,
        "data-mark": mark || "ok",
      },
      svg("title", {}, `${index + 1}. ${laneOf(step.application)}: ${stepName(step)} at ${preciseTime(step.timestamp)}${errorOf(step.data) ? ` (${errorOf(step.data)})` : ""}`),
      svg("rect", { x: x - NODE_WIDTH / 2, y: y - NODE_HEIGHT / 2, width: NODE_WIDTH, height: NODE_HEIGHT, rx: 10, class: "journey__box" }),
      svg("circle", { cx: x - NODE_WIDTH / 2 + 2, cy: y - NODE_HEIGHT / 2 + 2, r: 9, class: "journey__number" }),
      svg("text", { x: x - NODE_WIDTH / 2 + 2, y: y - NODE_HEIGHT / 2 + 6, class: "journey__number-text" }, String(index + 1)),
      svg("text", { x, y: y - 3, class: "journey__type", ...squeezed(name, 13, NODE_WIDTH - 14) }, fitted(name, 24)),
      aggregateText(step, x, y),
    );
    const target = href(index);
    root.append(target ? svg("a", { href: target, class: "journey__link" }, node) : node);
  });
  return root;
}

const LANE_NOTES = {
  Commands: "the requests",
  Sagas: "the processes",
  Accounts: "the accounts",
  Interface: "read model, feed",
};

/** What a step means, in a sentence (for the steps' list and the how-it-works page). */
export function explain(step, { withError = true } = {}) {
  const lane = laneOf(step.application);
  const aggregate = step.aggregate ?? "";
  const data = withError ? (step.data ?? {}) : { ...step.data, error: null, credit_error: null, errors: null, reason: null };
  if (lane === "Commands") return `The request was recorded as a ${aggregate || "command"}: the client's answer is its id.`;
  if (lane === "Sagas") {
    if (step.type === "Created" && aggregate === "RefundFundsSaga") return "The credit failed, so a RefundFundsSaga starts to pay the debit back.";
    if (step.type === "Created") return `Sagas turned the command into a ${aggregate || "saga"}, which asks Accounts for the first step.`;
    if (step.type === "DebitRecorded") return "The debit was applied; the saga now asks Accounts for the credit.";
    if (step.type === "RefundRequested") return `The credit failed${errorOf(data) ? ` (${errorOf(data)})` : ""}: the saga asks for a refund.`;
    if (step.type === "Succeeded") return `The ${aggregate || "saga"} succeeded: every step was applied.`;
    if (step.type === "Errored") return `The ${aggregate || "saga"} failed${errorOf(data) ? `: ${errorOf(data)}` : ""}.`;
    if (aggregate === "AbortedTransaction") return `The request could not be carried out${errorOf(data) ? `: ${errorOf(data)}` : ""}.`;
    return `The ${aggregate || "saga"} recorded ${step.type}.`;
  }
  if (lane === "Accounts") {
    if (step.type === "TransactionAppended") {
      const amount = data.amount ? ` ${String(data.amount).startsWith("-") ? "debited" : "credited"} ${String(data.amount).replace(/^-/, "")}` : "";
      const version = step.originator_version != null ? `: version ${step.originator_version}` : "";
      return `The BankAccount${amount}${data.is_refund ? " (a refund)" : ""}${version}.`;
    }
    if (step.type === "ErrorRecorded") return `The BankAccount refused it${errorOf(data) ? `: ${errorOf(data)}` : ""}.`;
    if (aggregate === "RejectedTransaction") return `No such account${errorOf(data) ? `: ${errorOf(data)}` : ""}.`;
    return `The BankAccount recorded ${step.type}.`;
  }
  if (lane === "Interface") return `The read model changed, and its feed told each viewer who may see it (${step.type}).`;
  return `${lane} recorded ${step.type}.`;
}

/** The steps one by one: lane, event, time, position, aggregate, data. */
export function stepsList(steps, { testid = "journey-steps" } = {}) {
  return el(
    "ol",
    { class: "steps", testid },
    steps.map((step, index) => {
      const lane = laneOf(step.application);
      const mark = stepMark(step);
      const problem = mark === "failed" ? errorOf(step.data) : null;
      const accountLink =
        lane === "Accounts" && step.aggregate === "BankAccount" && step.originator_version != null
          ? el(
              "a",
              { href: `/explorer/accounts/${encodeURIComponent(step.originator_id)}?version=${step.originator_version}`, testid: "step-account-link" },
              `account ${shortId(step.originator_id)} at v${step.originator_version}`,
            )
          : null;
      const logName = lane === "Interface" ? null : lane;
      const position =
        step.position == null
          ? null
          : isStaff && logName
            ? el(
                "a",
                { href: `/explorer/logs?app=${encodeURIComponent(logName)}&after=${Math.max(0, Number(step.position) - 1)}&limit=10`, testid: "step-log-link" },
                `#${step.position}`,
              )
            : `#${step.position}`;
      return el(
        "li",
        {
          class: `step step--${lane}${mark ? ` step--${mark}` : ""}`,
          id: `step-${index + 1}`,
          testid: "journey-step",
          dataset: { lane, type: step.type, mark: mark || "ok" },
        },
        el("span", { class: "step__number", "aria-hidden": "true" }, String(index + 1)),
        el(
          "div",
          { class: "step__main" },
          el(
            "p",
            { class: "step__head" },
            el("span", { class: `lane-pill lane-pill--${lane}` }, lane),
            el("strong", { class: "step__name", testid: "step-name" }, stepName(step)),
            mark === "refund" ? el("span", { class: "badge badge--refund" }, "Refund") : null,
            mark === "failed" ? el("span", { class: "badge badge--failed" }, "Failed") : null,
          ),
          el("p", { class: "step__explain" }, explain(step, { withError: false })),
          problem ? el("p", { class: "step__error", testid: "step-error" }, problem) : null,
          el(
            "p",
            { class: "step__meta" },
            el("time", { datetime: step.timestamp }, preciseTime(step.timestamp)),
            index > 0 ? el("span", {}, elapsed(steps[0].timestamp, step.timestamp)) : null,
            position !== null ? el("span", {}, lane === "Interface" ? "feed position " : "notification ", position) : null,
            accountLink ??
              (step.originator_id
                ? el("span", {}, `${step.aggregate ?? "transaction"} ${shortId(step.originator_id)}${step.originator_version != null ? ` v${step.originator_version}` : ""}`)
                : null),
          ),
          step.data ? dataDetails(step.data, { testid: "step-data" }) : null,
        ),
      );
    }),
  );
}

/** The outcome in words: where and why it failed, and the refund's steps. */
export function outcome(steps) {
  const failedAt = steps.findIndex((step) => stepMark(step) === "failed" && laneOf(step.application) !== "Interface");
  const refund = steps.map((step, index) => (stepMark(step) === "refund" ? index + 1 : null)).filter(Boolean);
  const finished = steps.find((step) => laneOf(step.application) === "Sagas" && (step.type === "Succeeded" || step.type === "Errored"));
  if (failedAt < 0) {
    return finished?.type === "Succeeded" ? { state: "succeeded", text: "Succeeded: every step was applied." } : { state: "pending", text: "In progress: not every step has happened yet." };
  }
  const step = steps[failedAt];
  let text = `Failed at step ${failedAt + 1}, in ${laneOf(step.application)} (${stepName(step)})`;
  const why = errorOf(step.data);
  if (why) text += `: ${why}`;
  text += ".";
  if (refund.length) text += ` The debit was paid back by a refund: step${refund.length > 1 ? "s" : ""} ${refund.join(", ")}.`;
  return { state: refund.length ? "refunded" : "failed", text };
}

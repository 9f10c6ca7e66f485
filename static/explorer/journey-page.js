// The journey page of one transaction: its summary, the swim-lane diagram and the
// steps; read again while the transaction is still under way.

import { api } from "../api.js";
import { formatMoney } from "../money.js";
import { byTestId, say } from "./common.js";
import { drawJourney, laneOf, outcome, stepsList } from "./journey.js";

const FOLLOW_MS = 800;
const FOLLOW_TIMES = 15;

const transactionId = byTestId("journey-head").dataset.transactionId;
const parts = {
  title: byTestId("journey-title"),
  id: byTestId("journey-id"),
  error: byTestId("journey-error"),
  outcome: byTestId("journey-outcome"),
  card: byTestId("journey"),
  scroll: byTestId("journey-scroll"),
  stepsCard: byTestId("journey-steps-card"),
  stepsBox: byTestId("journey-steps-box"),
  count: byTestId("journey-count"),
};

const KINDS = { deposit: "Deposit", withdrawal: "Withdrawal", transfer: "Transfer" };

function title(transaction) {
  const kind = KINDS[transaction.kind] ?? "Transaction";
  return `${kind} of ${formatMoney(transaction.amount)}`;
}

let signature = "";

function render(steps) {
  const now = steps.map((step) => `${step.application}:${step.position}:${step.type}`).join("|");
  if (now === signature) return false;
  signature = now;
  parts.card.hidden = false;
  parts.scroll.replaceChildren(drawJourney(steps, { minWidth: parts.scroll.clientWidth }));
  parts.stepsBox.replaceChildren(stepsList(steps));
  const lanes = new Set(steps.map((step) => laneOf(step.application)));
  parts.count.textContent = `${steps.length} ${steps.length === 1 ? "step" : "steps"} in ${lanes.size} ${lanes.size === 1 ? "application" : "applications"}`;
  const { state, text } = outcome(steps);
  say(parts.outcome, text, state);
  parts.card.hidden = false;
  parts.stepsCard.hidden = false;
  document.body.dataset.journey = state;
  return true;
}

async function start() {
  try {
    const transaction = await api("GET", `/api/transactions/${encodeURIComponent(transactionId)}`);
    parts.title.textContent = title(transaction);
  } catch {
    // A refund's own id has no transaction of its own: its timeline still shows.
  }
  for (let round = 0; round < FOLLOW_TIMES; round += 1) {
    let timeline;
    try {
      timeline = await api("GET", `/api/transactions/${encodeURIComponent(transactionId)}/timeline`);
    } catch (error) {
      say(parts.error, error.status === 404 ? "No such transaction, or not one you may see." : error.message);
      return;
    }
    const steps = timeline.steps ?? [];
    const changed = render(steps);
    const finished = outcome(steps).state !== "pending";
    if (finished && !changed) break;
    await new Promise((resolve) => setTimeout(resolve, FOLLOW_MS));
  }
  document.body.dataset.journeyLoaded = "true";
}

start();

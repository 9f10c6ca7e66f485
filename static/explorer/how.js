// "How this bank works": the latest of the user's transactions, step by step from
// its timeline, linking into its journey and its account's events.

import { api } from "../api.js";
import { formatMoney } from "../money.js";
import { byTestId, el, elapsed, errorOf, me } from "./common.js";
import { explain, laneOf, stepMark, stepName } from "./journey.js";

const parts = {
  summary: byTestId("how-example-summary"),
  steps: byTestId("how-steps"),
  links: byTestId("how-links"),
  journey: byTestId("how-journey-link"),
  account: byTestId("how-account-link"),
  empty: byTestId("how-empty"),
};

const KINDS = { deposit: "deposit", withdrawal: "withdrawal", transfer: "transfer" };

async function start() {
  let transaction;
  try {
    // The latest one this user made (staff see everyone's: theirs first, if recent).
    const recent = await api("GET", "/api/transactions?limit=20");
    transaction = recent.find((t) => t.initiated_by?.id === me.id) ?? recent[0];
  } catch (error) {
    parts.summary.textContent = error.message;
    return;
  }
  if (!transaction) {
    parts.summary.textContent = "";
    parts.empty.hidden = false;
    return;
  }
  const journey = `/explorer/transactions/${encodeURIComponent(transaction.id)}`;
  const { steps } = await api("GET", `${journey.replace("/explorer/", "/api/")}/timeline`);
  const kind = KINDS[transaction.kind] ?? "transaction";
  parts.summary.textContent =
    `A ${kind} of ${formatMoney(transaction.amount)}, ${transaction.status}` +
    `${transaction.error ? ` (${transaction.error})` : ""}: ${steps.length} stored events in ` +
    `${new Set(steps.map((s) => laneOf(s.application))).size} applications.`;
  parts.steps.replaceChildren(
    ...steps.map((step, index) => {
      const mark = stepMark(step);
      const why = mark === "failed" ? errorOf(step.data) : null;
      return el(
        "li",
        { class: `how__step${mark ? ` how__step--${mark}` : ""}`, testid: "how-step", dataset: { lane: laneOf(step.application), type: step.type } },
        el("span", { class: `lane-pill lane-pill--${laneOf(step.application)}` }, laneOf(step.application)),
        el(
          "span",
          { class: "how__step-text" },
          el("a", { href: `${journey}#step-${index + 1}`, class: "how__step-name" }, stepName(step)),
          " ",
          explain(step),
          why && !explain(step).includes(why) ? ` ${why}.` : "",
        ),
        el("span", { class: "how__step-time" }, index ? elapsed(steps[0].timestamp, step.timestamp) : "start"),
      );
    }),
  );
  parts.journey.href = journey;
  const accountId = transaction.debit_account_id ?? transaction.credit_account_id;
  if (accountId) {
    parts.account.href = `/explorer/accounts/${encodeURIComponent(accountId)}`;
    parts.account.hidden = false;
  }
  parts.links.hidden = false;
  document.body.dataset.example = "ready";
}

start();

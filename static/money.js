// Sums of money, exactly: the bank sends decimal strings ("-1234.50"); the page keeps
// them as whole cents in BigInts, so no float ever rounds a balance.

const CENTS_PER_UNIT = 100n;

/** The largest amount the bank accepts for one deposit, withdrawal, transfer or limit. */
export const MAX_CENTS = 1_000_000_000_000n * CENTS_PER_UNIT;

const LOCALE = document.documentElement.lang || "en";
const wholeUnits = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 0 });
const DECIMAL_SEPARATOR =
  new Intl.NumberFormat(LOCALE).formatToParts(1.5).find((part) => part.type === "decimal")
    ?.value ?? ".";
const MINUS = "\u2212";

/** Cents from one of the bank's decimal strings; 0n for anything unreadable. */
export function toCents(text) {
  const match = /^\s*([+-])?(\d*)(?:\.(\d*))?\s*$/.exec(String(text ?? ""));
  if (!match || !(match[2] || match[3])) return 0n;
  const [, sign, whole, fraction = ""] = match;
  const cents = BigInt(whole || "0") * CENTS_PER_UNIT + BigInt((fraction + "00").slice(0, 2));
  return sign === "-" ? -cents : cents;
}

/**
 * Cents as people read them: "12,345.60", "−5.00" (a real minus sign), or "+5.00"
 * with { signed: true }. Grouping follows the page's language.
 */
export function formatCents(cents, { signed = false } = {}) {
  const negative = cents < 0n;
  const size = negative ? -cents : cents;
  const whole = wholeUnits.format(size / CENTS_PER_UNIT);
  const fraction = String(size % CENTS_PER_UNIT).padStart(2, "0");
  const sign = negative ? MINUS : signed && size > 0n ? "+" : "";
  return `${sign}${whole}${DECIMAL_SEPARATOR}${fraction}`;
}

/** A decimal string for the bank: "1234.50". */
export function centsToDecimal(cents) {
  const negative = cents < 0n;
  const size = negative ? -cents : cents;
  const fraction = String(size % CENTS_PER_UNIT).padStart(2, "0");
  return `${negative ? "-" : ""}${size / CENTS_PER_UNIT}.${fraction}`;
}

/** The bank's decimal string formatted for reading. */
export function formatMoney(text, options) {
  return formatCents(toCents(text), options);
}

/**
 * Checks what someone typed as an amount: a number, at most 2 decimal places, at most
 * 1,000,000,000,000.00, and above zero (or zero too, with { allowZero: true }).
 * Returns { ok: true, cents, value: "12.50" } or { ok: false, error: "in words" }.
 */
export function parseAmount(input, { allowZero = false } = {}) {
  let text = String(input ?? "").trim();
  if (!text) return { ok: false, error: "Enter an amount." };
  // Accept "1,234.50" as typed in English, and "12,50" from a phone's decimal keypad
  // where the comma is the decimal separator (one comma, one or two digits after it).
  if (/^\d{1,3}(,\d{3})+(\.\d*)?$/.test(text)) text = text.replaceAll(",", "");
  else if (/^\d*,\d{1,2}$/.test(text)) text = text.replace(",", ".");
  if (/^[-\u2212]/.test(text)) {
    return { ok: false, error: allowZero ? "The limit can't be negative." : "Enter an amount greater than zero." };
  }
  const match = /^\+?(\d*)(?:\.(\d*))?$/.exec(text);
  if (!match || !(match[1] || match[2])) {
    return { ok: false, error: "Enter a number, like 12.50." };
  }
  const [, whole = "", fraction = ""] = match;
  if (fraction.length > 2) return { ok: false, error: "Use at most 2 decimal places." };
  if (whole.replace(/^0+/, "").length > 13) return tooLarge();
  const cents = BigInt(whole || "0") * CENTS_PER_UNIT + BigInt(fraction.padEnd(2, "0"));
  if (cents > MAX_CENTS) return tooLarge();
  if (cents === 0n && !allowZero) return { ok: false, error: "Enter an amount greater than zero." };
  return { ok: true, cents, value: centsToDecimal(cents) };
}

function tooLarge() {
  return { ok: false, error: `The most is ${formatCents(MAX_CENTS)}.` };
}

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

// The bank's one form of money (bankaccounts/validation.py), checked the same way
// and refused in the same words: plain ASCII digits, optionally a point and 1 or 2
// digits, nothing else. The order of the checks is the bank's too.
const PLAIN = /^[0-9]+(?:\.[0-9]{1,2})?$/;
const SIGNED = /^[-+][0-9]+(?:\.[0-9]+)?$/;
const TOO_PRECISE = /^[0-9]+\.[0-9]{3,}$/;
const SPACE = /[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]/;
const OTHER_DIGIT = /(?![0-9])\p{Nd}/u;
const MAX_WHOLE_DIGITS = 13;
const MAX_TEXT = "1,000,000,000,000.00";
const PLAIN_FORM = "must be a plain decimal number such as 12.34: digits, optionally a point and 1 or 2 digits";

/**
 * Checks what someone typed as an amount, by the bank's rule and in its words:
 * above zero, or zero too with { allowZero: true } (an overdraft limit).
 * Returns { ok: true, cents, value: "12.50" } or { ok: false, error: "in words." }.
 */
export function parseAmount(input, { allowZero = false, label = allowZero ? "Overdraft limit" : "Amount" } = {}) {
  const text = String(input ?? "");
  const refuse = (words) => ({ ok: false, error: `${label} ${words}.` });
  const negative = allowZero ? "must not be negative" : "must be greater than zero";
  if (!PLAIN.test(text)) {
    if (!text) return refuse("is missing: write digits, such as 12.34");
    if (SIGNED.test(text)) return refuse(text[0] === "-" ? negative : "must be written without a sign, such as 12.34");
    if (SPACE.test(text)) return refuse("must not contain spaces");
    if (OTHER_DIGIT.test(text)) return refuse("must be written with the digits 0 to 9");
    if (TOO_PRECISE.test(text)) return refuse("must have at most 2 decimal places");
    return refuse(PLAIN_FORM);
  }
  const [whole, fraction = ""] = text.split(".");
  const digits = whole.replace(/^0+/, "");
  if (digits.length > MAX_WHOLE_DIGITS) return refuse(`must be at most ${MAX_TEXT}`);
  const cents = BigInt(digits || "0") * CENTS_PER_UNIT + BigInt(fraction.padEnd(2, "0"));
  if (cents > MAX_CENTS) return refuse(`must be at most ${MAX_TEXT}`);
  if (cents === 0n && !allowZero) return refuse(negative);
  return { ok: true, cents, value: centsToDecimal(cents) };
}

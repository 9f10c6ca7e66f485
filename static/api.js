// Talking to the bank's REST API: JSON in and out, errors in words, and a session
// that has ended (401) handed to whoever set `onSignedOut`.

export class ApiError extends Error {
  constructor(message, { status = 0, field = null } = {}) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

let signedOut = () => {};

/** Who to tell when an answer is 401: the session has expired or was revoked. */
export function onSignedOut(callback) {
  signedOut = callback;
}

export function sentence(text) {
  const trimmed = String(text).trim();
  return /[.!?…]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

/** FastAPI's errors in words: {"detail": "..."} or {"detail": [{"loc", "msg"}...]}. */
export function describeError(body, status) {
  const detail = body?.detail;
  if (typeof detail === "string" && detail) return { message: sentence(detail), field: null };
  if (Array.isArray(detail) && detail.length) {
    const first = detail[0];
    const field = first.field ?? (Array.isArray(first.loc) ? first.loc.at(-1) : null);
    const message = detail
      .map((item) => String(item.msg ?? "is not valid").replace(/^Value error, /, ""))
      .join(" ");
    return { message: sentence(message), field: typeof field === "string" ? field : null };
  }
  return { message: `The bank answered with an error (${status}). Please try again.`, field: null };
}

/**
 * Calls the API; resolves to { data, response } for a success, throws ApiError
 * otherwise. Every write carries a JSON body ({} if nothing else): the server takes
 * no other kind, so no cross-site form can send one.
 */
export async function request(method, path, body, headers = {}) {
  const writes = method !== "GET" && method !== "HEAD";
  let response;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", ...(writes ? { "Content-Type": "application/json" } : {}), ...headers },
      body: writes ? JSON.stringify(body ?? {}) : undefined,
    });
  } catch {
    throw new ApiError("Can't reach the bank right now. Check the connection and try again.");
  }
  let data = null;
  try {
    data = response.status === 204 ? null : await response.json();
  } catch {
    data = null;
  }
  if (response.status === 401) {
    signedOut();
    throw new ApiError("Your session has ended. Sign in again to carry on.", { status: 401 });
  }
  if (!response.ok) {
    const { message, field } = describeError(data, response.status);
    throw new ApiError(message, { status: response.status, field });
  }
  return { data, response };
}

/** Calls the API; resolves to the JSON answer. */
export async function api(method, path, body, headers) {
  return (await request(method, path, body, headers)).data;
}

/** The path and query of a Link header's rel="next" address (same site only), or null. */
export function nextLink(response) {
  const header = response.headers.get("Link") ?? "";
  for (const part of header.split(",")) {
    const match = /<([^>]*)>\s*;\s*rel="?next"?/i.exec(part);
    if (!match) continue;
    try {
      const url = new URL(match[1], location.origin);
      return `${url.pathname}${url.search}`;
    } catch {
      return null;
    }
  }
  return null;
}

export function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const fullTimeFormat = new Intl.DateTimeFormat(document.documentElement.lang || "en", {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "numeric",
  minute: "2-digit",
  second: "2-digit",
  timeZoneName: "short",
});

/** "Dec 1, 2026, 3:04:05 PM UTC": date, time and time zone, in this browser's zone. */
export function fullTime(iso) {
  const when = new Date(iso ?? "");
  return Number.isNaN(when.getTime()) ? "" : fullTimeFormat.format(when);
}

/** An account number, as people paste it: trimmed, lower case; null if not one. */
export function accountNumber(text) {
  const value = String(text ?? "").trim().toLowerCase();
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(value) ? value : null;
}

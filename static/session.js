// The browser's session, shared by every tab: the cookie is the server's (HttpOnly),
// this module only keeps the tabs in step. A tab whose session ends (expired,
// revoked, signed out elsewhere) saves what was typed in its forms to its own
// sessionStorage and goes to the sign-in page, which brings it back afterwards.

const DRAFTS_KEY = "bankaccounts.drafts";
const DRAFTS_KEPT_MS = 24 * 60 * 60 * 1000;
const channel = "BroadcastChannel" in window ? new BroadcastChannel("bankaccounts.session") : null;

/**
 * Where to go after signing in: a path of this site ("/", "/?x=1#y"), never an
 * address elsewhere ("//evil.example", "https://…", "/\\evil.example" all give "/").
 */
export function safeNext(text) {
  if (typeof text !== "string" || !text.startsWith("/") || /^\/[/\\]/.test(text)) return "/";
  try {
    const url = new URL(text, location.origin);
    if (url.origin !== location.origin || url.pathname.startsWith("/signin")) return "/";
    return `${url.pathname}${url.search}${url.hash}`;
  } catch {
    return "/";
  }
}

/** The sign-in page's address, coming back to this page afterwards. */
export function signInUrl() {
  const here = `${location.pathname}${location.search}${location.hash}`;
  return `/signin?next=${encodeURIComponent(safeNext(here))}`;
}

/**
 * Keeps what was typed in the page's draft fields ([data-draft]) and the page's own
 * extra state, for the same user signing in again in this tab.
 */
export function saveDrafts(username, extra = {}) {
  const fields = {};
  for (const element of document.querySelectorAll("[data-draft]")) {
    if (element.id && element.value) fields[element.id] = element.value;
  }
  try {
    sessionStorage.setItem(
      DRAFTS_KEY,
      JSON.stringify({ username, path: location.pathname, saved: Date.now(), fields, ...extra }),
    );
  } catch {
    // Storage full or refused: signing in again still works, without the drafts.
  }
}

/** What this tab saved for this user, once (it is forgotten as it is read). */
export function takeDrafts(username) {
  let drafts = null;
  try {
    drafts = JSON.parse(sessionStorage.getItem(DRAFTS_KEY) ?? "null");
    sessionStorage.removeItem(DRAFTS_KEY);
  } catch {
    return null;
  }
  if (!drafts || typeof drafts !== "object") return null;
  if (drafts.username !== username || drafts.path !== location.pathname) return null;
  if (!(Date.now() - Number(drafts.saved) < DRAFTS_KEPT_MS)) return null;
  return drafts;
}

/** Forgets any saved drafts (signing out on purpose keeps nothing behind). */
export function forgetDrafts() {
  try {
    sessionStorage.removeItem(DRAFTS_KEY);
  } catch {
    // Nothing kept, nothing to forget.
  }
}

let leaving = false;

/** True once the page is on its way to the sign-in page. */
export function isLeaving() {
  return leaving;
}

/** Goes to the sign-in page (once), after `beforeLeaving` has saved what it wants. */
export function goToSignIn(beforeLeaving) {
  if (leaving) return;
  leaving = true;
  try {
    beforeLeaving?.();
  } finally {
    location.replace(signInUrl());
  }
}

/** Tells the other tabs of this browser that the session changed ("signed-in", "signed-out"). */
export function tellOtherTabs(event) {
  channel?.postMessage({ event });
}

/** Calls back with "signed-in" or "signed-out" when another tab says so. */
export function onOtherTabs(callback) {
  channel?.addEventListener("message", (message) => {
    const event = message.data?.event;
    if (event === "signed-in" || event === "signed-out") callback(event);
  });
}

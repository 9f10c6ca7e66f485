// The sign-in page: signs in (POST /api/tokens: the server sets the HttpOnly session
// cookie) or signs up (POST /api/users, then signs in), then goes to `next`, a path
// of this site only. Every error shows beside the form, in the server's words.

import { onOtherTabs, safeNext, tellOtherTabs } from "./session.js";

const USERNAME = /^[a-z0-9._-]{3,32}$/i;
const MIN_PASSWORD = 8;
const MAX_PASSWORD = 1024;

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

const page = {
  heading: byTestId("signin-heading"),
  lead: byTestId("signin-lead"),
  modes: [...document.querySelectorAll("[data-mode]")],
  form: byTestId("signin-form"),
  username: byTestId("signin-username"),
  password: byTestId("signin-password"),
  toggle: byTestId("password-toggle"),
  usernameHint: byTestId("username-hint"),
  passwordHint: byTestId("password-hint"),
  usernameError: byTestId("username-error"),
  passwordError: byTestId("password-error"),
  error: byTestId("signin-error"),
  submit: byTestId("signin-submit"),
  switchButton: byTestId("signin-switch-button"),
  switchWords: [...document.querySelectorAll("[data-when]")],
};

const next = safeNext(document.body.dataset.next);
const registrationOpen = document.body.dataset.registration === "open";
let mode = registrationOpen && new URLSearchParams(location.search).get("mode") === "signup" ? "signup" : "signin";
let busy = false;
let waitUntil = 0;
let waitTimer = null;

const WORDS = {
  signin: {
    heading: "Sign in",
    lead: "Welcome back. Your accounts update live in every tab you open.",
    submit: "Sign in",
    switchTo: "Create an account",
    autocomplete: "current-password",
  },
  signup: {
    heading: "Create your account",
    lead: "Choose a username and a password. You can open accounts straight away.",
    submit: "Create account",
    switchTo: "Sign in instead",
    autocomplete: "new-password",
  },
};

function setMode(newMode) {
  mode = newMode;
  const words = WORDS[mode];
  page.heading.textContent = words.heading;
  page.lead.textContent = words.lead;
  document.title = `${words.heading} · ${document.title.split(" · ").at(-1)}`;
  page.submit.textContent = words.submit;
  page.password.autocomplete = words.autocomplete;
  page.usernameHint.hidden = mode !== "signup";
  page.passwordHint.hidden = mode !== "signup";
  for (const button of page.modes) button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  if (page.switchButton) page.switchButton.textContent = words.switchTo;
  for (const element of page.switchWords) element.hidden = element.dataset.when !== mode;
  clearErrors();
  renderWait();
}

function showError(element, input, message) {
  element.textContent = message ?? "";
  element.hidden = !message;
  if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
}

function clearErrors() {
  showError(page.usernameError, page.username, "");
  showError(page.passwordError, page.password, "");
  showError(page.error, null, "");
}

function sentence(text) {
  const trimmed = String(text ?? "").trim();
  return /[.!?…]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

/** The server's {"detail": ...} as { message, fields: { username?, password? } }. */
function describe(body, status) {
  const detail = body?.detail;
  const fields = {};
  if (Array.isArray(detail)) {
    for (const item of detail) {
      const field = item.field ?? (Array.isArray(item.loc) ? item.loc.at(-1) : null);
      const message = sentence(String(item.msg ?? "is not valid").replace(/^Value error, /, ""));
      if (field === "username" || field === "password") fields[field] = fields[field] ?? message;
      else return { message, fields };
    }
    return { message: "", fields };
  }
  if (typeof detail === "string" && detail) return { message: sentence(detail), fields };
  return { message: `The bank answered with an error (${status}). Please try again.`, fields };
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { response, data };
}

function checkInput(username, password) {
  let firstBad = null;
  if (!username) {
    showError(page.usernameError, page.username, "Enter your username.");
    firstBad = page.username;
  } else if (mode === "signup" && !USERNAME.test(username)) {
    showError(
      page.usernameError,
      page.username,
      "Use 3 to 32 characters: letters a-z, digits, dots, dashes or underscores.",
    );
    firstBad = page.username;
  }
  if (!password) {
    showError(page.passwordError, page.password, "Enter your password.");
    firstBad ??= page.password;
  } else if (mode === "signup" && password.length < MIN_PASSWORD) {
    showError(page.passwordError, page.password, `Use at least ${MIN_PASSWORD} characters.`);
    firstBad ??= page.password;
  } else if (password.length > MAX_PASSWORD) {
    showError(page.passwordError, page.password, `Use at most ${MAX_PASSWORD} characters.`);
    firstBad ??= page.password;
  }
  return firstBad;
}

/** Shows an answer that was not a success; true if it was. */
function handleFailure(response, data, step) {
  if (response.ok) return true;
  const { message, fields } = describe(data, response.status);
  if (response.status === 429) {
    const seconds = Math.max(1, Number.parseInt(response.headers.get("Retry-After") ?? "", 10) || 30);
    waitUntil = Date.now() + seconds * 1000;
    renderWait();
    return false;
  }
  if (response.status === 401) {
    showError(page.error, null, message || "The username or password is not right.");
    page.password.select();
    page.password.focus();
    return false;
  }
  if (response.status === 409 && step === "signup") {
    showError(page.usernameError, page.username, message || "That username is taken. Choose another.");
    page.username.focus();
    return false;
  }
  if (response.status === 422 || Object.keys(fields).length) {
    let target = null;
    if (fields.username || (!fields.password && /user ?name/i.test(message))) {
      showError(page.usernameError, page.username, fields.username ?? message);
      target = page.username;
    }
    if (fields.password || (!target && /password/i.test(message))) {
      showError(page.passwordError, page.password, fields.password ?? message);
      target ??= page.password;
    }
    if (!target) showError(page.error, null, message);
    (target ?? page.username).focus();
    return false;
  }
  if (response.status === 403 && step === "signup") {
    showError(page.error, null, message || "Registration is closed: ask the bank's staff for an account.");
    return false;
  }
  showError(page.error, null, message);
  return false;
}

/** While throttled: the wait in words, counting down, and the button off. */
function renderWait() {
  clearTimeout(waitTimer);
  const left = Math.ceil((waitUntil - Date.now()) / 1000);
  if (left > 0) {
    showError(
      page.error,
      null,
      `Too many attempts. Try again in ${left} ${left === 1 ? "second" : "seconds"}.`,
    );
    page.error.dataset.kind = "wait";
    page.submit.disabled = true;
    waitTimer = setTimeout(renderWait, 1000);
    return;
  }
  if (page.error.dataset.kind === "wait") {
    showError(page.error, null, "");
    delete page.error.dataset.kind;
  }
  page.submit.disabled = busy;
}

function setBusy(value) {
  busy = value;
  page.form.setAttribute("aria-busy", String(value));
  page.submit.disabled = value || waitUntil > Date.now();
}

function proceed() {
  tellOtherTabs("signed-in");
  location.replace(next);
}

page.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (busy || waitUntil > Date.now()) return;
  clearErrors();
  const username = page.username.value.trim();
  const password = page.password.value;
  const firstBad = checkInput(username, password);
  if (firstBad) {
    firstBad.focus();
    return;
  }
  setBusy(true);
  try {
    if (mode === "signup") {
      const { response, data } = await post("/api/users", { username, password });
      if (!handleFailure(response, data, "signup")) return;
    }
    const { response, data } = await post("/api/tokens", { username, password });
    if (!handleFailure(response, data, "signin")) return;
    proceed();
  } catch {
    showError(page.error, null, "Can't reach the bank right now. Check the connection and try again.");
  } finally {
    setBusy(false);
  }
});

for (const input of [page.username, page.password]) {
  input.addEventListener("input", () => {
    showError(input === page.username ? page.usernameError : page.passwordError, input, "");
    if (page.error.dataset.kind !== "wait") showError(page.error, null, "");
  });
}

page.toggle.addEventListener("click", () => {
  const show = page.password.type === "password";
  page.password.type = show ? "text" : "password";
  page.toggle.textContent = show ? "Hide" : "Show";
  page.toggle.setAttribute("aria-pressed", String(show));
  page.password.focus();
});

for (const button of page.modes) {
  button.addEventListener("click", () => setMode(button.dataset.mode));
}
page.switchButton?.addEventListener("click", () => {
  setMode(mode === "signin" ? "signup" : "signin");
  page.username.focus();
});

// Signed in again in another tab: this tab's session is back too (the cookie is shared).
onOtherTabs((change) => {
  if (change === "signed-in") location.replace(next);
});

setMode(mode);
page.username.focus();

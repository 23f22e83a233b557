// The page's shell: sign-in, the views behind the URL's hash, the status line, the
// change feed shared by every view, notifications and confirmation dialogs.

import { Api, AuthError, ApiError } from "./api.js";
import { h, newId, sleep } from "./dom.js";
import { LiveFeed } from "./live.js";
import { OverviewView } from "./overview.js";
import { SessionView } from "./session_detail.js";
import { SessionsView } from "./sessions_list.js";
import { TrashView } from "./trash.js";

const TOKEN_KEY = "sessiond.token"; // sessionStorage only: this tab, until sign-out or close

const $ = (id) => document.getElementById(id);
const ui = {
  signIn: $("sign-in"),
  form: $("sign-in-form"),
  token: $("token"),
  error: $("sign-in-error"),
  nav: $("nav"),
  view: $("view"),
  status: $("status"),
  signOut: $("sign-out"),
  who: $("who"),
  toasts: $("toasts"),
};

const state = { api: null, feed: null, view: null, route: null, live: "stopped", waiting: null, health: null, trash: null, who: null };

// What each scope may do besides reading (the server refuses the rest anyway: this only hides controls).
const SCOPES = ["read", "delete", "admin"];

// -- status line ----------------------------------------------------------------------

function showStatus() {
  const parts = [];
  if (state.waiting) {
    const { kind, detail, seconds } = state.waiting;
    const what = WAITING.get(kind) || "Waiting";
    // The daemon's own words, unless they only repeat ours ("Rate limited: Rate limit exceeded").
    const said = withoutStarting(detail);
    const words = /^rate limit exceeded\.?$/i.test(said) ? "" : `: ${said}`;
    parts.push(`${what}${words} — retrying in ${Math.round(seconds * 10) / 10} s`);
  } else if (state.health && state.health !== "ok") {
    parts.push(state.health);
  }
  const live = LIVE.get(state.live);
  if (live) parts.push(live);
  ui.status.textContent = parts.join(" · ");
  ui.status.dataset.live = state.live;
  ui.status.dataset.waiting = state.waiting ? state.waiting.kind : "";
}

const WAITING = new Map([["starting", "Starting"], ["limited", "Rate limited"], ["offline", "Offline"]]);
const LIVE = new Map([["connecting", "Connecting…"], ["live", "Live"], ["reconnecting", "Reconnecting…"]]);

// "starting: indexing" (the daemon's words) reads "indexing" after our own "Starting".
const withoutStarting = (text) => String(text).replace(/^starting:\s*/i, "");

const hooks = {
  waiting(kind, detail, seconds) {
    state.waiting = kind ? { kind, detail, seconds } : null;
    showStatus();
  },
  authLost() {
    signOut("The token was refused: it is wrong, or it was changed on the server. Sign in again.");
  },
};

// -- notifications and dialogs --------------------------------------------------------

function toast(message, kind = "info") {
  const item = h("div", { class: `toast ${kind}` }, message);
  ui.toasts.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 12_000 : 6_000);
}

/**
 * A modal confirmation. Resolves true only when the confirm button is pressed; Escape,
 * Cancel and closing resolve false. Cancel has the focus first.
 */
function confirmDialog({ title, body, confirm, danger = true }) {
  return new Promise((resolve) => {
    const titleId = newId("dialog-title");
    const cancelButton = h("button", { type: "button", class: "quiet", autofocus: true }, "Cancel");
    const okButton = h("button", { type: "button", class: danger ? "danger" : "" }, confirm);
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": titleId },
      h("h2", { id: titleId }, title),
      h("div", { class: "dialog-body" }, body),
      h("div", { class: "buttons" }, cancelButton, okButton));
    cancelButton.addEventListener("click", () => dialog.close("cancel"));
    okButton.addEventListener("click", () => dialog.close("confirm"));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "confirm");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Whether deletions go to the trash, asked once per sign-in (from /api/v1/stats). */
async function trashInfo() {
  if (state.trash === null) {
    const stats = await state.api.json("GET", "stats");
    state.trash = stats.trash;
  }
  return state.trash;
}

function failure(err, what) {
  if (err instanceof AuthError || (err && err.name === "AbortError")) return;
  const detail = err instanceof ApiError ? err.detail : String(err);
  toast(`${what}: ${detail}`, "error");
  if (!(err instanceof ApiError)) console.error(err);
}

// -- routing --------------------------------------------------------------------------

// A Map, not an object: the hash is anyone's link, and "#/constructor" or "#/__proto__"
// must not find what every object inherits.
const VIEWS = new Map([["sessions", SessionsView], ["session", SessionView], ["trash", TrashView], ["overview", OverviewView]]);

/** #/sessions?…, #/session/<key>, #/trash, #/overview. */
function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split(/\?(.*)/s, 2);
  if (path.startsWith("session/")) {
    let key = null;
    try {
      key = decodeURIComponent(path.slice("session/".length));
    } catch {
      key = null;
    }
    if (key) return { name: "session", key, params: new URLSearchParams(query) };
  }
  const name = VIEWS.has(path) && path !== "session" ? path : "sessions";
  return { name, params: new URLSearchParams(query) };
}

function route() {
  if (!state.api) return;
  const next = parseHash();
  for (const link of ui.nav.querySelectorAll("a")) {
    if (link.dataset.view === next.name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (state.view && state.route && state.route.name === next.name && next.name !== "session" && state.view.update) {
    state.route = next;
    state.view.update(next);
    return;
  }
  if (state.view) state.view.destroy();
  state.route = next;
  const View = VIEWS.get(next.name);
  state.view = new View(context, next);
  ui.view.replaceChildren(state.view.el);
  document.title = `${state.view.title} · sessiond`;
}

const context = {
  get api() {
    return state.api;
  },
  toast,
  confirm: confirmDialog,
  trashInfo,
  failure,
  lastListHash: "#/sessions",
  /** Whether the signed-in token may delete and restore sessions (its scope, from /api/v1/whoami). */
  get mayDelete() {
    return state.who !== null && SCOPES.indexOf(state.who.scope) >= SCOPES.indexOf("delete");
  },
  /** The overview saw the daemon's health: keep the status line in step. */
  health(healthy, reason) {
    state.health = healthy ? "ok" : `Unhealthy: ${reason}`;
    showStatus();
  },
};

// -- sign-in and out ------------------------------------------------------------------

/**
 * Ask /api/v1/health with *api*: resolves once the token is known good and the first
 * index is complete (waiting while the daemon starts), throws AuthError for a bad token.
 * A 503 for another reason (the watcher is down, say) is shown, not waited out.
 */
async function checkToken(api, attempts) {
  for (;;) {
    const resp = await api.fetch("GET", "health", { attempts, accept: [503] });
    const body = await resp.json().catch(() => null);
    const reason = body && typeof body.reason === "string" ? body.reason : null;
    if (resp.status === 503 && reason && reason.startsWith("starting")) {
      hooks.waiting("starting", reason, 1);
      ui.view.replaceChildren(h("p", { class: "notice starting" }, "sessiond is starting (", withoutStarting(reason),
        "). This page carries on as soon as every session is indexed."));
      ui.view.hidden = false;
      await sleep(1000);
      continue;
    }
    hooks.waiting(null);
    state.health = resp.status === 503 ? `Unhealthy: ${reason}` : "ok";
    return;
  }
}

async function start(token, remember) {
  const api = new Api(token, {
    waiting: hooks.waiting,
    authLost: () => {
      if (state.api === api) hooks.authLost();
    },
  });
  try {
    // A saved token (a reload) waits for as long as it takes; a typed one reports soon.
    await checkToken(api, remember ? 5 : Infinity);
  } catch (err) {
    if (err instanceof AuthError) {
      if (!remember) signOut("The token was refused: it is wrong, or it was changed on the server. Sign in again.");
      return false;
    }
    throw err;
  }
  // Who this token is: its name and scope for the header, and which controls to show.
  const who = await api.json("GET", "whoami");
  if (remember) sessionStorage.setItem(TOKEN_KEY, token);
  state.api = api;
  state.trash = null;
  state.who = who;
  ui.who.textContent = `${who.name} · ${who.scope}`;
  ui.who.hidden = false;
  ui.signIn.hidden = true;
  ui.nav.hidden = false;
  ui.signOut.hidden = false;
  ui.view.hidden = false;
  state.feed = new LiveFeed(api, {
    event(type, data) {
      if (type === "resync") toast("Some changes were missed; listing again.");
      // Not lost messages, not a new session: say what the agent did (issue 21).
      if (type === "compacted") toast(`${data.key}: compacted by the agent, ${data.before} → ${data.after} messages (older ones summarised).`);
      if (type === "resurrected") toast(`${data.key} came back after it was deleted: the agent wrote its cached copy again.`, "error");
      if (state.view && state.view.onEvent) state.view.onEvent(type, data);
    },
    state(live) {
      state.live = live;
      showStatus();
    },
  });
  state.feed.start();
  showStatus();
  route();
  return true;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.feed) state.feed.stop();
  if (state.view) state.view.destroy();
  for (const dialog of document.querySelectorAll("dialog")) dialog.close();
  Object.assign(state, { api: null, feed: null, view: null, route: null, live: "stopped", waiting: null, health: null, trash: null, who: null });
  ui.who.textContent = "";
  ui.who.hidden = true;
  ui.view.replaceChildren();
  ui.view.hidden = true;
  ui.nav.hidden = true;
  ui.signOut.hidden = true;
  ui.signIn.hidden = false;
  ui.error.textContent = message || "";
  ui.token.value = "";
  showStatus();
  document.title = "Sign in · sessiond";
  ui.token.focus();
}

/**
 * The first character no token can hold (tokens are printable ASCII without spaces, and
 * only Latin-1 fits in a header at all), named for the sign-in error; null if none.
 */
function unusableCharacter(token) {
  for (const [i, char] of [...token].entries()) {
    const code = char.codePointAt(0);
    if (code >= 0x21 && code <= 0x7e) continue;
    const hex = `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
    const where = `at character ${i + 1}`;
    if (code === 0x20) return `a space ${where}`;
    const visible = /\p{L}|\p{N}|\p{P}|\p{S}/u.test(char);
    return visible ? `${char} (${hex}) ${where}` : `the invisible character ${hex} ${where}`;
  }
  return null;
}

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = ui.token.value.trim();
  if (!token) {
    ui.error.textContent = "Enter the API token.";
    ui.token.focus();
    return;
  }
  const odd = unusableCharacter(token);
  if (odd) {
    // fetch() would throw before sending (no header carries it), which looks like an outage.
    ui.error.textContent = `Wrong token: it holds ${odd}, which no token has (a token is printable ASCII without spaces). Was it pasted with smart quotes or from formatted text?`;
    ui.token.select();
    return;
  }
  ui.error.textContent = "";
  const button = ui.form.querySelector("button");
  button.disabled = true;
  try {
    const accepted = await start(token, true);
    if (!accepted) {
      ui.error.textContent = "Wrong token: sessiond refused it. Check for a typo or a newer token.";
      ui.token.select();
    } else {
      ui.token.value = "";
      $("main").focus();
    }
  } catch (err) {
    ui.error.textContent = err instanceof ApiError ? `Cannot sign in: ${err.detail}` : `Cannot sign in: ${err}`;
  } finally {
    button.disabled = false;
  }
});

ui.signOut.addEventListener("click", () => signOut("Signed out. The token is forgotten."));
// The skip link moves the focus only: the URL's hash belongs to the views.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  $("main").focus();
});
window.addEventListener("hashchange", route);

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  start(saved, false).catch((err) => failure(err, "Cannot start"));
} else {
  signOut("");
}

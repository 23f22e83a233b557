// The search on the sessions view: the box (its query held in the URL's hash beside the
// filters, which apply to it too), the results of GET /api/v1/search with their snippets
// marked, the index's build progress while it is incomplete, and live: a result whose
// session is deleted goes at once. Shown only when the daemon's search is on.

import { ApiError } from "./api.js";
import { h, newId, timeElement } from "./dom.js";
import { formatCount } from "./format.js";
import { hitHash, snippetNodes } from "./highlight.js";

const PAGE_SIZE = 20;
const REFRESH_MS = 1000; // while the index is built: the results so far, again
const OFF = /search is turned off/i;

/** Whether the daemon's search is on, asked once per sign-in (GET /api/v1/health says). */
const enabledFor = new WeakMap();
function searchEnabled(api) {
  if (!enabledFor.has(api)) {
    enabledFor.set(api, api.fetch("GET", "health", { accept: [503] })
      .then((resp) => resp.json())
      .then((body) => !(body && body.search && body.search.enabled === false))
      .catch(() => true)); // unknown: the box stays, and a search says if it is off
  }
  return enabledFor.get(api);
}

function sessionsWord(n) {
  return n === 1 ? "session" : "sessions";
}

export class SearchPanel {
  /** go(q): show the sessions view for this query ("" lists). */
  constructor(ctx, { go }) {
    this.ctx = ctx;
    this.goTo = go;
    this.query = null;
    this.controller = null;
    this.timer = null;
    this.results = [];
    this.next = null;
    this.pages = 1;
    this.input = h("input", {
      id: newId("q"), name: "q", type: "search", autocomplete: "off", spellcheck: "false",
      placeholder: "refund -spam \"return policy\" refun*",
    });
    this.clearButton = h("button", { type: "button", class: "quiet", hidden: true, onclick: () => this.goTo("") }, "Clear search");
    this.form = h("form", { class: "search-box", role: "search", "aria-label": "Full-text search", novalidate: true, hidden: true, onsubmit: (e) => this.submit(e) },
      h("label", { for: this.input.id }, "Search messages"),
      this.input,
      h("button", { type: "submit" }, "Search"),
      this.clearButton);
    this.progressBar = h("progress", { max: "1", value: "0" });
    this.progressText = h("span", {});
    this.progress = h("p", { class: "search-progress", role: "status", hidden: true }, this.progressBar, " ", this.progressText);
    this.summary = h("p", { class: "search-summary", role: "status" });
    this.changed = h("p", { class: "notice", hidden: true }, "Sessions changed since this search. ",
      h("button", { type: "button", class: "quiet small", onclick: () => this.run() }, "Search again"));
    this.error = h("p", { class: "error", role: "alert", hidden: true });
    this.list = h("ol", { class: "search-results", "aria-label": "Search results" });
    this.more = h("button", { type: "button", class: "quiet", hidden: true, onclick: () => this.loadMore() }, "More results");
    this.el = h("section", { class: "search-view", hidden: true },
      this.progress, this.summary, this.changed, this.error, this.list, this.more);
    searchEnabled(ctx.api).then((on) => {
      if (!on) this.turnedOff();
      else if (this.form.dataset.off !== "yes") this.form.hidden = false;
    });
  }

  /** Search off: no box; a search in the address says why it shows nothing. */
  turnedOff(detail = "Search is turned off on this server (search = false).") {
    this.form.hidden = true;
    this.form.dataset.off = "yes";
    this.stop();
    this.progress.hidden = true;
    this.summary.textContent = "";
    this.list.replaceChildren();
    this.more.hidden = true;
    this.error.textContent = detail;
    this.error.hidden = false;
  }

  get active() {
    return Boolean(this.query && this.query.q);
  }

  submit(event) {
    event.preventDefault();
    this.goTo(this.input.value.trim());
  }

  /** The sessions view's query changed: search (q set) or hide (q empty). */
  show(query) {
    this.query = query;
    this.input.value = query.q;
    this.clearButton.hidden = !query.q;
    this.el.hidden = !query.q;
    this.stop();
    if (query.q) this.run();
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    clearTimeout(this.timer);
    this.timer = null;
  }

  params(cursor) {
    const params = { q: this.query.q, ...this.query.filter, limit: PAGE_SIZE };
    if (cursor) params.cursor = cursor;
    return params;
  }

  async fetchPage(cursor) {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    this.list.setAttribute("aria-busy", "true");
    try {
      const answer = await this.ctx.api.json("GET", "search", { query: this.params(cursor), signal: controller.signal });
      return controller.signal.aborted ? null : answer;
    } catch (err) {
      if (controller.signal.aborted) return null;
      if (err instanceof ApiError && err.status === 404 && OFF.test(err.detail)) this.turnedOff(err.detail);
      else if (err instanceof ApiError) this.showError(err.detail);
      else this.ctx.failure(err, "Cannot search");
      return null;
    } finally {
      if (this.controller === controller) {
        this.controller = null;
        this.list.removeAttribute("aria-busy");
      }
    }
  }

  /** The first page of results (again). */
  async run() {
    const answer = await this.fetchPage(null);
    if (!answer) return;
    this.results = answer.results.slice();
    this.pages = 1;
    this.changed.hidden = true;
    this.list.replaceChildren(...this.results.map((result) => this.item(result)));
    this.showAnswer(answer);
  }

  async loadMore() {
    if (!this.next) return;
    const answer = await this.fetchPage(this.next);
    if (!answer) return;
    const shown = new Set(this.results.map((result) => result.key));
    const fresh = answer.results.filter((result) => !shown.has(result.key));
    this.results.push(...fresh);
    this.pages += 1;
    this.list.append(...fresh.map((result) => this.item(result)));
    this.showAnswer(answer);
  }

  showAnswer(answer) {
    this.error.hidden = true;
    this.next = answer.next_cursor;
    this.more.hidden = !this.next;
    this.showProgress(answer);
    this.showSummary();
    // While the index is built the first page is asked for again, so the results grow
    // with it (not once more pages are shown: that would take them away).
    if (!answer.complete && this.pages === 1) this.timer = setTimeout(() => this.run(), REFRESH_MS);
  }

  showProgress({ complete, indexed, total }) {
    this.progress.hidden = complete;
    if (complete) return;
    this.progressBar.max = Math.max(1, total);
    this.progressBar.value = Math.min(indexed, total);
    this.progressText.textContent = `Building the search index: ${formatCount(indexed)} of ${formatCount(total)} sessions indexed; results so far.`;
  }

  showSummary() {
    const n = this.results.length;
    const q = `“${this.query.q}”`;
    if (!n) this.summary.textContent = this.next ? `No sessions yet for ${q}; there are more to look at.` : `No session matches ${q}.`;
    else this.summary.textContent = `${formatCount(n)} ${sessionsWord(n)}${this.next ? " so far" : ""} for ${q}, best first.`;
  }

  showError(detail) {
    this.progress.hidden = true;
    this.summary.textContent = "";
    this.list.replaceChildren();
    this.more.hidden = true;
    this.error.textContent = `The search could not be done: ${detail}`;
    this.error.hidden = false;
  }

  item(result) {
    const hits = Array.isArray(result.hits) ? result.hits : [];
    const title = typeof result.title === "string" && result.title ? result.title : result.key;
    const count = typeof result.message_count === "number" ? result.message_count : 0;
    return h("li", { class: "result", dataset: { key: result.key } },
      h("h2", { class: "result-title" }, h("a", { href: hitHash(result.key, hits[0] || null) }, title)),
      h("p", { class: "result-meta" }, h("code", { class: "key" }, result.key),
        ` · ${formatCount(count)} ${count === 1 ? "message" : "messages"} · updated `, timeElement(result.updated_at)),
      h("ul", { class: "hits" }, hits.map((hit) => h("li", {},
        h("a", { class: "hit", href: hitHash(result.key, hit) },
          h("span", { class: "hit-where" }, hit.message === null ? "summary" : `${hit.role || "message"} #${hit.message + 1}`),
          " ",
          h("span", { class: "snippet" }, snippetNodes(hit.snippet)))))));
  }

  // -- live ---------------------------------------------------------------------------

  onEvent(type, data) {
    if (!this.active) return;
    if (type === "resync") {
      this.run();
      return;
    }
    if (!data || typeof data.key !== "string") return;
    if (type === "deleted") {
      const at = this.results.findIndex((result) => result.key === data.key);
      if (at < 0) return;
      this.results.splice(at, 1);
      for (const li of this.list.children) if (li.dataset.key === data.key) li.remove();
      this.showSummary();
    } else if (type === "created" || type === "updated") {
      if (this.timer) return; // asked again soon anyway (the index is being built)
      this.changed.hidden = false;
    }
  }

  destroy() {
    this.stop();
  }
}

// The sessions view: filters, sort, cursor paging, live rows, delete one, delete by filter.

import { ApiError, deleteSession } from "./api.js";
import { h, newId, timeElement } from "./dom.js";
import { channelOf, formatBytes, formatCount, formatTime, fromLocalInput, toLocalInput } from "./format.js";
import { SearchPanel } from "./search_results.js";
import { PAGE_SIZES, PageModel, filterIsEmpty, listParams, readQuery, sessionHash, writeQuery } from "./sessions_model.js";

const COLUMNS = [
  { label: "Key", sort: "key", first: "asc" },
  { label: "Channel" },
  { label: "Messages", sort: "message_count", first: "desc", num: true },
  { label: "Created", sort: "created_at", first: "desc" },
  { label: "Updated", sort: "updated_at", first: "desc" },
  { label: "Size", num: true },
  { label: "Actions", hidden: true },
];
const LIVE_MARK_MS = 4000;
const RECOUNT_QUIET_MS = 1000;
const RECOUNT_MAX_WAIT_MS = 5000;
const BULK_MAX = 10_000; // keys one sessions:batchDelete call may name
const SHOWN_FAILURES = 10;

/** Say what a filter selects, in words. */
export function describeFilter(filter) {
  const parts = [];
  if (filter.prefix) parts.push(`key starts with “${filter.prefix}”`);
  if (filter.updated_after !== undefined) parts.push(`updated after ${formatTime(filter.updated_after)}`);
  if (filter.updated_before !== undefined) parts.push(`updated before ${formatTime(filter.updated_before)}`);
  if (filter.created_after !== undefined) parts.push(`created after ${formatTime(filter.created_after)}`);
  if (filter.created_before !== undefined) parts.push(`created before ${formatTime(filter.created_before)}`);
  if (filter.min_messages !== undefined) parts.push(`at least ${filter.min_messages} messages`);
  if (filter.max_messages !== undefined) parts.push(`at most ${filter.max_messages} messages`);
  return parts.join(", ");
}

/** What a confirmed bulk delete did, and what it did not do and why. */
export function bulkResult(done) {
  const n = done.deleted.length;
  const text = `Deleted ${formatCount(n)} ${n === 1 ? "session" : "sessions"}`;
  if (!done.failed.length) return `${text}.`;
  const f = done.failed.length;
  const reason = (r) => (r === "Session not found" ? "already gone" : r);
  return h("div", {},
    `${text}; ${formatCount(f)} ${f === 1 ? "was" : "were"} not deleted:`,
    h("ul", { class: "failures" }, done.failed.slice(0, SHOWN_FAILURES).map((item) =>
      h("li", {}, h("code", { class: "key" }, item.key), `: ${reason(item.reason)}`))),
    f > SHOWN_FAILURES ? `… and ${formatCount(f - SHOWN_FAILURES)} more.` : null);
}

function field(label, input) {
  const id = newId("f");
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

export class SessionsView {
  constructor(ctx, route) {
    this.ctx = ctx;
    this.title = "Sessions";
    this.model = null;
    this.controller = null;
    this.pending = [];
    this.marks = new Map(); // key -> "new" | "changed", shown for a few seconds
    this.cameBack = new Set(); // keys the agent wrote back after a deletion, seen on the feed
    this.recount = { timer: null, since: 0 };
    this.renderQueued = false;
    this.search = new SearchPanel(ctx, { go: (q) => this.go({ ...this.query, q, pages: [] }) });
    this.el = this.build();
    this.update(route);
  }

  // -- building -----------------------------------------------------------------------

  build() {
    const inputs = {
      prefix: h("input", { name: "prefix", type: "search", placeholder: "telegram:", autocomplete: "off", spellcheck: "false" }),
      updated_after: h("input", { name: "updated_after", type: "datetime-local" }),
      updated_before: h("input", { name: "updated_before", type: "datetime-local" }),
      created_after: h("input", { name: "created_after", type: "datetime-local" }),
      created_before: h("input", { name: "created_before", type: "datetime-local" }),
      min_messages: h("input", { name: "min_messages", type: "number", min: "0", step: "1", inputmode: "numeric" }),
      max_messages: h("input", { name: "max_messages", type: "number", min: "0", step: "1", inputmode: "numeric" }),
      limit: h("select", { name: "limit" }, PAGE_SIZES.map((n) => h("option", { value: n }, String(n)))),
    };
    this.inputs = inputs;
    const group = (legend, a, b) => h("fieldset", {}, h("legend", {}, legend), a, b);
    this.form = h("form", { class: "filters", role: "search", "aria-label": "Filter sessions", novalidate: true, onsubmit: (e) => this.submit(e) },
      field("Key prefix", inputs.prefix),
      group("Updated (UTC)", field("after", inputs.updated_after), field("before", inputs.updated_before)),
      group("Created (UTC)", field("after", inputs.created_after), field("before", inputs.created_before)),
      group("Messages", field("at least", inputs.min_messages), field("at most", inputs.max_messages)),
      field("Per page", inputs.limit),
      h("div", { class: "buttons" },
        h("button", { type: "submit" }, "Apply"),
        h("button", { type: "button", class: "quiet", onclick: () => this.clear() }, "Clear")));

    this.summary = h("p", { class: "summary", role: "status" });
    // A token that may not delete sees no delete controls (the server would refuse them).
    this.bulkButton = h("button", { type: "button", class: "danger", hidden: !this.ctx.mayDelete, onclick: () => this.bulkDelete() }, "Delete all matching…");
    this.bulkHint = h("span", { class: "hint", hidden: !this.ctx.mayDelete });
    this.headRow = h("tr", {});
    this.body = h("tbody", {});
    this.table = h("table", { class: "sessions", "aria-describedby": "sessions-summary" },
      h("caption", { class: "visually-hidden" }, "Sessions"), h("thead", {}, this.headRow), this.body);
    this.summary.id = "sessions-summary";
    this.empty = h("p", { class: "empty", hidden: true });
    this.error = h("p", { class: "error", role: "alert", hidden: true });
    this.pager = {
      first: h("button", { type: "button", class: "quiet", onclick: () => this.goPage([]) }, "First"),
      previous: h("button", { type: "button", class: "quiet", onclick: () => this.goPage(this.query.pages.slice(0, -1)) }, "Previous"),
      label: h("span", { class: "page-label" }),
      next: h("button", { type: "button", onclick: () => this.goPage([...this.query.pages, this.model.next]) }, "Next"),
    };
    return h("section", { class: "view sessions-view", "aria-labelledby": "sessions-title" },
      h("h1", { id: "sessions-title" }, "Sessions"),
      this.search.form,
      this.form,
      this.search.el,
      // The list, hidden while a search (the hash's q) shows its results instead.
      (this.listPart = h("div", { class: "list-part" },
        h("div", { class: "toolbar" }, this.summary, h("div", { class: "bulk" }, this.bulkHint, this.bulkButton)),
        this.error,
        h("div", { class: "table-wrap" }, this.table),
        this.empty,
        h("nav", { class: "pager", "aria-label": "Pages" }, this.pager.first, this.pager.previous, this.pager.label, this.pager.next))));
  }

  renderHead() {
    const cells = COLUMNS.map((col) => {
      if (col.hidden) return h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, col.label));
      if (!col.sort) return h("th", { scope: "col", class: col.num ? "num" : "" }, col.label);
      const active = this.query.sort === col.sort;
      const order = active ? this.query.order : null;
      const arrow = order === "asc" ? "▲" : order === "desc" ? "▼" : "";
      return h("th", { scope: "col", class: col.num ? "num" : "", "aria-sort": order === "asc" ? "ascending" : order === "desc" ? "descending" : "none" },
        h("button", { type: "button", class: "sort", dataset: { sort: col.sort }, onclick: () => this.sortBy(col) },
          col.label, h("span", { class: "arrow", "aria-hidden": "true" }, arrow)));
    });
    this.headRow.replaceChildren(...cells);
  }

  // -- the query ----------------------------------------------------------------------

  update(route) {
    this.query = readQuery(route.params);
    this.ctx.lastListHash = location.hash || "#/sessions";
    const { filter } = this.query;
    this.inputs.prefix.value = filter.prefix || "";
    for (const name of ["updated_after", "updated_before", "created_after", "created_before"]) {
      this.inputs[name].value = toLocalInput(filter[name]);
    }
    this.inputs.min_messages.value = filter.min_messages ?? "";
    this.inputs.max_messages.value = filter.max_messages ?? "";
    this.inputs.limit.value = String(this.query.limit);
    this.renderHead();
    this.showBulk();
    this.load();
  }

  /** "Delete all matching…" only with a filter, and only while something matches it. */
  showBulk() {
    const noFilter = filterIsEmpty(this.query.filter);
    const none = this.model !== null && this.model.query === this.query && this.model.count === 0;
    this.bulkButton.disabled = noFilter || none;
    this.bulkHint.textContent = noFilter ? "Set a filter to delete in bulk." : none ? "Nothing to delete: no session matches." : "";
  }

  go(query) {
    const hash = `#/sessions?${writeQuery(query)}`;
    if (hash === location.hash) this.load();
    else location.hash = hash;
  }

  submit(event) {
    event.preventDefault();
    performance.mark("sessiond:filter-submitted");
    const { inputs } = this;
    const filter = {};
    if (inputs.prefix.value) filter.prefix = inputs.prefix.value;
    for (const name of ["updated_after", "updated_before", "created_after", "created_before"]) {
      const seconds = fromLocalInput(inputs[name].value);
      if (seconds !== null) filter[name] = seconds;
    }
    for (const name of ["min_messages", "max_messages"]) {
      const n = Number.parseInt(inputs[name].value, 10);
      if (Number.isFinite(n) && n >= 0) filter[name] = n;
    }
    this.go({ ...this.query, filter, limit: Number(inputs.limit.value), pages: [] });
  }

  clear() {
    this.go({ ...this.query, filter: {}, pages: [] });
  }

  sortBy(col) {
    const order = this.query.sort === col.sort ? (this.query.order === "asc" ? "desc" : "asc") : col.first;
    this.go({ ...this.query, sort: col.sort, order, pages: [] });
  }

  goPage(pages) {
    this.go({ ...this.query, pages });
  }

  // -- loading ------------------------------------------------------------------------

  async load() {
    if (this.controller) this.controller.abort();
    this.listPart.hidden = Boolean(this.query.q);
    this.search.show(this.query); // searches with q, hides the results without
    if (this.query.q) {
      this.controller = null;
      this.model = null;
      return;
    }
    const controller = new AbortController();
    this.controller = controller;
    const query = this.query;
    this.table.setAttribute("aria-busy", "true");
    this.pending = [];
    try {
      const answer = await this.ctx.api.json("GET", "sessions", { query: listParams(query), signal: controller.signal });
      if (controller.signal.aborted) return;
      const model = new PageModel(query, answer);
      this.model = model;
      for (const [type, data] of this.pending) model.apply(type, data);
      this.pending = [];
      this.error.hidden = true;
      this.render();
      // The first frame that shows the rows (for bench/ui.py and the browser's profiler). This page's
      // model, not this.model: a search asked for before the frame leaves the view without one.
      requestAnimationFrame(() => setTimeout(() => performance.mark("sessiond:table-painted", { detail: model.rows.length })));
    } catch (err) {
      if (controller.signal.aborted) return;
      this.showError(err);
    } finally {
      if (this.controller === controller) {
        this.controller = null;
        this.table.removeAttribute("aria-busy");
      }
    }
  }

  showError(err) {
    if (err instanceof ApiError) {
      this.error.replaceChildren(`The list could not be loaded: ${err.detail} `,
        h("a", { href: "#/sessions" }, "Start again"));
      this.error.hidden = false;
    } else {
      this.ctx.failure(err, "Cannot list sessions");
    }
  }

  // -- rendering ----------------------------------------------------------------------

  render() {
    const { model, query } = this;
    const page = query.pages.length + 1;
    const count = formatCount(model.count);
    const filtered = !filterIsEmpty(query.filter);
    const one = model.count === 1;
    this.summary.textContent = `${count} ${one ? "session" : "sessions"}${filtered ? (one ? " matches" : " match") : ""} · page ${page}`;
    this.showBulk();
    this.pager.first.disabled = page === 1;
    this.pager.previous.disabled = page === 1;
    this.pager.next.disabled = !model.next;
    this.pager.label.textContent = `Page ${page}`;
    this.empty.hidden = model.rows.length > 0;
    this.empty.textContent = filtered ? "No sessions match this filter." : page > 1 ? "No more sessions." : "No sessions yet.";

    const existing = new Map();
    for (const tr of this.body.children) existing.set(tr.dataset.key, tr);
    const wanted = model.rows.map((row) => {
      let tr = existing.get(row.key);
      if (tr) {
        existing.delete(row.key);
        if (tr.dataset.shown !== this.shownAs(row)) this.fill(tr, row);
      } else {
        tr = h("tr", { dataset: { key: row.key } });
        this.fill(tr, row);
        tr.append(h("td", { class: "actions" }, this.ctx.mayDelete ? h("button", {
          type: "button", class: "quiet small", "aria-label": `Delete ${row.key}`, onclick: () => this.deleteOne(row.key),
        }, "Delete") : ""));
      }
      const mark = this.marks.get(row.key);
      tr.className = mark ? `live-${mark}` : "";
      return tr;
    });
    for (const gone of existing.values()) gone.remove();
    // Move only rows out of place, so a focused button keeps its focus.
    wanted.forEach((tr, i) => {
      if (this.body.children[i] !== tr) this.body.insertBefore(tr, this.body.children[i] || null);
    });
  }

  shownAs(row) {
    return JSON.stringify([row, this.cameBack.has(row.key)]);
  }

  fill(tr, row) {
    tr.dataset.shown = this.shownAs(row);
    const cells = [
      h("td", { class: "key", "data-label": "Key" }, h("a", { href: sessionHash(row.key) }, row.key),
        this.cameBack.has(row.key) ? h("span", { class: "badge", title: "Deleted, then written back by the agent from its cache" }, "came back") : null),
      h("td", { class: "channel", "data-label": "Channel" }, channelOf(row.key) || h("span", { class: "muted" }, "—")),
      h("td", { class: "num", "data-label": "Messages" }, formatCount(row.message_count)),
      h("td", { "data-label": "Created" }, timeElement(row.created_at)),
      h("td", { "data-label": "Updated" }, timeElement(row.updated_at)),
      h("td", { class: "num", "data-label": "Size" }, formatBytes(row.size)),
    ];
    const actions = tr.querySelector("td.actions");
    for (const td of [...tr.children]) if (td !== actions) td.remove();
    tr.prepend(...cells);
  }

  scheduleRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      if (this.model) this.render();
    });
  }

  // -- live ---------------------------------------------------------------------------

  onEvent(type, data) {
    if (this.query.q) {
      this.search.onEvent(type, data);
      return;
    }
    if (type === "resync") {
      this.load();
      return;
    }
    if (type === "resurrected" && typeof data.key === "string") {
      this.cameBack.add(data.key);
      this.mark(data.key, "changed");
      this.scheduleRender();
      return;
    }
    if (!["created", "updated", "deleted"].includes(type) || typeof data.key !== "string") return;
    if (this.controller) {
      this.pending.push([type, data]); // applied once the page being loaded arrives
      return;
    }
    if (!this.model) return;
    const known = this.model.apply(type, data);
    if (type !== "deleted") this.mark(data.key, type === "created" ? "new" : "changed");
    if (!known) this.scheduleRecount();
    this.scheduleRender();
  }

  mark(key, kind) {
    this.marks.set(key, kind);
    setTimeout(() => {
      if (this.marks.get(key) === kind) {
        this.marks.delete(key);
        this.scheduleRender();
      }
    }, LIVE_MARK_MS);
  }

  // A change to a session off this page may or may not alter the total: list the page
  // again once changes pause (but at least every few seconds while they go on).
  scheduleRecount() {
    const now = Date.now();
    if (!this.recount.timer) this.recount.since = now;
    clearTimeout(this.recount.timer);
    const wait = Math.max(0, Math.min(RECOUNT_QUIET_MS, this.recount.since + RECOUNT_MAX_WAIT_MS - now));
    this.recount.timer = setTimeout(() => {
      this.recount.timer = null;
      this.load();
    }, wait);
  }

  // -- clean-up -----------------------------------------------------------------------

  async trashNote() {
    try {
      const trash = await this.ctx.trashInfo();
      return trash.enabled
        ? `Deleted sessions stay in the trash for ${formatCount(trash.days)} days and can be restored.`
        : "The trash is off: this cannot be undone.";
    } catch {
      return "";
    }
  }

  async deleteOne(key) {
    const row = this.model && this.model.rows.find((r) => r.key === key);
    const ok = await this.ctx.confirm({
      title: "Delete this session?",
      body: [
        h("p", {}, h("code", { class: "key" }, key)),
        row ? h("p", {}, `${formatCount(row.message_count)} messages, last updated ${formatTime(row.updated_at)}.`) : null,
        h("p", {}, await this.trashNote()),
      ],
      confirm: "Delete",
    });
    if (!ok) return;
    try {
      await deleteSession(this.ctx.api, key);
      this.ctx.toast(`Deleted ${key}`);
      if (this.model && !this.controller) {
        this.model.apply("deleted", { key });
        this.render();
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.ctx.toast(`${key} was already gone.`);
      else this.ctx.failure(err, `Cannot delete ${key}`);
    }
  }

  async bulkDelete() {
    const filter = { ...this.query.filter };
    if (filterIsEmpty(filter)) return;
    let preview;
    try {
      preview = await this.ctx.api.json("POST", "sessions:batchDelete", { body: { filter, dry_run: true, max: BULK_MAX } });
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        this.ctx.toast(`More than ${formatCount(BULK_MAX)} sessions match: the page deletes at most that many at once. Narrow the filter.`, "error");
      } else {
        this.ctx.failure(err, "Cannot preview the deletion");
      }
      return;
    }
    const matched = preview.matched;
    if (!matched.length) {
      this.ctx.toast("No session matches this filter: nothing to delete.");
      return;
    }
    const noun = matched.length === 1 ? "session" : "sessions";
    const ok = await this.ctx.confirm({
      title: `Delete ${formatCount(matched.length)} ${noun}?`,
      body: [
        h("p", { class: "preview-count" }, `${formatCount(matched.length)} ${noun} match: ${describeFilter(filter)}.`),
        // Every key that will go, and only those: one written or changed after this
        // preview is not deleted (the server compares each with the version shown here).
        h("ul", { class: "sample", "aria-label": "The sessions to delete", tabindex: "0" },
          matched.map((key) => h("li", {}, h("code", { class: "key" }, key)))),
        h("p", { class: "hint" }, "Only these are deleted: a session changed or added after this list was made stays."),
        h("p", {}, await this.trashNote()),
      ],
      confirm: `Delete ${formatCount(matched.length)} ${noun}`,
    });
    if (!ok) return;
    try {
      const done = await this.ctx.api.json("POST", "sessions:batchDelete", {
        body: { keys: matched, expect: preview.versions || {}, max: matched.length },
      });
      this.ctx.toast(bulkResult(done), done.failed.length ? "error" : "info");
    } catch (err) {
      this.ctx.failure(err, "Cannot delete");
    }
    this.load();
  }

  destroy() {
    this.search.destroy();
    if (this.controller) this.controller.abort();
    clearTimeout(this.recount.timer);
  }
}

// The trash: deleted sessions kept for trash_days, each readable (GET /api/v1/trash/{id},
// shown read-only) and restorable; or, when the trash is off, a plain statement that
// deletions are permanent.

import { ApiError } from "./api.js";
import { decodeJson, parsePythonJson, renderMessage } from "./conversation.js";
import { h, newId, timeElement } from "./dom.js";
import { finite, formatBytes, formatCount } from "./format.js";
import { sessionHash } from "./sessions_model.js";

const RELOAD_DELAY_MS = 500;
const BATCH = 200; // messages rendered at a time, as in the session view

export class TrashView {
  constructor(ctx) {
    this.ctx = ctx;
    this.title = "Trash";
    this.controller = new AbortController();
    this.timer = null;
    this.preview = null; // {id, el, controller} of the entry being read, kept across reloads
    this.content = h("div", {}, h("p", { class: "muted" }, "Loading…"));
    this.el = h("section", { class: "view trash-view", "aria-labelledby": "trash-title" },
      h("h1", { id: "trash-title" }, "Trash"), this.content);
    this.load();
  }

  async load() {
    const { signal } = this.controller;
    try {
      const trash = await this.ctx.trashInfo();
      if (!trash.enabled) {
        this.content.replaceChildren(h("p", { class: "notice trash-off" },
          "The trash is off: deleting a session removes its file for good. Set ",
          h("code", {}, "trash_days"), " above 0 to keep deleted sessions restorable for that many days."));
        return;
      }
      const answer = await this.ctx.api.json("GET", "trash", { signal });
      if (signal.aborted) return;
      this.show(answer.items, trash.days);
    } catch (err) {
      if (!signal.aborted) this.ctx.failure(err, "Cannot list the trash");
    }
  }

  show(items, days) {
    const intro = h("p", { class: "summary", role: "status" },
      `${formatCount(items.length)} deleted ${items.length === 1 ? "session" : "sessions"}, each kept for ${formatCount(days)} days.`);
    // The entry being read stays open across reloads while it is still in the trash.
    const reading = this.preview && items.some((item) => item.id === this.preview.id) ? this.preview.el : null;
    if (!reading) this.closePreview();
    if (!items.length) {
      this.content.replaceChildren(intro, h("p", { class: "empty" }, "The trash is empty."));
      return;
    }
    const rows = items.map((item) => {
      const key = item.key === null ? "(not a valid session when deleted)" : item.key;
      return h("tr", { dataset: { id: item.id } },
        h("td", { class: "key", "data-label": "Key" }, key),
        h("td", { "data-label": "Deleted" }, timeElement(item.deleted_at)),
        h("td", { "data-label": "Purged after" }, timeElement(item.purge_at)),
        h("td", { class: "num", "data-label": "Messages" }, formatCount(item.message_count)),
        h("td", { class: "num", "data-label": "Size" }, formatBytes(item.size)),
        h("td", { class: "actions" },
          h("button", { type: "button", class: "small quiet", "aria-label": `View ${key}`, onclick: () => this.view(item) }, "View"),
          " ",
          h("button", {
            type: "button", class: "small", hidden: !this.ctx.mayDelete, "aria-label": `Restore ${key}`,
            onclick: (e) => this.restore(item, e.currentTarget),
          }, "Restore")));
    });
    const head = ["Key", "Deleted", "Purged after", "Messages", "Size"].map((label) =>
      h("th", { scope: "col", class: label === "Messages" || label === "Size" ? "num" : "" }, label));
    head.push(h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")));
    this.content.replaceChildren(intro, h("div", { class: "table-wrap" },
      h("table", { class: "trash" }, h("caption", { class: "visually-hidden" }, "Deleted sessions"),
        h("thead", {}, h("tr", {}, head)), h("tbody", {}, rows))), ...(reading ? [reading] : []));
  }

  /** Read a trashed session, read-only, below the list: its file as the trash keeps it. */
  async view(item) {
    this.closePreview();
    const key = item.key === null ? "(not a valid session when deleted)" : item.key;
    const titleId = newId("trash-preview");
    const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
    const el = h("section", { class: "trash-preview", "aria-labelledby": titleId },
      h("h2", { id: titleId, class: "key" }, `Deleted session ${key}`),
      h("p", { class: "notice" }, "Read-only: the file as the trash keeps it. Restore it to use it again."),
      h("div", { class: "toolbar" },
        h("button", { type: "button", hidden: !this.ctx.mayDelete, "aria-label": `Restore ${key}`, onclick: (e) => this.restore(item, e.currentTarget) }, "Restore"),
        h("button", { type: "button", class: "quiet", onclick: () => this.closePreview() }, "Close")),
      body);
    const controller = new AbortController();
    this.preview = { id: item.id, el, controller };
    this.content.append(el);
    el.scrollIntoView({ block: "start" });
    try {
      const resp = await this.ctx.api.fetch("GET", `trash/${encodeURIComponent(item.id)}`, { signal: controller.signal });
      const bytes = await resp.arrayBuffer();
      if (controller.signal.aborted) return;
      this.showPreview(body, parsePythonJson(decodeJson(bytes)), item);
    } catch (err) {
      if (controller.signal.aborted) return;
      if (err instanceof ApiError) body.replaceChildren(h("p", { class: "error" }, `Cannot read it: ${err.message}`));
      else if (err instanceof SyntaxError) body.replaceChildren(h("p", { class: "error" }, "The trashed file is not valid JSON."));
      else this.ctx.failure(err, "Cannot read the trashed session");
    }
  }

  showPreview(body, doc, item) {
    const isObject = doc && typeof doc === "object" && !Array.isArray(doc);
    const messages = isObject && Array.isArray(doc.messages) ? doc.messages : [];
    const summary = isObject && typeof doc.summary === "string" && doc.summary ? doc.summary : null;
    const list = h("ol", { class: "messages", "aria-label": "Messages" });
    const more = h("button", { type: "button", class: "quiet" });
    let shown = 0;
    const showMore = () => {
      const end = Math.min(messages.length, shown + BATCH);
      for (let i = shown; i < end; i += 1) list.append(h("li", {}, renderMessage(messages[i], i)));
      shown = end;
      const left = messages.length - end;
      more.hidden = left <= 0;
      more.textContent = `Show ${formatCount(Math.min(BATCH, left))} more of ${formatCount(left)} messages`;
    };
    more.addEventListener("click", showMore);
    const facts = [
      ["Messages", formatCount(messages.length)],
      ["Created", timeElement(isObject ? finite(doc.created_at) : null)],
      ["Updated", timeElement(isObject ? finite(doc.updated_at) : null)],
      ["Deleted", timeElement(item.deleted_at)],
      ["Size", formatBytes(item.size)],
    ];
    body.replaceChildren(
      h("dl", { class: "facts" }, facts.map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value)))),
      h("h3", {}, "Summary"),
      summary ? h("div", { class: "text" }, summary) : h("p", { class: "muted" }, "No summary."),
      h("h3", {}, "Conversation"),
      messages.length ? list : h("p", { class: "muted" }, "No messages."),
      more);
    showMore();
  }

  closePreview() {
    if (!this.preview) return;
    this.preview.controller.abort();
    this.preview.el.remove();
    this.preview = null;
  }

  async restore(item, button) {
    button.disabled = true;
    try {
      const answer = await this.ctx.api.json("POST", "trash:restore", { body: { ids: [item.id] } });
      if (answer.restored.length) {
        const key = answer.restored[0].key;
        const link = key === null ? null : h("a", { href: sessionHash(key) }, "Open it");
        this.ctx.toast(h("span", {}, `Restored ${key ?? "the file"}. `, link));
      } else {
        const reason = answer.failed.length ? answer.failed[0].reason : "unknown reason";
        this.ctx.toast(`Cannot restore ${item.key ?? "the file"}: ${reason}`, "error");
      }
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) this.ctx.failure(err, "Cannot restore");
    }
    this.load();
  }

  onEvent(type) {
    // A delete elsewhere fills the trash; a restore or a purge empties it.
    if (type === "deleted" || type === "created" || type === "resync") {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.load(), RELOAD_DELAY_MS);
    }
  }

  destroy() {
    this.controller.abort();
    clearTimeout(this.timer);
    this.closePreview();
  }
}

// The trash: deleted sessions kept for trash_days, each restorable; or, when the trash
// is off, a plain statement that deletions are permanent.

import { ApiError } from "./api.js";
import { formatBytes, formatCount, h, timeElement } from "./dom.js";
import { sessionHash } from "./sessions_model.js";

const RELOAD_DELAY_MS = 500;

export class TrashView {
  constructor(ctx) {
    this.ctx = ctx;
    this.title = "Trash";
    this.controller = new AbortController();
    this.timer = null;
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
        h("td", { class: "actions" }, h("button", {
          type: "button", class: "small", "aria-label": `Restore ${key}`, onclick: (e) => this.restore(item, e.currentTarget),
        }, "Restore")));
    });
    const head = ["Key", "Deleted", "Purged after", "Messages", "Size"].map((label) =>
      h("th", { scope: "col", class: label === "Messages" || label === "Size" ? "num" : "" }, label));
    head.push(h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")));
    this.content.replaceChildren(intro, h("div", { class: "table-wrap" },
      h("table", { class: "trash" }, h("caption", { class: "visually-hidden" }, "Deleted sessions"),
        h("thead", {}, h("tr", {}, head)), h("tbody", {}, rows))));
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
  }
}

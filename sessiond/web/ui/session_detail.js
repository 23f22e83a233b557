// One session: its metadata and its conversation, from the export endpoint (the file as
// stored), with long contents and tool calls folded; download and delete.

import { ApiError, deleteSession } from "./api.js";
import { BATCH, decodeJson, foldable, parsePythonJson, renderMessage } from "./conversation.js";
import { h, timeElement } from "./dom.js";
import { channelOf, finite, formatBytes, formatCount, formatDuration, formatTime } from "./format.js";
import { hitTarget, markTexts } from "./highlight.js";

function fileNameOf(resp, fallback = "session.json") {
  const header = resp.headers.get("Content-Disposition") || "";
  const match = /filename\*=UTF-8''([^;]+)/i.exec(header);
  if (!match) return fallback;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return fallback;
  }
}

export class SessionView {
  constructor(ctx, route) {
    this.ctx = ctx;
    this.key = route.key;
    this.title = this.key;
    this.target = hitTarget(route.params); // a search hit: the message to scroll to, the words to mark
    this.controller = new AbortController();
    this.downloadUrl = null;
    this.notice = h("p", { class: "notice", role: "status", hidden: true });
    // Deleted through sessiond, then written back by the agent from its cache (issue 21).
    this.resurrected = h("p", { class: "notice resurrected", hidden: true });
    this.body = h("div", { class: "session-body" }, h("p", { class: "muted" }, "Loading…"));
    this.downloadLink = h("a", { class: "button", href: "#", "aria-disabled": "true", onclick: (e) => this.download(e) }, "Download");
    this.markdownButton = h("button", { type: "button", onclick: () => this.downloadMarkdown() }, "Download as Markdown");
    this.deleteButton = h("button", { type: "button", class: "danger", hidden: !ctx.mayDelete, onclick: () => this.remove() }, "Delete…");
    this.el = h("section", { class: "view session-view", "aria-labelledby": "session-title" },
      h("p", {}, h("a", { href: ctx.lastListHash || "#/sessions" }, "← Sessions")),
      h("h1", { id: "session-title", class: "key" }, this.key),
      h("div", { class: "toolbar" }, this.downloadLink, this.markdownButton, this.deleteButton),
      this.resurrected,
      this.notice,
      this.body);
    this.load();
  }

  async load() {
    const { signal } = this.controller;
    this.notice.hidden = true;
    this.loadMark(signal);
    try {
      const resp = await this.ctx.api.fetch("GET", "export", { query: { key: this.key }, signal });
      const bytes = await resp.arrayBuffer();
      if (signal.aborted) return;
      this.fileName = fileNameOf(resp);
      this.setDownload(bytes);
      const text = decodeJson(bytes);
      this.show(parsePythonJson(text), bytes.byteLength);
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 404) {
        this.body.replaceChildren(h("p", { class: "empty" }, "There is no session with this key (it may have been deleted)."));
        this.deleteButton.disabled = true;
      } else if (err instanceof SyntaxError) {
        this.body.replaceChildren(h("p", { class: "error" }, "The file is not valid JSON any more; it may be being rewritten."));
      } else {
        this.ctx.failure(err, "Cannot load the session");
      }
    }
  }

  // The detail answer says whether the session came back after a deletion. Keys "." and ".."
  // cannot be named in a path (the browser resolves them), so those go without.
  async loadMark(signal) {
    if (this.key === "." || this.key === "..") return;
    try {
      const detail = await this.ctx.api.json("GET", `sessions/${encodeURIComponent(this.key)}`, { signal, attempts: 1 });
      this.showMark(detail.resurrected);
    } catch {
      // the conversation's own load reports what went wrong
    }
  }

  showMark(mark) {
    this.resurrected.hidden = !mark;
    if (!mark) return;
    const by = mark.deleted_by === "retention" ? "by retention" : "through the API or this page";
    this.resurrected.replaceChildren(
      h("strong", {}, "Came back after deletion. "),
      `Deleted ${by} at ${formatTime(mark.deleted_at)}, then written again by the agent from its cache ` +
        `at ${formatTime(mark.resurrected_at)}. Restart the agent, or send /new in that chat, to stop it.`);
  }

  setDownload(bytes) {
    if (this.downloadUrl) URL.revokeObjectURL(this.downloadUrl);
    this.downloadUrl = URL.createObjectURL(new Blob([bytes], { type: "application/json" }));
    this.downloadLink.href = this.downloadUrl;
    this.downloadLink.download = this.fileName;
    this.downloadLink.removeAttribute("aria-disabled");
  }

  // The conversation to read and share, rendered by the daemon (GET export?format=markdown).
  async downloadMarkdown() {
    this.markdownButton.disabled = true;
    try {
      const resp = await this.ctx.api.fetch("GET", "export", { query: { key: this.key, format: "markdown" }, signal: this.controller.signal });
      const url = URL.createObjectURL(new Blob([await resp.arrayBuffer()], { type: "text/markdown" }));
      const link = h("a", { href: url, download: fileNameOf(resp, "session.md"), hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (err) {
      if (this.controller.signal.aborted) return;
      if (err instanceof ApiError && err.status === 404) this.ctx.toast(`${this.key} is gone; nothing to download.`);
      else this.ctx.failure(err, "Cannot export as Markdown");
    } finally {
      this.markdownButton.disabled = false;
    }
  }

  download(event) {
    if (!this.downloadUrl) event.preventDefault();
  }

  show(doc, size) {
    const isObject = doc && typeof doc === "object" && !Array.isArray(doc);
    const messages = isObject && Array.isArray(doc.messages) ? doc.messages : [];
    const created = isObject ? finite(doc.created_at) : null;
    const updated = isObject ? finite(doc.updated_at) : null;
    const facts = [
      ["Channel", channelOf(this.key) || "—"],
      ["Messages", formatCount(messages.length)],
      ["Created", timeElement(created)],
      ["Updated", timeElement(updated)],
      ["Since created", created === null ? "—" : formatDuration(Date.now() / 1000 - created)],
      ["Size", formatBytes(size)],
      ["File", h("code", {}, this.fileName)],
    ];
    const summary = isObject && typeof doc.summary === "string" && doc.summary ? doc.summary : null;
    this.list = h("ol", { class: "messages", "aria-label": "Messages" });
    this.messages = messages;
    this.shown = 0;
    this.more = h("button", { type: "button", class: "quiet", onclick: () => this.showMore() });
    this.body.replaceChildren(
      h("dl", { class: "facts" }, facts.map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value)))),
      (this.summaryBox = h("section", { class: "summary-box", "aria-label": "Summary" },
        h("h2", {}, "Summary"), summary ? foldable(summary, { open: false }) : h("p", { class: "muted" }, "No summary."))),
      h("h2", {}, "Conversation"),
      messages.length ? this.list : h("p", { class: "muted" }, "No messages."),
      this.more);
    this.showMore();
    if (this.target) this.reveal(this.target);
  }

  /** Scroll to a search hit's message (rendering up to it) with the searched words marked. */
  reveal({ message, marks }) {
    let where = this.summaryBox;
    if (message !== "summary") {
      if (message >= this.messages.length) return;
      while (this.shown <= message) this.showMore();
      where = this.list.children[message];
    }
    where.classList.add("search-target");
    const marked = markTexts(where, marks);
    where.tabIndex = -1;
    where.focus({ preventScroll: true });
    (marked[0] || where).scrollIntoView({ block: "center" });
  }

  showMore() {
    const end = Math.min(this.messages.length, this.shown + BATCH);
    for (let i = this.shown; i < end; i += 1) this.list.append(h("li", {}, renderMessage(this.messages[i], i)));
    this.shown = end;
    const left = this.messages.length - end;
    this.more.hidden = left <= 0;
    this.more.textContent = `Show ${formatCount(Math.min(BATCH, left))} more of ${formatCount(left)} messages`;
  }

  async remove() {
    let note = "";
    try {
      const trash = await this.ctx.trashInfo();
      note = trash.enabled ? `It stays in the trash for ${formatCount(trash.days)} days.` : "The trash is off: this cannot be undone.";
    } catch {
      note = "";
    }
    const ok = await this.ctx.confirm({
      title: "Delete this session?",
      body: [h("p", {}, h("code", { class: "key" }, this.key)), h("p", {}, note)],
      confirm: "Delete",
    });
    if (!ok) return;
    try {
      await deleteSession(this.ctx.api, this.key);
      this.ctx.toast(`Deleted ${this.key}`);
      location.hash = this.ctx.lastListHash || "#/sessions";
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.ctx.toast(`${this.key} was already gone.`);
      else this.ctx.failure(err, "Cannot delete");
    }
  }

  onEvent(type, data) {
    if (type === "resync") {
      this.load();
      return;
    }
    if (!data || data.key !== this.key) return;
    if (type === "resurrected") {
      this.showMark(data);
      return;
    }
    if (type === "compacted") {
      this.notice.replaceChildren(`The agent compacted this session: ${formatCount(data.before)} → ${formatCount(data.after)} ` +
        "messages, the older ones now in its summary. ",
        h("button", { type: "button", class: "quiet small", onclick: () => this.load() }, "Show the new version"));
      this.notice.hidden = false;
      return;
    }
    if (type === "deleted") {
      this.notice.replaceChildren("This session was deleted.");
      this.deleteButton.disabled = true;
    } else {
      this.notice.replaceChildren("This session changed on disk. ",
        h("button", { type: "button", class: "quiet small", onclick: () => this.load() }, "Show the new version"));
      this.deleteButton.disabled = false;
    }
    this.notice.hidden = false;
  }

  destroy() {
    this.controller.abort();
    if (this.downloadUrl) URL.revokeObjectURL(this.downloadUrl);
  }
}

// One session: its metadata and its conversation, from the export endpoint (the file as
// stored), with long contents and tool calls folded; download and delete.

import { ApiError, deleteSession } from "./api.js";
import { channelOf, finite, formatBytes, formatCount, formatDuration, h, timeElement } from "./dom.js";

const FOLD_CHARS = 600;
const FOLD_LINES = 12;
const PREVIEW_CHARS = 160;
const BATCH = 200; // messages rendered at a time: a session may hold thousands
const KNOWN_FIELDS = new Set(["role", "content", "tool_calls", "tool_call_id", "name"]);

/**
 * JSON as Python writes it: json.dumps may emit NaN, Infinity and -Infinity, which
 * JSON.parse refuses. Those words outside strings become null.
 */
export function parsePythonJson(text) {
  try {
    return JSON.parse(text);
  } catch (err) {
    const patched = text.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/gs, (m) => (m[0] === '"' ? m : "null"));
    if (patched === text) throw err;
    return JSON.parse(patched);
  }
}

/**
 * The text of a JSON file's bytes, in the encoding json.loads (the daemon's reference
 * parser) reads it in: a BOM says UTF-32, UTF-16 or UTF-8; else the zero bytes among the
 * first four tell UTF-16 and UTF-32 from UTF-8 (RFC 8259's rule, json.detect_encoding).
 */
export function decodeJson(buffer) {
  const b = new Uint8Array(buffer);
  const starts = (...bytes) => bytes.every((byte, i) => b[i] === byte);
  let encoding = "utf-8";
  let skip = 0;
  if (starts(0x00, 0x00, 0xfe, 0xff)) [encoding, skip] = ["utf-32be", 4];
  else if (starts(0xff, 0xfe, 0x00, 0x00)) [encoding, skip] = ["utf-32le", 4];
  else if (starts(0xfe, 0xff)) [encoding, skip] = ["utf-16be", 2];
  else if (starts(0xff, 0xfe)) [encoding, skip] = ["utf-16le", 2];
  else if (starts(0xef, 0xbb, 0xbf)) [encoding, skip] = ["utf-8", 3];
  else if (b.length >= 4 && b[0] === 0) encoding = b[1] ? "utf-16be" : "utf-32be";
  else if (b.length >= 4 && b[1] === 0) encoding = b[2] || b[3] ? "utf-16le" : "utf-32le";
  else if (b.length === 2 && b[0] === 0) encoding = "utf-16be";
  else if (b.length === 2 && b[1] === 0) encoding = "utf-16le";
  const body = b.subarray(skip);
  if (encoding.startsWith("utf-32")) return decodeUtf32(body, encoding === "utf-32le");
  return new TextDecoder(encoding, { ignoreBOM: true }).decode(body);
}

/** UTF-32 (TextDecoder has none); a code unit that is no character reads as U+FFFD. */
function decodeUtf32(bytes, littleEndian) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parts = [];
  let chunk = [];
  for (let at = 0; at + 4 <= bytes.byteLength; at += 4) {
    const code = view.getUint32(at, littleEndian);
    chunk.push(code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff) ? 0xfffd : code);
    if (chunk.length === 8192) {
      parts.push(String.fromCodePoint(...chunk));
      chunk = [];
    }
  }
  parts.push(String.fromCodePoint(...chunk));
  if (bytes.byteLength % 4) parts.push("\ufffd");
  return parts.join("");
}

function fileNameOf(resp) {
  const header = resp.headers.get("Content-Disposition") || "";
  const match = /filename\*=UTF-8''([^;]+)/i.exec(header);
  if (!match) return "session.json";
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return "session.json";
  }
}

function pretty(value) {
  return JSON.stringify(value, null, 2) ?? String(value);
}

/** Text, folded behind a <details> when long; the summary line shows its beginning. */
function foldable(text, { label = "", pre = false, open = false } = {}) {
  const lines = text.split("\n").length;
  const block = h(pre ? "pre" : "div", { class: pre ? "code" : "text" }, text);
  if (text.length <= FOLD_CHARS && lines <= FOLD_LINES) return block;
  const preview = text.slice(0, PREVIEW_CHARS).replace(/\s+/g, " ");
  return h("details", { class: "fold", open },
    h("summary", {}, label ? h("span", { class: "fold-label" }, label, " ") : null,
      h("span", { class: "preview" }, preview, "…"),
      h("span", { class: "muted" }, ` (${formatCount(text.length)} characters — show all)`)),
    block);
}

function renderContent(content) {
  if (content === null || content === undefined || content === "") return h("p", { class: "muted" }, "(no content)");
  if (typeof content === "string") return foldable(content);
  if (Array.isArray(content)) {
    // Content parts: [{type: "text", text}, {type: "image_url", image_url: {url}}, ...]
    return h("div", { class: "parts" }, content.map((part) => {
      if (part && typeof part === "object" && part.type === "text" && typeof part.text === "string") return foldable(part.text);
      return foldable(pretty(part), { label: part && typeof part.type === "string" ? part.type : "part", pre: true });
    }));
  }
  return foldable(pretty(content), { pre: true });
}

function renderToolCall(call) {
  const fn = (call && call.function) || {};
  const name = typeof fn.name === "string" ? fn.name : "(unnamed tool)";
  let args = fn.arguments;
  if (typeof args === "string") {
    try {
      args = pretty(JSON.parse(args));
    } catch {
      // arguments that are not JSON are shown as they are
    }
  } else {
    args = pretty(args === undefined ? {} : args);
  }
  return h("details", { class: "tool-call" },
    h("summary", {}, "Tool call ", h("code", {}, name),
      call && typeof call.id === "string" ? h("span", { class: "muted" }, ` (${call.id})`) : null),
    h("pre", { class: "code" }, args));
}

export function renderMessage(message, index) {
  if (!message || typeof message !== "object" || Array.isArray(message)) {
    return h("article", { class: "message role-other" }, h("header", {}, h("span", { class: "role" }, `#${index + 1}`)),
      foldable(pretty(message), { pre: true }));
  }
  const role = typeof message.role === "string" ? message.role : "unknown";
  const known = ["system", "user", "assistant", "tool"].includes(role) ? role : "other";
  const header = h("header", {},
    h("span", { class: "role" }, role),
    h("span", { class: "muted" }, ` #${index + 1}`),
    typeof message.name === "string" ? h("span", { class: "name" }, " · ", message.name) : null,
    typeof message.tool_call_id === "string" ? h("span", { class: "muted" }, ` · result of ${message.tool_call_id}`) : null);
  const calls = Array.isArray(message.tool_calls) ? message.tool_calls : [];
  const extra = Object.fromEntries(Object.entries(message).filter(([name]) => !KNOWN_FIELDS.has(name)));
  return h("article", { class: `message role-${known}` },
    header,
    calls.length && (message.content === "" || message.content === null) ? null : renderContent(message.content),
    calls.length ? h("div", { class: "tool-calls" }, calls.map(renderToolCall)) : null,
    Object.keys(extra).length ? h("details", { class: "extra" }, h("summary", {}, "Other fields"), h("pre", { class: "code" }, pretty(extra))) : null);
}

export class SessionView {
  constructor(ctx, route) {
    this.ctx = ctx;
    this.key = route.key;
    this.title = this.key;
    this.controller = new AbortController();
    this.downloadUrl = null;
    this.notice = h("p", { class: "notice", role: "status", hidden: true });
    this.body = h("div", { class: "session-body" }, h("p", { class: "muted" }, "Loading…"));
    this.downloadLink = h("a", { class: "button", href: "#", "aria-disabled": "true", onclick: (e) => this.download(e) }, "Download");
    this.deleteButton = h("button", { type: "button", class: "danger", onclick: () => this.remove() }, "Delete…");
    this.el = h("section", { class: "view session-view", "aria-labelledby": "session-title" },
      h("p", {}, h("a", { href: ctx.lastListHash || "#/sessions" }, "← Sessions")),
      h("h1", { id: "session-title", class: "key" }, this.key),
      h("div", { class: "toolbar" }, this.downloadLink, this.deleteButton),
      this.notice,
      this.body);
    this.load();
  }

  async load() {
    const { signal } = this.controller;
    this.notice.hidden = true;
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

  setDownload(bytes) {
    if (this.downloadUrl) URL.revokeObjectURL(this.downloadUrl);
    this.downloadUrl = URL.createObjectURL(new Blob([bytes], { type: "application/json" }));
    this.downloadLink.href = this.downloadUrl;
    this.downloadLink.download = this.fileName;
    this.downloadLink.removeAttribute("aria-disabled");
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
      h("section", { class: "summary-box", "aria-label": "Summary" },
        h("h2", {}, "Summary"), summary ? foldable(summary, { open: false }) : h("p", { class: "muted" }, "No summary.")),
      h("h2", {}, "Conversation"),
      messages.length ? this.list : h("p", { class: "muted" }, "No messages."),
      this.more);
    this.showMore();
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

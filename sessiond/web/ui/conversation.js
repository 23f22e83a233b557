// A conversation as the page shows it, shared by the session view and the trash's
// preview: the file's bytes decoded as json.loads would (UTF-8/16/32), Python's JSON
// read, and each message built as text nodes (long contents and tool calls folded).

import { h } from "./dom.js";
import { formatCount } from "./format.js";

const FOLD_CHARS = 600;
const FOLD_LINES = 12;
const PREVIEW_CHARS = 160;
export const BATCH = 200; // messages rendered at a time: a session may hold thousands
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

function pretty(value) {
  return JSON.stringify(value, null, 2) ?? String(value);
}

/** Text, folded behind a <details> when long; the summary line shows its beginning. */
export function foldable(text, { label = "", pre = false, open = false } = {}) {
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

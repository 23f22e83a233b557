// Search matches shown as <mark> elements holding text, shared by the search results
// and the session view: a snippet built from the API's segments, the address of a hit
// (the session, the message, the words to mark), and those words marked in a rendered
// message. Text only ever becomes Text nodes (dom.js's rule): a snippet is whatever a
// session file says, `<img src=x onerror=…>` included.

import { h } from "./dom.js";

const MAX_MARKS = 16; // words carried in a hit's address
const MAX_MARK_CHARS = 200;

/** A snippet's segments as nodes: plain text, and <mark> around each match. */
export function snippetNodes(segments) {
  if (!Array.isArray(segments)) return [];
  return segments.map((segment) => {
    const text = segment && typeof segment.text === "string" ? segment.text : "";
    return segment && segment.match === true ? h("mark", {}, text) : text;
  });
}

/** The distinct texts a hit's snippet marks (what to mark again in the session). */
export function matchedTexts(hit) {
  const texts = new Set();
  for (const segment of (hit && Array.isArray(hit.snippet) ? hit.snippet : [])) {
    if (segment && segment.match === true && typeof segment.text === "string" && segment.text.trim()) {
      texts.add(segment.text.slice(0, MAX_MARK_CHARS));
    }
  }
  return [...texts].slice(0, MAX_MARKS);
}

/** The page's address of a hit: the session, scrolled to the message, its words marked. */
export function hitHash(key, hit) {
  const params = new URLSearchParams();
  if (hit) {
    params.set("message", hit.message === null ? "summary" : String(hit.message));
    for (const text of matchedTexts(hit)) params.append("mark", text);
  }
  const query = params.toString();
  return `#/session/${encodeURIComponent(key)}${query ? `?${query}` : ""}`;
}

/** What a session view's address asks to show: {message: index or "summary", marks}, or null. */
export function hitTarget(params) {
  const message = params.get("message");
  if (message === null) return null;
  const marks = params.getAll("mark").filter((text) => text.trim()).slice(0, MAX_MARKS);
  if (message === "summary") return { message, marks };
  const index = Number(message);
  return Number.isInteger(index) && index >= 0 ? { message: index, marks } : null;
}

const escapeRegExp = (text) => text.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&");

/**
 * Put a <mark> around every occurrence of *texts* (case aside) in the text under *root*,
 * open the folds that hide one, and return the marks in document order.
 */
export function markTexts(root, texts) {
  const wanted = [...new Set(texts)].filter((text) => typeof text === "string" && text.trim());
  if (!wanted.length) return [];
  wanted.sort((a, b) => b.length - a.length); // the longest first: "refunds" before "refund"
  const pattern = new RegExp(wanted.map(escapeRegExp).join("|"), "giu");
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) nodes.push(node);
  const marks = [];
  for (const node of nodes) {
    const text = node.data;
    const pieces = [];
    let last = 0;
    for (const found of text.matchAll(pattern)) {
      if (found.index > last) pieces.push(text.slice(last, found.index));
      const mark = h("mark", { class: "search-match" }, found[0]);
      pieces.push(mark);
      marks.push(mark);
      last = found.index + found[0].length;
    }
    if (!pieces.length) continue;
    if (last < text.length) pieces.push(text.slice(last));
    node.replaceWith(...pieces); // strings become Text nodes
  }
  for (const mark of marks) {
    for (let fold = mark.closest("details"); fold && root.contains(fold); fold = fold.parentElement.closest("details")) {
      fold.open = true;
    }
  }
  return marks;
}

// Building elements (formatting values is format.js's).
//
// Every element of the page is made here, and text only ever becomes a Text node:
// session keys and contents are written by whoever can write a file, so nothing the
// API returns is ever parsed as HTML. (The page's CSP adds Trusted Types, under which
// innerHTML and its relatives throw, so a slip would fail loudly instead of running.)

import { dateOf, formatTime } from "./format.js";

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function setProps(el, props) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

/** An HTML element: h("a", {href: "#/x"}, "text", child, [more]). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

/** An SVG element, built the same way. */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props);
  append(el, children);
  return el;
}

let uniqueId = 0;
/** A fresh id for label/aria references. */
export function newId(prefix) {
  uniqueId += 1;
  return `${prefix}-${uniqueId}`;
}

/** A <time> element for a Unix time; the tooltip gives it to the second. */
export function timeElement(seconds) {
  const d = dateOf(seconds);
  if (d === null) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: d.toISOString(), title: d.toISOString().replace(".000Z", "Z") }, formatTime(seconds));
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      }, { once: true });
    }
  });
}

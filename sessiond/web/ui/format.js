// Values as the page shows them: counts, sizes, UTC times, durations, channels, and
// keys ordered as the server orders them. Pure functions: no element is built here
// (dom.js builds elements).

const numbers = new Intl.NumberFormat();
const pad = (n) => String(n).padStart(2, "0");

/** A finite number, else null (the API may send null for a timestamp stored as NaN). */
export function finite(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

export function formatCount(value) {
  return finite(value) === null ? "—" : numbers.format(value);
}

export function formatBytes(value) {
  if (finite(value) === null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = value;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[unit]}`;
}

export function dateOf(seconds) {
  if (finite(seconds) === null) return null;
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? null : date;
}

// Every time on the page is UTC, and says so: the daemon, its logs and the overview's
// days are UTC, and an operator comparing them should not have to convert.

/** Date and time in UTC, to the minute: 2026-11-29 09:32 UTC. */
export function formatTime(seconds) {
  const d = dateOf(seconds);
  if (d === null) return "—";
  return `${inputValue(d).replace("T", " ")} UTC`;
}

function inputValue(d) {
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

/** The value of a datetime-local input for a Unix time ("" for none), in UTC like the rest. */
export function toLocalInput(seconds) {
  const d = dateOf(seconds);
  return d === null ? "" : inputValue(d);
}

/** Unix seconds of a datetime-local input's value (read as UTC), or null. */
export function fromLocalInput(text) {
  if (!text) return null;
  const ms = new Date(`${text}Z`).getTime();
  return Number.isNaN(ms) ? null : ms / 1000;
}

export function formatDuration(seconds) {
  if (finite(seconds) === null) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 2 * 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

/**
 * Text with its invisible characters made visible: control characters (a newline, an
 * escape), format characters (a right-to-left override, a zero-width space) and line
 * separators become \u{…}. For file names, which anyone who can write a file chooses.
 */
export function visibleText(text) {
  return String(text).replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, (c) => `\\u{${c.codePointAt(0).toString(16)}}`);
}

/** The channel of a key: its prefix up to the first ":" ("" when it has none). */
export function channelOf(key) {
  const colon = key.indexOf(":");
  return colon < 0 ? "" : key.slice(0, colon);
}

/** Compare strings by code point, as the server (Python) sorts keys. */
export function compareKeys(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i += 1) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (astral characters) sort above the rest of the BMP by code point.
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

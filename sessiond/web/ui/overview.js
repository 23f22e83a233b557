// The overview: health and the index's figures (GET /api/v1/stats and /api/v1/health),
// drawn as charts; refreshed as the change feed reports changes.

import { h, timeElement } from "./dom.js";
import { formatBytes, formatCount, formatDuration, visibleText } from "./format.js";
import { barChart, columnChart, lineChart } from "./charts.js";

const REFRESH_MS = 3000; // at most one refresh this often while changes go on
// Health, invalid files and the watcher change without a session changing: look again now and then.
const POLL_MS = 30_000;
const SHOWN_CHANNELS = 15;
const SHOWN_INVALID = 100;

function tile(label, value, state) {
  return h("div", { class: `tile ${state || ""}` }, h("span", { class: "tile-label" }, label), h("span", { class: "tile-value" }, value));
}

function bucketLabel(bucket) {
  return bucket.min === bucket.max ? String(bucket.min) : `${bucket.min}–${bucket.max}`;
}

function ruleName(rule) {
  const parts = [];
  if (rule.idle_days !== null) parts.push(`idle over ${formatCount(rule.idle_days)} days`);
  if (rule.keep_at_most !== null) parts.push(`keep at most ${formatCount(rule.keep_at_most)}`);
  return rule.prefix === "" ? `every key: ${parts.join(", ")}` : `${rule.prefix} ${parts.join(", ")}`;
}

/** Retention (GET /api/v1/retention): the rules, the last run, the next, and what it would remove. */
function retentionPanel(r) {
  const title = h("h2", { id: "retention-title" }, "Retention");
  const panel = h("section", { class: "retention", "aria-labelledby": "retention-title" }, title);
  if (!r.rules.length) {
    panel.append(h("p", { class: "muted" }, "No retention rules: sessions are kept until deleted."));
    return panel;
  }
  const last = r.last_run;
  const preview = r.preview;
  panel.append(
    h("ul", { class: "retention-rules" }, ...r.rules.map((rule) => h("li", {}, ruleName(rule)))),
    h("dl", { class: "retention-facts" },
      h("dt", {}, "Mode"), h("dd", {}, r.dry_run ? "dry run: reports only, deletes nothing" : `deletes, at most ${formatCount(r.max_per_run)} a run`),
      h("dt", {}, "Last run"),
      h("dd", { class: last !== null && (last.outcome === "failed" || last.outcome === "partial") ? "warn" : "" }, last === null ? "not yet"
        : h("span", {}, timeElement(last.started_at), ` · ${last.outcome} · ${formatCount(last.matched)} matched, ${formatCount(last.deleted)} deleted`,
          last.failed.length ? ` · ${formatCount(last.failed.length)} failed` : "", last.reason ? ` · ${last.reason}` : "")),
      h("dt", {}, "Next run"), h("dd", {}, r.next_run_at === null ? "—" : timeElement(r.next_run_at)),
      h("dt", {}, "Next run would remove"),
      h("dd", { class: preview.over_maximum ? "warn" : "" },
        `${formatCount(preview.total)} sessions`, preview.total_files !== preview.total ? ` in ${formatCount(preview.total_files)} files` : "",
        preview.over_maximum ? " (over the maximum: the run will delete nothing)" : "")),
    h("ul", { class: "retention-preview" }, ...preview.rules.map((p) =>
      h("li", {}, `${p.rule === "*" ? "every key:" : p.rule} ${formatCount(p.count)} ${p.count === 1 ? "session" : "sessions"}`,
        p.files !== p.count ? ` in ${formatCount(p.files)} files` : "",
        p.sample.length ? h("span", { class: "muted" }, ` — e.g. ${p.sample.slice(0, 3).join(", ")}`) : ""))));
  return panel;
}

/** The files that are not sessions (GET /api/v1/invalid), each with why: the operator's next step is to fix or delete them. */
function invalidPanel(answer) {
  const rows = answer.files.map((file) => h("tr", {},
    h("td", { class: "key", "data-label": "File" }, visibleText(file.name)),
    h("td", { "data-label": "Reason" }, file.reason),
    h("td", { class: "num", "data-label": "Size" }, formatBytes(file.size)),
    h("td", { "data-label": "Modified" }, timeElement(file.mtime))));
  const shown = answer.truncated ? ` (the first ${formatCount(answer.files.length)} by name)` : "";
  return h("section", { class: "invalid-files", "aria-labelledby": "invalid-title" },
    h("h2", { id: "invalid-title" }, "Invalid files"),
    h("p", { class: "muted" }, `${formatCount(answer.count)} ${answer.count === 1 ? "file" : "files"} in the sessions folder ${answer.count === 1 ? "is" : "are"} not a valid session${shown}. `,
      "Fix or delete each; a file is read again as soon as it changes."),
    h("div", { class: "table-wrap" }, h("table", { class: "invalid" },
      h("thead", {}, h("tr", {}, ["File", "Reason", "Size", "Modified"].map((label) =>
        h("th", { scope: "col", class: label === "Size" ? "num" : "" }, label)))),
      h("tbody", {}, rows))));
}

export class OverviewView {
  constructor(ctx) {
    this.ctx = ctx;
    this.title = "Overview";
    this.controller = new AbortController();
    this.timer = null;
    this.lastLoad = 0;
    this.poll = setInterval(() => this.onEvent(), POLL_MS);
    this.content = h("div", {}, h("p", { class: "muted" }, "Loading…"));
    this.el = h("section", { class: "view overview-view", "aria-labelledby": "overview-title" },
      h("h1", { id: "overview-title" }, "Overview"), this.content);
    this.load();
  }

  async load() {
    const { signal } = this.controller;
    this.lastLoad = Date.now();
    try {
      const [stats, health, retention] = await Promise.all([
        this.ctx.api.json("GET", "stats", { signal }),
        // /api/v1/health answers 503 with its figures when unhealthy: show them all the same.
        this.ctx.api.fetch("GET", "health", { signal, accept: [503] }).then((resp) => resp.json()),
        this.ctx.api.json("GET", "retention", { signal }),
      ]);
      // Asked for only when there are some: most overviews have none.
      const invalid = stats.invalid_files ? await this.ctx.api.json("GET", "invalid", { signal, query: { limit: SHOWN_INVALID } }) : null;
      if (signal.aborted) return;
      this.show(stats, health, retention);
      if (invalid && invalid.count) this.content.querySelector(".tiles").after(invalidPanel(invalid));
    } catch (err) {
      if (!signal.aborted) this.ctx.failure(err, "Cannot load the overview");
    }
  }

  show(stats, health, retention) {
    const healthy = health.status === "ok";
    this.ctx.health(healthy, health.reason);
    const tiles = h("div", { class: "tiles" },
      tile("Status", healthy ? "ok" : `unavailable: ${health.reason}`, healthy ? "good" : "bad"),
      tile("Sessions", formatCount(stats.sessions)),
      tile("On disk", formatBytes(stats.bytes)),
      tile("Invalid files", formatCount(stats.invalid_files), stats.invalid_files ? "warn" : ""),
      tile("Key collisions", formatCount(stats.collisions), stats.collisions ? "warn" : ""),
      tile("Watcher", stats.watcher, stats.watcher === "ready" ? "good" : "bad"),
      tile("Trash", stats.trash.enabled ? `on, ${formatCount(stats.trash.days)} days` : "off"),
      tile("Version", health.version || "—"),
      tile("Up for", formatDuration(health.uptime_seconds)));

    const channels = stats.channels.slice(0, SHOWN_CHANNELS).map((c) => ({
      label: c.channel === "" ? "(no channel)" : c.channel,
      value: c.sessions,
      href: c.channel === "" ? null : `#/sessions?prefix=${encodeURIComponent(`${c.channel}:`)}`,
    }));
    const others = stats.sessions - channels.reduce((sum, c) => sum + c.value, 0);
    if (others > 0) channels.push({ label: "(other channels)", value: others });

    const labels = stats.days.map((d) => d.date);
    const charts = h("div", { class: "charts" },
      barChart("Sessions by channel", channels, "Sessions"),
      lineChart("Sessions created and updated per day, last 30 days (UTC)", labels, [
        { name: "created", values: stats.days.map((d) => d.created), cls: "created" },
        { name: "updated", values: stats.days.map((d) => d.updated), cls: "updated" },
      ]),
      columnChart("Sessions by number of messages", stats.messages.map((b) => ({ label: bucketLabel(b), value: b.sessions })), "Sessions", "messages"));
    this.content.replaceChildren(tiles, charts, retentionPanel(retention));
  }

  onEvent() {
    if (this.timer) return;
    const wait = Math.max(0, this.lastLoad + REFRESH_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.load();
    }, wait);
  }

  destroy() {
    this.controller.abort();
    clearTimeout(this.timer);
    clearInterval(this.poll);
  }
}

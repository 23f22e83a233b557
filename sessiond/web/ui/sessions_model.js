// The sessions table's model, without the DOM: the query kept in the URL's hash, the
// filter and sort order as the server applies them, and how a change from the feed
// moves, adds or drops a row of the page on screen.

import { compareKeys } from "./format.js";

export const FILTERS = ["prefix", "created_after", "created_before", "updated_after", "updated_before", "min_messages", "max_messages"];
export const SORTS = ["key", "message_count", "created_at", "updated_at"];
export const PAGE_SIZES = [25, 50, 100, 200];
export const DEFAULT_LIMIT = 50;

/** The list query that the hash's parameters describe. */
export function readQuery(params) {
  // q: a full-text search (search_results.js), with the same filters; "" lists.
  const query = { q: params.get("q") || "", filter: {}, sort: "key", order: "asc", limit: DEFAULT_LIMIT, pages: [] };
  for (const name of FILTERS) {
    const text = params.get(name);
    if (text === null || text === "") continue;
    if (name === "prefix") query.filter.prefix = text;
    else if (Number.isFinite(Number(text))) query.filter[name] = Number(text);
  }
  if (SORTS.includes(params.get("sort"))) query.sort = params.get("sort");
  if (params.get("order") === "desc") query.order = "desc";
  const limit = Number(params.get("limit"));
  if (PAGE_SIZES.includes(limit)) query.limit = limit;
  // One "page" parameter per cursor, oldest first: cursors are opaque (the daemon signs
  // them and checks them), so no character in them can be taken as a separator.
  query.pages = params.getAll("page").filter((cursor) => cursor !== "");
  return query;
}

/** The hash parameters of a query (the inverse of readQuery). */
export function writeQuery(query) {
  const params = new URLSearchParams();
  if (query.q) params.set("q", query.q);
  for (const name of FILTERS) {
    if (query.filter[name] !== undefined) params.set(name, String(query.filter[name]));
  }
  if (query.sort !== "key") params.set("sort", query.sort);
  if (query.order !== "asc") params.set("order", query.order);
  if (query.limit !== DEFAULT_LIMIT) params.set("limit", String(query.limit));
  for (const cursor of query.pages) params.append("page", cursor);
  return params.toString();
}

/** The list request's parameters for one page of the query. */
export function listParams(query) {
  const params = { ...query.filter, sort: query.sort, order: query.order, limit: query.limit, include: "meta" };
  if (query.pages.length) params.cursor = query.pages[query.pages.length - 1];
  return params;
}

export function filterIsEmpty(filter) {
  return FILTERS.every((name) => filter[name] === undefined || filter[name] === "");
}

const asNumber = (value) => (typeof value === "number" ? value : Number.NaN);

/** Whether a session passes the filter, exactly as the server decides it. */
export function matches(filter, meta) {
  if (filter.prefix && !meta.key.startsWith(filter.prefix)) return false;
  const created = asNumber(meta.created_at);
  const updated = asNumber(meta.updated_at);
  // Time bounds are strict; a NaN time passes none of them (as in Python).
  if (filter.created_after !== undefined && !(created > filter.created_after)) return false;
  if (filter.created_before !== undefined && !(created < filter.created_before)) return false;
  if (filter.updated_after !== undefined && !(updated > filter.updated_after)) return false;
  if (filter.updated_before !== undefined && !(updated < filter.updated_before)) return false;
  if (filter.min_messages !== undefined && meta.message_count < filter.min_messages) return false;
  if (filter.max_messages !== undefined && meta.message_count > filter.max_messages) return false;
  return true;
}

/** Whether a session's membership of the filter can change without its key changing. */
function dependsOnMoreThanKey(filter) {
  return FILTERS.some((name) => name !== "prefix" && filter[name] !== undefined);
}

/** Order of two sessions in the query's sort: by value, ties by key (as the server's cursors). */
export function compare(query, a, b) {
  let order = 0;
  if (query.sort !== "key") {
    const x = asNumber(a[query.sort]);
    const y = asNumber(b[query.sort]);
    if (x < y) order = -1;
    else if (x > y) order = 1;
  }
  if (order === 0) order = compareKeys(a.key, b.key);
  return query.order === "desc" ? -order : order;
}

/**
 * One page of the list as shown: the rows, how many sessions match in all, and the
 * bounds of the page in the sort order, so a change from the feed lands on the page
 * it belongs to (or on none that is shown).
 */
export class PageModel {
  constructor(query, answer) {
    this.query = query;
    this.rows = answer.sessions.slice();
    this.count = answer.count;
    this.next = answer.next_cursor;
    this.first = query.pages.length ? this.rows[0] || null : null; // no bound on the first page
    this.last = this.next ? this.rows[this.rows.length - 1] || null : null; // none on the last
    this.gone = new Set(); // keys whose deletion is counted already (the page's own, then its event)
  }

  /**
   * Apply a created / updated / deleted event to the rows. Returns whether the total is
   * still known: false when it may have changed in a way only the server can say (a
   * session off this page, or one whose event may predate the list it was listed in).
   */
  apply(type, data) {
    const { filter } = this.query;
    const at = this.rows.findIndex((row) => row.key === data.key);
    const after = type !== "deleted" && matches(filter, data);
    if (type === "deleted" && at < 0 && this.gone.has(data.key)) return true; // already taken off
    if (type === "deleted") this.gone.add(data.key);
    else this.gone.delete(data.key);
    if (at >= 0) this.rows.splice(at, 1);
    if (after && this.onThisPage(data)) {
      const row = { key: data.key, message_count: data.message_count, created_at: data.created_at, updated_at: data.updated_at, size: data.size };
      let where = this.rows.findIndex((other) => compare(this.query, row, other) < 0);
      if (where < 0) where = this.rows.length;
      this.rows.splice(where, 0, row);
    }
    if (at >= 0) {
      this.count += after ? 0 : -1; // it was listed, so it was counted
      return true;
    }
    if (filter.prefix && !data.key.startsWith(filter.prefix)) return true; // never counted
    if (type === "updated" && !dependsOnMoreThanKey(filter)) return true; // counted before and after
    // Off this page: move the count now, as the rows move, by what the event most likely
    // did; false still asks the server to confirm it (the list may already have counted
    // a change whose event came after it).
    if (type === "created" && after) this.count += 1; // a new session that matches
    else if (type === "deleted" && !dependsOnMoreThanKey(filter)) this.count = Math.max(0, this.count - 1); // it matched
    return false;
  }

  onThisPage(meta) {
    if (this.first && compare(this.query, meta, this.first) < 0) return false;
    if (this.last && compare(this.query, meta, this.last) > 0) return false;
    return true;
  }
}

/** The page's address of one session (the list and the trash link to it). */
export function sessionHash(key) {
  return `#/session/${encodeURIComponent(key)}`;
}

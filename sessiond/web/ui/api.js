// The API client: the Bearer header, the contract's JSON errors, and waiting out
// "starting" (503) and "rate limited" (429) answers for as long as Retry-After says.

import { sleep } from "./dom.js";

// Relative to the page, so the page works wherever a proxy mounts /ui/ and /api/ side by side.
const API_BASE = new URL("../api/v1/", document.baseURI);
const MAX_WAIT_SECONDS = 30;

/** The token was refused (401): wrong, or changed on the server since sign-in. */
export class AuthError extends Error {}

/** Any other error answer; `detail` is the server's own words. */
export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

export function apiUrl(path, query) {
  // "./": a path like "sessions:batchDelete" would otherwise read as a URL scheme.
  const url = new URL(`./${path}`, API_BASE);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  return url;
}

async function bodyOf(resp) {
  try {
    return await resp.json();
  } catch {
    return null;
  }
}

function detailOf(body, resp) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && typeof body.reason === "string") return body.reason;
  return `${resp.status} ${resp.statusText}`.trim();
}

function retryAfter(resp) {
  const seconds = Number.parseInt(resp.headers.get("Retry-After") || "1", 10);
  return Math.min(Math.max(Number.isFinite(seconds) ? seconds : 1, 1), MAX_WAIT_SECONDS);
}

export class Api {
  /**
   * hooks.waiting(kind, detail, seconds): a request is waiting ("starting", "limited",
   * "offline"), or waits no more (kind null). hooks.authLost(): a request got a 401.
   */
  constructor(token, hooks) {
    this.token = token;
    this.hooks = hooks;
  }

  /**
   * Send a request and return the Response (2xx, 304, or a status in `accept`). Waits and
   * tries again on 503 and 429 (and, for GET, when the daemon cannot be reached) up to
   * `attempts` times.
   */
  async fetch(method, path, { query, body, signal, headers, attempts = Infinity, accept = [] } = {}) {
    let offlineDelay = 500;
    for (let attempt = 1; ; attempt += 1) {
      let resp;
      try {
        resp = await fetch(apiUrl(path, query), {
          method,
          signal,
          cache: "no-store",
          credentials: "omit",
          headers: {
            Authorization: `Bearer ${this.token}`,
            ...(body === undefined ? {} : { "Content-Type": "application/json" }),
            ...headers,
          },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (err) {
        if (signal && signal.aborted) throw err;
        if (method !== "GET" || attempt >= attempts) throw new ApiError(0, "sessiond cannot be reached", null);
        this.hooks.waiting("offline", "sessiond cannot be reached", offlineDelay / 1000);
        await sleep(offlineDelay, signal);
        offlineDelay = Math.min(offlineDelay * 2, 10_000);
        continue;
      }
      if (resp.status === 401) {
        this.hooks.authLost();
        throw new AuthError((await bodyOf(resp))?.detail || "Authentication required");
      }
      if (accept.includes(resp.status)) {
        this.hooks.waiting(null);
        return resp;
      }
      if ((resp.status === 503 || resp.status === 429) && attempt < attempts) {
        const seconds = retryAfter(resp);
        this.hooks.waiting(resp.status === 429 ? "limited" : "starting", detailOf(await bodyOf(resp), resp), seconds);
        await sleep(seconds * 1000, signal);
        continue;
      }
      this.hooks.waiting(null);
      if (!resp.ok && resp.status !== 304) {
        const errorBody = await bodyOf(resp);
        throw new ApiError(resp.status, detailOf(errorBody, resp), errorBody);
      }
      return resp;
    }
  }

  async json(method, path, options) {
    const resp = await this.fetch(method, path, options);
    return resp.json();
  }
}

/**
 * Delete one session. Through sessions:batchDelete with the key in the JSON body, not
 * DELETE /sessions/{key}: a browser rewrites "." and ".." path segments (even as %2E),
 * so a key like "..", "a/../b" or "x/." could not be named in a path at all.
 */
export async function deleteSession(api, key) {
  const answer = await api.json("POST", "sessions:batchDelete", { body: { keys: [key] } });
  if (!answer.deleted.includes(key)) {
    const reason = answer.failed.length ? answer.failed[0].reason : "Session not found";
    throw new ApiError(reason === "Session not found" ? 404 : 409, reason, answer);
  }
}

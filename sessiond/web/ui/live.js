// The change feed (GET /api/v1/events) read with fetch: EventSource cannot send an
// Authorization header, and the token must never travel in a URL.
//
// After a network blip the feed reconnects with Last-Event-ID, so the daemon replays
// what was missed from its buffer; when that is no longer possible it sends `resync`,
// and the views list again.

import { AuthError, ApiError } from "./api.js";
import { sleep } from "./dom.js";

// sessiond sends a keep-alive comment every 15 s by default; silence much longer than
// that means a dead connection that never said so (a lost route, a sleeping laptop).
const SILENCE_MS = 45_000;
const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 10_000;

export class LiveFeed {
  /**
   * handlers.event(type, data): created / updated / deleted / resync.
   * handlers.state(state): "connecting", "live", "reconnecting" or "stopped".
   */
  constructor(api, handlers) {
    this.api = api;
    this.handlers = handlers;
    this.lastId = null;
    this.controller = new AbortController();
  }

  start() {
    this.run();
  }

  stop() {
    this.controller.abort();
    this.handlers.state("stopped");
  }

  async run() {
    const { signal } = this.controller;
    let delay = FIRST_DELAY_MS;
    this.handlers.state("connecting");
    while (!signal.aborted) {
      const attempt = new AbortController();
      const abortAttempt = () => attempt.abort();
      signal.addEventListener("abort", abortAttempt, { once: true });
      try {
        const headers = this.lastId === null ? {} : { "Last-Event-ID": this.lastId };
        const resp = await this.api.fetch("GET", "events", { signal: attempt.signal, headers });
        this.handlers.state("live");
        delay = FIRST_DELAY_MS;
        await this.read(resp.body, attempt);
      } catch (err) {
        if (err instanceof AuthError) return; // the app signs out
        if (!signal.aborted && !(err instanceof ApiError) && err.name !== "AbortError" && err.name !== "TypeError") {
          console.warn("change feed:", err);
        }
      } finally {
        signal.removeEventListener("abort", abortAttempt);
      }
      if (signal.aborted) return;
      this.handlers.state("reconnecting");
      try {
        await sleep(delay, signal);
      } catch {
        return;
      }
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }

  async read(body, attempt) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let silence = setTimeout(() => attempt.abort(), SILENCE_MS);
    let buffer = "";
    let event = { type: "", data: [], id: null };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(silence);
        silence = setTimeout(() => attempt.abort(), SILENCE_MS);
        buffer += value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (const line of lines) event = this.line(line, event);
      }
    } finally {
      clearTimeout(silence);
      reader.cancel().catch(() => {});
    }
  }

  // One line of the text/event-stream format; a blank line dispatches the event.
  line(line, event) {
    if (line === "") {
      if (event.id !== null) this.lastId = event.id;
      if (event.data.length) {
        let data = null;
        try {
          data = JSON.parse(event.data.join("\n"));
        } catch {
          console.warn("change feed: an event whose data is not JSON was skipped");
        }
        if (data !== null) this.handlers.event(event.type || "message", data);
      }
      return { type: "", data: [], id: null };
    }
    if (line.startsWith(":")) return event; // a comment: ": connected", ": ping"
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event.type = value;
    else if (field === "data") event.data.push(value);
    else if (field === "id" && !value.includes("\0")) event.id = value;
    return event;
  }
}

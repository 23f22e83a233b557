"""GET /api/v1/events: index changes as Server-Sent Events, resumable from the feed's bounded buffer."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from sessiond.core.names import MAX_KEY_LENGTH
from sessiond.core.query import QueryError, single_values
from sessiond.live.feed import EventFeed, event_id
from sessiond.web.appkeys import EVENTS, SETTINGS
from sessiond.web.front.request_id import prepare_stamped
from sessiond.web.responses import WRITE_TIMEOUT

PARAMS = frozenset({"prefix", "since"})


def _resume_point(request: web.Request, feed: EventFeed, since: str | None) -> int:
    header = request.headers.get("Last-Event-ID")
    if header is not None:
        # An EventSource sends back the id we gave it; anything else is not ours: resync.
        seq = event_id(header)
        return -1 if seq is None else seq
    if since is None:
        return feed.seq
    seq = event_id(since)
    if seq is None:
        raise QueryError("since", "must be a whole number from 0 up (an event id)")
    return seq


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Stream `created`/`updated`/`deleted` events; `resync` when the client fell too far behind."""
    feed = request.app[EVENTS]
    values = single_values(request.query.items(), PARAMS, strict=True)
    last = _resume_point(request, feed, values.get("since"))
    prefix = values.get("prefix", "")
    if len(prefix) > MAX_KEY_LENGTH:
        raise QueryError("prefix", f"must be at most {MAX_KEY_LENGTH} characters")
    response = EventSourceResponse(sep="\n", ping_interval=request.app[SETTINGS].events_keepalive, send_timeout=WRITE_TIMEOUT)
    response.headers["Cache-Control"] = "no-store"
    await prepare_stamped(request, response)
    wakeup = feed.subscribe()  # nothing is missed meanwhile: `last` is fixed, the buffer keeps the rest
    gone = asyncio.ensure_future(response.wait())  # ends when a keep-alive cannot be written
    try:
        await response.write(b": connected\n\n")  # flushes the headers through proxies at once
        while not feed.closed:
            wakeup.clear()
            batch = feed.since(last)
            if batch is None:
                data = {"seq": feed.seq, "reason": "events were missed; list the sessions again"}
                await response.send(orjson.dumps(data).decode(), id=str(feed.seq), event="resync")
                last = feed.seq
                continue
            for event in batch:
                if event.key.startswith(prefix):
                    await response.send(event.data, id=str(event.seq), event=event.kind)
                last = event.seq
            waiter = asyncio.ensure_future(wakeup.wait())
            await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if gone.done():
                break
    except (ConnectionResetError, TimeoutError):
        pass  # the client went away, or stalled past the send timeout (the transport is aborted)
    finally:
        feed.unsubscribe(wakeup)
        response.stop_streaming()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
    return response

"""GET /api/v1/events: index changes as Server-Sent Events, resumable from a bounded buffer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .index import Change
from .keys import EVENTS, SETTINGS
from .loader import MAX_KEY_LENGTH
from .params import bad_parameter
from .query import QueryError, meta, single_values, whole_number
from .responses import WRITE_TIMEOUT

PARAMS = frozenset({"prefix", "since"})


class Event(NamedTuple):
    """One numbered change, serialised once for every client."""

    seq: int
    kind: str
    key: str
    data: str


class EventFeed:
    """Numbers every index change and keeps the last *size* for clients that resume.

    A store listener: `publish` runs on the loop, right after the index changed.
    """

    def __init__(self, size: int, start: int | None = None) -> None:
        # Ids start at the boot time in microseconds: they keep rising across restarts,
        # so an id from an earlier run falls before the buffer (a resync), never inside it.
        self.seq = time.time_ns() // 1000 if start is None else start
        self.buffer: deque[Event] = deque(maxlen=size)
        self.closed = False
        self.published = 0
        self._wakeups: set[asyncio.Event] = set()

    def publish(self, changes: list[Change]) -> None:
        """Number *changes*, keep them, and wake every stream."""
        self.published += len(changes)
        for change in changes:
            self.seq += 1
            data = meta(change.record) if change.record is not None else {"key": change.key}
            self.buffer.append(Event(self.seq, change.kind, change.key, orjson.dumps({"seq": self.seq, **data}).decode()))
        if changes:
            for wakeup in self._wakeups:
                wakeup.set()

    def since(self, last: int) -> list[Event] | None:
        """The events after *last*; None when some are no longer buffered, or *last* is not ours."""
        if last == self.seq:
            return []
        oldest = self.buffer[0].seq if self.buffer else self.seq + 1
        if not oldest - 1 <= last < self.seq:
            return None
        return list(itertools.islice(self.buffer, last - oldest + 1, None))

    def subscribe(self) -> asyncio.Event:
        """An event set whenever something is published (or the feed closes)."""
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        return wakeup

    def unsubscribe(self, wakeup: asyncio.Event) -> None:
        """Stop waking *wakeup*."""
        self._wakeups.discard(wakeup)

    @property
    def streams(self) -> int:
        """How many clients are subscribed."""
        return len(self._wakeups)

    def close(self) -> None:
        """End every stream (on shutdown, so open streams never hold the daemon up)."""
        self.closed = True
        for wakeup in self._wakeups:
            wakeup.set()


class FeedMetrics(Collector):
    """sessiond_event_streams and sessiond_events, read at scrape time."""

    def __init__(self, feed: EventFeed) -> None:
        self.feed = feed

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("sessiond_event_streams", "Open change-feed streams", value=self.feed.streams)
        yield CounterMetricFamily("sessiond_events", "Change events published", value=self.feed.published)


def _resume_point(request: web.Request, feed: EventFeed, since: str | None) -> int:
    header = request.headers.get("Last-Event-ID")
    if header is not None:
        # An EventSource sends back the id we gave it; anything else is not ours: resync.
        return int(header) if header.isascii() and header.isdigit() else -1
    return whole_number("since", since) if since is not None else feed.seq


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Stream `created`/`updated`/`deleted` events; `resync` when the client fell too far behind."""
    feed = request.app[EVENTS]
    try:
        values = single_values(request.query.items(), PARAMS, strict=True)
        last = _resume_point(request, feed, values.get("since"))
    except QueryError as exc:
        return bad_parameter(exc)
    prefix = values.get("prefix", "")
    if len(prefix) > MAX_KEY_LENGTH:
        return bad_parameter(QueryError("prefix", f"must be at most {MAX_KEY_LENGTH} characters"))
    response = EventSourceResponse(
        sep="\n", ping_interval=request.app[SETTINGS].events_keepalive, send_timeout=WRITE_TIMEOUT
    )
    response.headers["Cache-Control"] = "no-store"
    await response.prepare(request)
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

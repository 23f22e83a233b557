"""The change feed's core: every index change numbered once, the last few kept for resumes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sessiond.core.index import Change
from sessiond.core.query import meta

# Ids are microseconds since 1970 (16 digits today): a longer number is not one we gave.
_ID_DIGITS = 20


def event_id(text: str) -> int | None:
    """The event id *text* names (ASCII digits only); None when it is no number at all.

    A number longer than any id this feed gives is not ours: -1, which `since` answers
    with a resync, read without int() (which refuses past 4,300 digits). The one reader
    of ids, for the Last-Event-ID header and ``?since=`` alike.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= _ID_DIGITS else -1


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
            data: dict[str, Any] = meta(change.record) if change.record is not None else {"key": change.key}
            if change.note is not None:
                data.update(change.note)  # compacted: before, after; resurrected: deleted_at, deleted_by, ...
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

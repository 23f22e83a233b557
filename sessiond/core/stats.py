"""The overview page's figures (GET /api/v1/stats), computed from index records alone.

`SessionStats` is pure: aggregates over the served sessions (by channel, by day, by
message count, bytes on disk). live/stats.py keeps one in step with the index.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sessiond.core.index import SessionRecord

DAY = 86_400
DAYS = 30
TOP_CHANNELS = 50


def channel_of(key: str) -> str:
    """The key's prefix up to its first `:`; "" for a key without one."""
    head, colon, _ = key.partition(":")
    return head if colon else ""


def day_of(timestamp: float) -> int | None:
    """Days since the epoch (UTC) of a Unix time; None for NaN, infinities and non-numbers."""
    try:
        return int(timestamp // DAY)
    except (TypeError, ValueError, OverflowError):
        return None


def bucket_of(message_count: int) -> int:
    """Histogram bucket: 0 holds 0 messages, b holds 2**(b-1) to 2**b - 1."""
    return message_count.bit_length()


def bucket_bounds(bucket: int) -> tuple[int, int]:
    """The smallest and largest message count in *bucket*."""
    return (0, 0) if bucket == 0 else (1 << (bucket - 1), (1 << bucket) - 1)


def _decrement(counter: Counter[Any], item: Any) -> None:
    left = counter[item] - 1
    if left:
        counter[item] = left
    else:
        del counter[item]  # a counter of every day or channel ever seen would only grow


class SessionStats:
    """Aggregates over a set of session records, updated one key at a time. Pure."""

    def __init__(self, records: Iterable[SessionRecord] = ()) -> None:
        self.bytes = 0
        self.channels: Counter[str] = Counter()
        self.created: Counter[int] = Counter()
        self.updated: Counter[int] = Counter()
        self.buckets: Counter[int] = Counter()
        # How many sessions the figures count. Nothing is kept per session: at 1M a map of
        # what was counted cost ~40 MB, and would keep alive the records the index makes
        # on demand from its rows. A change is counted by what it replaced (Change.before).
        self.sessions = 0
        self.add_new(list(records))

    def __len__(self) -> int:
        return self.sessions

    def add_new(self, records: list[SessionRecord]) -> None:
        """Count *records*, none of whose keys is counted yet: a full pass's bulk path."""
        self.sessions += len(records)
        self.bytes += sum(r.size for r in records)
        self.channels.update(channel_of(r.key) for r in records)
        self.buckets.update(r.message_count.bit_length() for r in records)
        self.created.update(day for day in map(day_of, [r.created_at for r in records]) if day is not None)
        self.updated.update(day for day in map(day_of, [r.updated_at for r in records]) if day is not None)

    def replace(self, before: SessionRecord | None, after: SessionRecord | None) -> None:
        """Count *after* instead of *before*, which these figures count (None: nothing, on that side)."""
        if before is not None:
            self._count(before, -1)
            self.sessions -= 1
        if after is not None:
            self._count(after, 1)
            self.sessions += 1

    def _count(self, r: SessionRecord, sign: int) -> None:
        self.bytes += sign * r.size
        created, updated = day_of(r.created_at), day_of(r.updated_at)
        if sign > 0:
            self.channels[channel_of(r.key)] += 1
            self.buckets[bucket_of(r.message_count)] += 1
            if created is not None:
                self.created[created] += 1
            if updated is not None:
                self.updated[updated] += 1
            return
        _decrement(self.channels, channel_of(r.key))
        _decrement(self.buckets, bucket_of(r.message_count))
        if created is not None:
            _decrement(self.created, created)
        if updated is not None:
            _decrement(self.updated, updated)

    def summary(self, now: float) -> dict[str, Any]:
        """The figures as the API shows them; *now* picks the 30 days (UTC) ending today."""
        top = heapq.nsmallest(TOP_CHANNELS, self.channels.items(), key=lambda item: (-item[1], item[0]))
        shown = sum(count for _, count in top)
        today = int(now // DAY)
        days = []
        for day in range(today - DAYS + 1, today + 1):
            start = day * DAY
            days.append(
                {
                    "date": datetime.fromtimestamp(start, UTC).date().isoformat(),
                    "start": start,
                    "created": self.created.get(day, 0),
                    "updated": self.updated.get(day, 0),
                }
            )
        highest = max(self.buckets, default=0)
        messages = []
        for bucket in range(highest + 1):
            low, high = bucket_bounds(bucket)
            messages.append({"min": low, "max": high, "sessions": self.buckets.get(bucket, 0)})
        return {
            "sessions": self.sessions,
            "bytes": self.bytes,
            "channels": [{"channel": name, "sessions": count} for name, count in top],
            "other_channels": {"channels": len(self.channels) - len(top), "sessions": self.sessions - shown},
            "days": days,
            "messages": messages,
        }

"""Per-client-IP and per-token rate limits: leaky buckets that reject, never queue."""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict

from aiohttp import web
from aiolimiter import AsyncLimiter

from sessiond.web.responses import error_response

RATE_LIMITED = "Rate limit exceeded"
PERIOD = 60.0


class RateLimiter:
    """A bounded map of AsyncLimiter buckets, one per client key.

    When the map is full the least recently used bucket is dropped, so a flood of
    distinct addresses costs bounded memory; an evicted client merely starts afresh.
    """

    def __init__(self, per_minute: int, max_keys: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self.retry_after = str(max(1, math.ceil(PERIOD / per_minute)))
        self._buckets: OrderedDict[str, AsyncLimiter] = OrderedDict()
        self.rejected = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str) -> bool:
        """Take one unit for *key* if it has capacity; never waits (called on the event loop's thread).

        A plain call, not a coroutine: with capacity there, aiolimiter's `acquire` finishes
        at its first step, so it is run to that step here instead of awaited (two coroutine
        frames less per limit and request).
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = AsyncLimiter(self.per_minute, PERIOD)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if not bucket.has_capacity():
            self.rejected += 1
            return False
        # With capacity present acquire() finishes without suspending: no queueing.
        taking = bucket.acquire()
        try:
            taking.send(None)
        except StopIteration:
            return True
        taking.close()  # it would wait: not on this thread, where capacity was there a moment ago
        return False


def client_key(remote: str | None) -> str:
    """The bucket for a client address: the address itself, or its /64 for IPv6."""
    if not remote:
        return "-"
    if ":" not in remote:
        return remote  # IPv4 (or a unix-socket peer): itself, without parsing it
    try:
        addr = ipaddress.ip_address(remote)
    except ValueError:
        return remote  # e.g. a unix-socket peer without forwarding
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        # One IPv6 host usually owns a whole /64; keying on it stops address hopping.
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return remote


def too_many(limiter: RateLimiter) -> web.Response:
    """The contract's 429: JSON, Retry-After in whole seconds, no-store."""
    return error_response(429, RATE_LIMITED, headers={"Retry-After": limiter.retry_after, "Cache-Control": "no-store"})

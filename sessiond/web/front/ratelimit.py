"""Per-client-IP and per-token rate limits: leaky buckets that reject, never queue."""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiolimiter import AsyncLimiter

from sessiond.web.front.request_id import info_of
from sessiond.web.responses import error_response
from sessiond.web.typedefs import Handler

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

    async def allow(self, key: str) -> bool:
        """Take one unit for *key* if it has capacity; never waits."""
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
        # With capacity present acquire() returns without suspending: no queueing.
        await bucket.acquire()
        return True


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


def rate_limit_middleware(
    limiter_of: Callable[[], RateLimiter | None],
    key_of: Callable[[web.Request], str | None],
    limited: Callable[[web.Request], bool],
) -> Middleware:
    """Reject with 429 when the bucket that *key_of* names is full.

    *limiter_of* is asked on every request (a reload may switch a limit on or
    off); None from it, or from *key_of*, means "not limited". *limited* says
    whether the request's route is rate limited at all (the route table's policy).
    """

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        limiter = limiter_of()
        if limiter is not None and limited(request):
            key = key_of(request)
            if key is not None and not await limiter.allow(key):
                return too_many(limiter)
        return await handler(request)

    return limit


def per_ip(request: web.Request) -> str:
    """Bucket key for the per-IP limit (request.remote is the client, after trusted-proxy handling)."""
    return client_key(request.remote)


def per_token(request: web.Request) -> str | None:
    """Bucket key for the per-token limit (set by the auth middleware)."""
    info = info_of(request)
    return info.token_id if info else None

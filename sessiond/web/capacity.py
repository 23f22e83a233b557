"""Connections within the descriptors the process has: a cap, a quick refusal, probes still answered.

Every open connection costs a file descriptor. Past the soft RLIMIT_NOFILE,
accept() fails, asyncio logs a traceback per attempt and stops accepting for a
second at a time, and nobody, monitoring included, gets an answer. So:

- at start the soft limit is raised to the hard one (systemd's default hard
  limit is 524288; the shipped unit sets LimitNOFILE=65536);
- at most `max_connections` connections are served at once, well below that
  limit (the rest of it stays for files, the watch and the worker pools);
- a connection past the cap is still accepted, but answered by a tiny responder
  instead of aiohttp: a probe (`/health`, `/readyz`, `/livez`) gets its usual
  answer, anything else `503 {"detail": "Too many connections"}` with
  Retry-After, and the connection is closed at once; one that sends nothing
  within half a second is dropped. At most `overflow` of those are open at a
  time (an eighth of the cap, at most 64); a new one past that evicts the
  oldest (an idle one: a probe sends its request at once), so the descriptors
  never run out and a probe gets through an idle flood;
- accept() failures that still happen (another process used the descriptors
  up) are counted and logged once a minute, not once each.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Descriptors kept for everything but served connections: the overflow responders
# (at most 64), a batch of sockets asyncio accepts before any of them is handed to
# a protocol (up to the listen backlog, 128), and the daemon's own files.
LIMIT_RESERVE = 256
MAX_OVERFLOW = 64
AUTO_MAX = 10_000
REQUEST_WAIT = 0.5  # how long a connection past the cap may take to send its request (a probe sends at once)
MAX_HEAD = 8192
TOO_MANY = "Too many connections; retry shortly"

ProbeAnswer = Callable[[str], tuple[int, dict[str, Any]] | None]


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


def connection_cap(configured: int, fd_limit: int) -> int:
    """`max_connections` if set, else what the descriptor limit leaves room for (at most AUTO_MAX)."""
    if configured:
        return configured
    return max(16, min(AUTO_MAX, fd_limit - LIMIT_RESERVE))


class OverCapacity(asyncio.Protocol):
    """Answers one request on a connection past the cap, in a few lines, then closes it."""

    def __init__(self, probe: ProbeAnswer, served: Callable[[], None], done: Callable[[OverCapacity], None]) -> None:
        self.probe = probe
        self.served = served
        self.done = done
        self.head = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.dropped = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.dropped:  # evicted before asyncio even handed it over
            transport.abort()
            return
        self.timer = asyncio.get_running_loop().call_later(REQUEST_WAIT, transport.abort)

    def data_received(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" not in self.head and len(self.head) < MAX_HEAD:
            return
        line = bytes(self.head.split(b"\r\n", 1)[0])
        parts = line.split(b" ")
        path = parts[1].split(b"?", 1)[0].decode("latin-1") if len(parts) == 3 else ""
        answer = self.probe(path) if parts[0] in (b"GET", b"HEAD") else None
        status, body = answer if answer is not None else (503, {"detail": TOO_MANY})
        self.served()
        self._answer(status, body, head_only=parts[0] == b"HEAD")

    def _answer(self, status: int, body: dict[str, Any], head_only: bool) -> None:
        payload = orjson.dumps(body)
        reason = "OK" if status == 200 else "Service Unavailable"
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            "X-Frame-Options: DENY\r\nContent-Security-Policy: default-src 'none'\r\n"
        )
        if status == 503:
            head += "Retry-After: 1\r\n"
        assert self.transport is not None
        self.transport.write(head.encode() + b"\r\n" + (b"" if head_only else payload))
        self.transport.close()
        if self.timer is not None:
            self.timer.cancel()

    def drop(self) -> None:
        """Close at once, unanswered (its place is wanted)."""
        self.dropped = True
        self.served()
        if self.transport is not None:
            self.transport.abort()
        self.done(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.done(self)


class CappedServer(web.Server):
    """aiohttp's protocol factory, handing connections past the cap to OverCapacity."""

    cap: int
    probe: ProbeAnswer
    refused: int
    overflowing: dict[OverCapacity, None]  # insertion-ordered: the oldest first
    live: int  # handlers made and not yet lost (counted here: a batch of accepts is
    # handed out before any of them reports connection_made)
    fresh: dict[RequestHandler, float]  # connections yet to start a first request -> when made
    make_request: Any  # the request factory aiohttp chose, called by first_request

    def __call__(self) -> RequestHandler:
        if self.live < self.cap:
            self.live += 1
            handler = super().__call__()
            self.fresh[handler] = time.monotonic()
            return handler
        if len(self.overflowing) >= min(MAX_OVERFLOW, max(8, self.cap // 8)):
            # Full: the oldest waiting connection goes. One that has sent nothing for
            # that long is the idle kind; a probe sends at once and is answered at once.
            oldest = next(iter(self.overflowing))
            oldest.drop()
        extra = OverCapacity(self.probe, self._count, self._forget)
        self.overflowing[extra] = None
        return extra  # type: ignore[return-value]

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.live -= 1
        self.fresh.pop(handler, None)
        super().connection_lost(handler, exc)

    def first_request(self, message: Any, payload: Any, protocol: RequestHandler, writer: Any, task: Any) -> Any:
        """The request factory: a connection's request has begun, so it is no longer fresh."""
        self.fresh.pop(protocol, None)
        return self.make_request(message, payload, protocol, writer, task)

    def awaiting_a_first_request(self, since: float) -> int:
        """Connections made at or after *since* that have not begun a request yet."""
        return sum(1 for made in self.fresh.values() if made >= since)

    def _count(self) -> None:
        self.refused += 1

    def _forget(self, extra: OverCapacity) -> None:
        self.overflowing.pop(extra, None)


class CappedRunner(web.AppRunner):
    """An AppRunner whose server holds at most *cap* connections (see CappedServer)."""

    def __init__(self, app: web.Application, *, cap: int, probe: ProbeAnswer, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.cap = cap
        self.probe = probe

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The very server aiohttp built (its handler, request factory and options), with a cap.
        server.__class__ = CappedServer
        assert isinstance(server, CappedServer)
        server.cap, server.probe, server.refused, server.overflowing, server.live = self.cap, self.probe, 0, {}, 0
        server.fresh, server.make_request = {}, server.request_factory
        server.request_factory = server.first_request  # read by each handler as it is made
        return server


class AcceptErrors:
    """A loop exception handler that turns accept() failures into one line a minute."""

    def __init__(self) -> None:
        self.count = 0
        self._last = 0.0
        self._since = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            loop.default_exception_handler(context)
            return
        self.count += 1
        self._since += 1
        now = time.monotonic()
        if now - self._last >= 60:
            exc = context.get("exception")
            log.warning(
                "accept() failed %d time(s) in the last minute (%s): out of file descriptors; "
                "lower max_connections or raise LimitNOFILE",
                self._since,
                getattr(exc, "strerror", exc),
            )
            self._last, self._since = now, 0


class ConnectionMetrics(Collector):
    """sessiond_connections (served now), _connection_limit and _connections_refused_total."""

    def __init__(self, server: CappedServer) -> None:
        self.server = server

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("sessiond_connections", "Client connections served now", value=self.server.live)
        yield GaugeMetricFamily("sessiond_connection_limit", "Connections served at once, at most", value=self.server.cap)
        yield CounterMetricFamily(
            "sessiond_connections_refused",
            "Connections past the limit: answered 503 (or a probe) or closed",
            value=self.server.refused,
        )

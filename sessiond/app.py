"""create_app(settings): the middleware order, the routes and the background work."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from .config import Settings
from .handlers import add_routes
from .keys import METRICS, SETTINGS, STARTED_AT, STORE, WATCHER
from .metrics import Metrics
from .middlewares.auth import auth_middleware
from .middlewares.errors import error_middleware
from .middlewares.ratelimit import RateLimiter, per_ip, per_token, rate_limit_middleware
from .middlewares.request_id import request_id_middleware
from .store import SessionStore
from .watcher import SessionWatcher

log = logging.getLogger(__name__)

PROBES = ("/health",)
# An idle or slow (slowloris) connection is closed after this long, including one
# that never finishes its request headers: aiohttp has no separate header timeout,
# and its default (3630 s) would let a slow client hold a socket for an hour.
# Longer than nginx's upstream keepalive (60 s), so nginx always closes first.
CLIENT_TIMEOUT = 75.0


def create_app(settings: Settings) -> web.Application:
    """Build the application for *settings*; nothing touches the disk until it starts."""
    store = SessionStore(settings.sessions_dir, settings.max_file_bytes)
    watcher = SessionWatcher(
        store,
        debounce_ms=settings.debounce_ms,
        force_polling=settings.force_polling,
        reconcile_interval=settings.reconcile_interval,
    )
    metrics = Metrics()
    limiters: dict[str, RateLimiter] = {}
    public = set(PROBES)
    if not settings.metrics_require_token:
        public.add("/metrics")
    unlimited = (*PROBES, "/metrics")  # monitoring must never be starved by API clients

    # Order matters; each runs around the ones after it:
    # 1. request id first, so every response, even an error from a later layer, carries it;
    # 2. metrics next, to see the final status of everything below;
    # 3. errors wraps the rest, so whatever they raise leaves as JSON;
    # 4. the per-IP limit runs before auth, so guessing tokens is rate limited too;
    # 5. auth, then the per-token limit, which needs to know the token is genuine.
    middlewares = [request_id_middleware, metrics.middleware(), error_middleware]
    if settings.rate_limit_per_ip:
        limiters["ip"] = RateLimiter(settings.rate_limit_per_ip, settings.rate_limit_max_clients)
        middlewares.append(rate_limit_middleware(limiters["ip"], per_ip, unlimited))
    middlewares.append(auth_middleware(settings.token, public))
    if settings.rate_limit_per_token:
        limiters["token"] = RateLimiter(settings.rate_limit_per_token, settings.rate_limit_max_clients)
        middlewares.append(rate_limit_middleware(limiters["token"], per_token, unlimited))

    app = web.Application(
        middlewares=middlewares, client_max_size=64 * 1024, handler_args={"keepalive_timeout": CLIENT_TIMEOUT}
    )
    app[SETTINGS] = settings
    app[STORE] = store
    app[WATCHER] = watcher
    app[METRICS] = metrics
    app[STARTED_AT] = time.monotonic()
    metrics.watch(store, watcher, limiters)
    add_routes(app)
    app.cleanup_ctx.append(_run_watcher)
    return app


async def _run_watcher(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    folder = settings.sessions_dir
    if not folder.is_dir():
        # The workspace is checked at start; the agent may simply not have written yet.
        folder.mkdir(mode=0o750, exist_ok=True)
        log.info("created %s", folder)
    watcher = app[WATCHER]
    watcher.start()
    yield
    await watcher.stop()

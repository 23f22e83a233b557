"""create_app(settings): the middleware order, the routes and the background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator

from aiohttp import web

from .appkeys import METRICS, RUNTIME, SETTINGS, STARTED_AT, STORE, WATCHER
from .config import Settings
from .features import setup_features
from .metrics import Metrics
from .middlewares.auth import auth_middleware
from .middlewares.errors import error_middleware
from .middlewares.forwarded import forwarded_middleware
from .middlewares.ratelimit import per_ip, per_token, rate_limit_middleware
from .middlewares.readiness import readiness_middleware
from .middlewares.request_id import request_id_middleware, stamp_response
from .routes import Policy, add_routes, policy_of
from .runtime import Runtime
from .store import SessionStore
from .watcher import SessionWatcher

log = logging.getLogger(__name__)

# aiohttp's 8 KiB request line is too short for the keys the contract allows: a
# 4096-character key percent-encoded as 4-byte UTF-8 is 48 KiB, and a longer line
# is refused in plain text before any middleware could answer it as JSON.
MAX_REQUEST_LINE = 128 * 1024
# An idle or slow (slowloris) connection is closed after this long, including one
# that never finishes its request headers: aiohttp has no separate header timeout,
# and its default (3630 s) would let a slow client hold a socket for an hour.
# Longer than nginx's upstream keepalive (60 s), so nginx always closes first.
CLIENT_TIMEOUT = 75.0


def create_app(settings: Settings) -> web.Application:
    """Build the application for *settings*; nothing touches the disk until it starts."""
    store = SessionStore(settings.sessions_dir, settings.max_file_bytes, snapshot_path=settings.snapshot_path)
    watcher = SessionWatcher(
        store,
        debounce_ms=settings.debounce_ms,
        force_polling=settings.force_polling,
        reconcile_interval=settings.reconcile_interval,
    )
    runtime = Runtime(settings)
    metrics = Metrics()

    # Order matters; each runs around the ones after it:
    # 1. request id first, so every response, even an error from a later layer, carries it
    #    (stamped by the stamp_response signal, which streamed responses also pass);
    # 2. metrics next, to see the final status of everything below;
    # 3. errors wraps the rest, so whatever they raise leaves as JSON;
    # 4. forwarded settles who the client is before anything keys on it;
    # 5. the per-IP limit runs before auth, so guessing tokens is rate limited too;
    # 6. auth, then the per-token limit, which needs to know the token is genuine;
    # 7. readiness last: only a genuine, admitted client learns the index is not whole.
    middlewares = [
        request_id_middleware,
        metrics.middleware(),
        error_middleware,
        forwarded_middleware(lambda: runtime.proxies),
        rate_limit_middleware(lambda: runtime.ip_limiter, per_ip, _rate_limited),
        auth_middleware(runtime, _public),
        rate_limit_middleware(lambda: runtime.token_limiter, per_token, _rate_limited),
        readiness_middleware(lambda: watcher.not_serving, _needs_whole_index),
    ]
    app = web.Application(
        middlewares=middlewares,
        client_max_size=64 * 1024,
        handler_args={"max_line_size": MAX_REQUEST_LINE, "keepalive_timeout": CLIENT_TIMEOUT},
    )
    app.on_response_prepare.append(stamp_response)
    app[SETTINGS] = settings
    app[RUNTIME] = runtime
    app[STORE] = store
    app[WATCHER] = watcher
    app[METRICS] = metrics
    app[STARTED_AT] = time.monotonic()
    metrics.watch(store, watcher, runtime.limiters)
    setup_features(app)
    add_routes(app)
    app.cleanup_ctx.append(_run_watcher)
    return app


# What the middlewares ask of each request: its route's policy (routes.py).
def _rate_limited(request: web.Request) -> bool:
    return policy_of(request).rate_limited


def _needs_whole_index(request: web.Request) -> bool:
    return policy_of(request).needs_whole_index


def _public(request: web.Request, runtime: Runtime) -> bool:
    policy = policy_of(request)
    return policy in (Policy.PROBE, Policy.PAGE) or (policy is Policy.MONITORING and runtime.metrics_public)


async def _run_watcher(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    folder = settings.sessions_dir
    if not os.path.lexists(folder):
        # The workspace is checked at start; the agent may simply not have written yet.
        # Only when nothing is there: a symlink in its place is refused, never followed.
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o750)
            log.info("created %s", folder)
    watcher = app[WATCHER]
    store = app[STORE]
    watcher.start()
    saver = (
        asyncio.create_task(store.keep_snapshot(watcher.ready, settings.snapshot_interval)) if settings.snapshot_path else None
    )
    yield
    await watcher.stop()
    if saver is not None:
        saver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await saver
        if watcher.ready.is_set():
            await store.save_snapshot()  # the next start re-reads only what changes meanwhile

"""create_app(settings): the middleware order, the routes and the background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator

from aiohttp import web

from sessiond.config import Settings
from sessiond.features import setup_features
from sessiond.live.store import SessionStore
from sessiond.live.watcher import SessionWatcher
from sessiond.web.appkeys import METRICS, RUNTIME, SETTINGS, STARTED_AT, STORE, WATCHER
from sessiond.web.front.door import front_door
from sessiond.web.front.request_id import stamp_response
from sessiond.web.metrics import Metrics
from sessiond.web.routes import add_routes
from sessiond.web.runtime import Runtime

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

    # One middleware, the front door (front.py), runs every part in the order that
    # matters and says why: request id, metrics, errors, forwarded, per-IP limit,
    # auth, per-token limit, readiness. The parts are tested one by one as middlewares.
    app = web.Application(
        middlewares=[front_door(runtime, lambda: watcher.not_serving, metrics.record)],
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

"""create_app(settings): the state, the front door, the routes and the background work, wired in one place.

New resources sit beside the collection, never under it: below /api/v1/sessions/ every
path is a session key (the route table: web/routes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from sessiond.config import Settings
from sessiond.core.audit import AuditTrail
from sessiond.core.trash import Trash
from sessiond.live.feed import EventFeed, FeedMetrics
from sessiond.live.retention import Retention, RetentionMetrics
from sessiond.live.search import SearchKeeper, SearchMetrics
from sessiond.live.stats import StatsKeeper
from sessiond.live.store import SessionStore
from sessiond.live.threads import SAVES, default_executor
from sessiond.live.trash import purge_forever
from sessiond.live.watcher import SessionWatcher
from sessiond.web.appkeys import (
    AUDIT,
    EVENTS,
    METRICS,
    PAGE,
    RETENTION,
    RUNTIME,
    SEARCH,
    SETTINGS,
    STARTED_AT,
    STATS,
    STORE,
    TRASH,
    WATCHER,
)
from sessiond.web.front_door import front_door
from sessiond.web.metrics import Metrics
from sessiond.web.pagefiles import PageAssets
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
    store = SessionStore(
        settings.sessions_dir,
        settings.max_file_bytes,
        snapshot_path=settings.snapshot_path,
        deletions_path=settings.state_dir / "deletions.json" if settings.state_dir else None,
    )
    watcher = SessionWatcher(
        store,
        debounce_ms=settings.debounce_ms,
        force_polling=settings.force_polling,
        reconcile_interval=settings.reconcile_interval,
    )
    runtime = Runtime(settings)
    metrics = Metrics()

    # No middleware: the front door (web/front_door.py) wraps each route's handler, and runs
    # every part in the order that matters and says why: request id, metrics, errors,
    # forwarded, per-IP limit, auth, per-token limit, readiness. The parts are tested one by
    # one as functions.
    app = web.Application(
        client_max_size=64 * 1024,
        handler_args={"max_line_size": MAX_REQUEST_LINE, "keepalive_timeout": CLIENT_TIMEOUT},
    )
    app[SETTINGS] = settings
    app[RUNTIME] = runtime
    app[STORE] = store
    app[WATCHER] = watcher
    app[METRICS] = metrics
    app[STARTED_AT] = time.monotonic()
    metrics.watch(store, watcher, runtime.limiters)

    feed = EventFeed(settings.events_buffer)
    store.listeners.append(feed.publish)
    app[EVENTS] = feed
    metrics.registry.register(FeedMetrics(feed))
    keeper = StatsKeeper(store)
    store.listeners.append(keeper.on_changes)
    app[STATS] = keeper
    trash = Trash(settings.trash_days) if settings.trash_days > 0 else None
    if trash is not None:
        store.destination = trash  # a delete moves the file into the trash instead of unlinking it
    app[TRASH] = trash
    # Every deletion, restore and purge writes its record here before it happens.
    store.audit = app[AUDIT] = AuditTrail(settings.state_dir, settings.audit_max_bytes)
    retention = Retention(store, runtime, watcher.ready)
    app[RETENTION] = retention
    metrics.registry.register(RetentionMetrics(retention))
    # Full-text search: fed the names of the files each change applied (a rewrite that keeps
    # size and mtime changes no key, but its text), built once the first index is whole.
    search = SearchKeeper(store, settings.search_path, settings.search_cache_mb * 1024) if settings.search else None
    app[SEARCH] = search
    if search is not None:
        store.file_listeners.append(search.on_files)
        metrics.registry.register(SearchMetrics(search))
        app.cleanup_ctx.append(_run_search)
    app[PAGE] = PageAssets.from_package()  # read once: a request never touches the disk for it

    add_routes(app, front_door(runtime, lambda: watcher.not_serving, metrics.record))
    app.cleanup_ctx.insert(0, _start_threads)  # first: before the search's threads, the watcher and the scan
    app.cleanup_ctx.append(_run_watcher)
    app.cleanup_ctx.append(background("sessiond-retention", retention.forever))
    # The overview's full pass as soon as the first index is complete, not on a request.
    app.cleanup_ctx.append(background("sessiond-stats-first-pass", lambda: keeper.first_pass(watcher.ready)))
    if trash is not None:
        app.cleanup_ctx.append(
            background("sessiond-trash-purge", lambda: purge_forever(trash, lambda: store.folder, store.audit))
        )
    app.on_shutdown.append(_close_streams)
    return app


def background(name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx that runs *work* as a task named *name* while the app runs, and cancels it at the stop."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(work(), name=name)
        yield
        await cancel(task)

    return run


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel *task* and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _run_search(app: web.Application) -> AsyncIterator[None]:
    keeper = app[SEARCH]
    assert keeper is not None
    keeper.start_threads()
    # After the work the first ready starts: the overview's first pass and the snapshot's first save.
    first = [app[STATS].first_pass_over] + ([app[STORE].first_save_over] if app[SETTINGS].snapshot_path else [])
    task = asyncio.create_task(keeper.forever(app[WATCHER].ready, first), name="sessiond-search")
    yield
    await cancel(task)
    await keeper.close()


async def _start_threads(app: web.Application) -> AsyncIterator[None]:
    # Every thread of the loop's executor now: one started later, on the loop, may wait for the GIL (live/threads.py).
    asyncio.get_running_loop().set_default_executor(default_executor())
    SAVES.start()
    yield


async def _close_streams(app: web.Application) -> None:
    # on_shutdown runs before the server waits for handlers, so open event streams
    # end now instead of holding a graceful stop for its whole timeout.
    app[EVENTS].close()


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
    compactor = asyncio.create_task(store.keep_compact(watcher.ready))
    yield
    await cancel(compactor)
    await watcher.stop()
    if saver is not None:
        await cancel(saver)
        if watcher.ready.is_set():
            # The next start re-reads only what changes meanwhile; a stop's save is
            # bounded by the stop's deadline (the daemon sets it), then abandoned.
            await store.save_snapshot(store.save_deadline)

"""Everything beyond the seed's three calls, wired into the app in one place.

The list's query parameters live in the list handler itself (listing.py); the rest is
here: bulk delete, the trash, the change feed, export and the OpenAPI document. New
resources sit beside the collection, never under it: below /api/v1/sessions/ every
path is a session key.
"""

from __future__ import annotations

from aiohttp import web

from .appkeys import EVENTS, METRICS, RETENTION, RUNTIME, SETTINGS, STORE, TRASH, WATCHER
from .feed import EventFeed, FeedMetrics
from .retention_api import run_retention
from .retention_run import Retention, RetentionMetrics
from .trash import Trash
from .trash_api import purge_trash


def setup_features(app: web.Application) -> None:
    """Register the routes, state and background work of the features beyond the seed."""
    settings, store = app[SETTINGS], app[STORE]
    feed = EventFeed(settings.events_buffer)
    store.listeners.append(feed.publish)
    app[EVENTS] = feed
    app[METRICS].registry.register(FeedMetrics(feed))
    trash = None
    if settings.trash_days > 0:
        trash = Trash(settings.trash_days)
        store.destination = trash
    app[TRASH] = trash

    retention = Retention(store, app[RUNTIME], app[WATCHER].ready)
    app[RETENTION] = retention
    app[METRICS].registry.register(RetentionMetrics(retention))

    app.cleanup_ctx.append(purge_trash)
    app.cleanup_ctx.append(run_retention)
    app.on_shutdown.append(_close_streams)


async def _close_streams(app: web.Application) -> None:
    # on_shutdown runs before the server waits for handlers, so open event streams
    # end now instead of holding a graceful stop for its whole timeout.
    app[EVENTS].close()

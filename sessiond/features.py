"""Everything beyond the seed's three calls, wired into the app in one place.

The list's query parameters live in the list handler itself (listing.py); the rest is
here: bulk delete, the trash, the change feed, export, the overview's figures, the
operators' web page and the OpenAPI document. New
resources sit beside the collection, never under it: below /api/v1/sessions/ every
path is a session key.
"""

from __future__ import annotations

from aiohttp import web

from .bulk import batch_delete
from .events import EventFeed, FeedMetrics, stream_events
from .export import export
from .keys import EVENTS, METRICS, SETTINGS, STATS, STORE, TRASH
from .openapi import openapi_document
from .stats import StatsKeeper, count_when_ready, stats
from .trash import Trash
from .trash_api import list_trash, purge_trash, restore
from .webui import setup_web_page


def setup_features(app: web.Application) -> None:
    """Register the routes, state and background work of the features beyond the seed."""
    settings, store = app[SETTINGS], app[STORE]
    feed = EventFeed(settings.events_buffer)
    store.listeners.append(feed.publish)
    app[EVENTS] = feed
    keeper = StatsKeeper(store)
    store.listeners.append(keeper.on_changes)
    app[STATS] = keeper
    app[METRICS].registry.register(FeedMetrics(feed))
    trash = None
    if settings.trash_days > 0:
        trash = Trash(settings.trash_days)
        store.destination = trash
    app[TRASH] = trash

    app.router.add_post("/api/v1/sessions:batchDelete", batch_delete)
    app.router.add_get("/api/v1/events", stream_events, allow_head=False)
    app.router.add_get("/api/v1/export", export)
    app.router.add_get("/api/v1/trash", list_trash)
    app.router.add_post("/api/v1/trash:restore", restore)
    app.router.add_get("/api/v1/stats", stats)
    app.router.add_get("/api/v1/openapi.json", openapi_document)
    setup_web_page(app)

    app.cleanup_ctx.append(purge_trash)
    app.cleanup_ctx.append(count_when_ready)
    app.on_shutdown.append(_close_streams)


async def _close_streams(app: web.Application) -> None:
    # on_shutdown runs before the server waits for handlers, so open event streams
    # end now instead of holding a graceful stop for its whole timeout.
    app[EVENTS].close()

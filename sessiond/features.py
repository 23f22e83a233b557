"""Everything beyond the seed's three calls, wired into the app in one place.

The list's query parameters live in the list handler itself (listing.py); the rest is
here: bulk delete, the trash, the change feed, export, the overview's figures, the
operators' web page and the OpenAPI document. New
resources sit beside the collection, never under it: below /api/v1/sessions/ every
path is a session key.
"""

from __future__ import annotations

from aiohttp import web

from sessiond.core.stats import StatsKeeper
from sessiond.core.trash import Trash
from sessiond.live.feed import EventFeed, FeedMetrics
from sessiond.live.retention import Retention, RetentionMetrics
from sessiond.web.api.retention import run_retention
from sessiond.web.api.stats import count_when_ready
from sessiond.web.api.trash import purge_trash
from sessiond.web.appkeys import EVENTS, METRICS, PAGE, RETENTION, RUNTIME, SETTINGS, STATS, STORE, TRASH, WATCHER
from sessiond.web.pagefiles import PageAssets


def setup_features(app: web.Application) -> None:
    """Set up the state and background work of the features beyond the seed (routes: routes.py)."""
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

    retention = Retention(store, app[RUNTIME], app[WATCHER].ready)
    app[RETENTION] = retention
    app[METRICS].registry.register(RetentionMetrics(retention))
    app[PAGE] = PageAssets.from_package()  # read once: a request never touches the disk for it

    app.cleanup_ctx.append(purge_trash)
    app.cleanup_ctx.append(run_retention)
    app.cleanup_ctx.append(count_when_ready)
    app.on_shutdown.append(_close_streams)


async def _close_streams(app: web.Application) -> None:
    # on_shutdown runs before the server waits for handlers, so open event streams
    # end now instead of holding a graceful stop for its whole timeout.
    app[EVENTS].close()

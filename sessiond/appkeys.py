"""Every piece of typed application state, declared in one place.

Typed with the real classes (`web.AppKey("store", SessionStore)`), so a type
checker knows what `app[STORE]` is. Request-scoped keys live beside the
middleware that sets them (middlewares/request_id.py). Nothing imported here
may import this module back.
"""

from __future__ import annotations

from aiohttp import web

from .config import Settings
from .feed import EventFeed
from .metrics import Metrics
from .pagefiles import PageAssets
from .retention_run import Retention
from .runtime import Runtime
from .stats import StatsKeeper
from .store import SessionStore
from .trash import Trash
from .watcher import SessionWatcher

SETTINGS = web.AppKey("settings", Settings)  # as loaded at start; RUNTIME holds what reloads change
RUNTIME = web.AppKey("runtime", Runtime)
STORE = web.AppKey("store", SessionStore)
WATCHER = web.AppKey("watcher", SessionWatcher)
METRICS = web.AppKey("metrics", Metrics)
STARTED_AT = web.AppKey("started_at", float)
EVENTS = web.AppKey("events", EventFeed)
TRASH: web.AppKey[Trash | None] = web.AppKey("trash")  # None while trash_days is 0
STATS = web.AppKey("stats", StatsKeeper)
PAGE = web.AppKey("page", PageAssets)  # the web page's files, read once at start
RETENTION = web.AppKey("retention", Retention)

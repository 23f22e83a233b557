"""Every piece of typed application state, declared in one place.

Typed with the real classes (`web.AppKey("store", SessionStore)`), so a type
checker knows what `app[STORE]` is. Request-scoped keys live beside the
middleware that sets them (web/front/request_id.py). Nothing imported here
may import this module back.
"""

from __future__ import annotations

from aiohttp import web

from sessiond.config import Settings
from sessiond.core.audit import AuditTrail
from sessiond.core.trash import Trash
from sessiond.live.feed import EventFeed
from sessiond.live.retention import Retention
from sessiond.live.search import SearchKeeper
from sessiond.live.stats import StatsKeeper
from sessiond.live.store import SessionStore
from sessiond.live.watcher import SessionWatcher
from sessiond.web.metrics import METRICS  # declared beside its reader, the one /metrics handler
from sessiond.web.pagefiles import PageAssets
from sessiond.web.runtime import Runtime

__all__ = [
    "AUDIT",
    "EVENTS",
    "METRICS",
    "PAGE",
    "RETENTION",
    "RUNTIME",
    "SEARCH",
    "SETTINGS",
    "STARTED_AT",
    "STATS",
    "STORE",
    "TRASH",
    "WATCHER",
]

SETTINGS = web.AppKey("settings", Settings)  # as loaded at start; RUNTIME holds what reloads change
RUNTIME = web.AppKey("runtime", Runtime)
STORE = web.AppKey("store", SessionStore)
WATCHER = web.AppKey("watcher", SessionWatcher)
STARTED_AT = web.AppKey("started_at", float)
EVENTS = web.AppKey("events", EventFeed)
TRASH: web.AppKey[Trash | None] = web.AppKey("trash")  # None while trash_days is 0
STATS = web.AppKey("stats", StatsKeeper)
PAGE = web.AppKey("page", PageAssets)  # the web page's files, read once at start
RETENTION = web.AppKey("retention", Retention)
SEARCH: web.AppKey[SearchKeeper | None] = web.AppKey("search")  # None while search is off
AUDIT = web.AppKey("audit", AuditTrail)  # the audit trail: the journal, and a file in the state directory

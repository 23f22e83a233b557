"""Every piece of typed application state, declared in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .config import Settings
    from .events import EventFeed
    from .metrics import Metrics
    from .middlewares.request_id import RequestInfo
    from .runtime import Runtime
    from .stats import StatsKeeper
    from .store import SessionStore
    from .trash import Trash
    from .watcher import SessionWatcher

REQUEST_ID_HEADER = "X-Request-ID"

SETTINGS = web.AppKey("settings", "Settings")  # as loaded at start; RUNTIME holds what reloads change
RUNTIME = web.AppKey("runtime", "Runtime")
STORE = web.AppKey("store", "SessionStore")
WATCHER = web.AppKey("watcher", "SessionWatcher")
METRICS = web.AppKey("metrics", "Metrics")
STARTED_AT = web.AppKey("started_at", float)
EVENTS = web.AppKey("events", "EventFeed")
TRASH = web.AppKey("trash", "Trash | None")  # None while trash_days is 0
STATS = web.AppKey("stats", "StatsKeeper")

# Per-request state (one mutable object; see RequestInfo).
REQUEST_INFO = web.RequestKey("info", "RequestInfo")

"""The route table: every route with its handler and its policy, in one place.

The app registers routes from it; auth, the rate limits and the readiness gate
read each request's policy from it; metrics label by its path templates; a test
holds the OpenAPI document to it. A new route gets a policy here or nowhere.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from sessiond.core.tokens import Scope
from sessiond.web.api.audit import read_audit
from sessiond.web.api.events import stream_events
from sessiond.web.api.export import export
from sessiond.web.api.health import api_health, health, livez
from sessiond.web.api.invalid import list_invalid
from sessiond.web.api.openapi import openapi_document
from sessiond.web.api.retention import show_retention
from sessiond.web.api.search import search
from sessiond.web.api.sessions import batch_delete, delete_session, get_session, list_sessions
from sessiond.web.api.stats import stats
from sessiond.web.api.trash import list_trash, read_trashed, restore
from sessiond.web.api.whoami import whoami
from sessiond.web.metrics import scrape
from sessiond.web.page import page_asset, page_index, page_redirect
from sessiond.web.typedefs import Handler


class Policy(enum.Enum):
    """Who may call a route, and when."""

    PROBE = "probe"  # no token, never rate limited, answered while starting: liveness and readiness
    MONITORING = "monitoring"  # the token unless metrics_require_token is off; never rate limited
    STATUS = "status"  # token and rate limits, but answered while starting: it says why
    API = "api"  # token, rate limits, and 503 until the first index is whole
    PAGE = "page"  # the web page's own files: no token, never rate limited, served while starting

    @property
    def rate_limited(self) -> bool:
        """Whether the per-IP and per-token limits apply (monitoring must never starve)."""
        return self in (Policy.STATUS, Policy.API)

    @property
    def needs_whole_index(self) -> bool:
        """Whether the route answers 503 until the index is whole (it answers from it)."""
        return self is Policy.API


@dataclass(frozen=True, slots=True)
class Need:
    """The scope a route needs, and what a token without it may not do (for its 403)."""

    scope: Scope
    doing: str


READ = Need(Scope.READ, "read sessions")
DELETE = Need(Scope.DELETE, "delete sessions")
RESTORE = Need(Scope.DELETE, "restore sessions")
METRICS = Need(Scope.ADMIN, "read the metrics")
AUDIT = Need(Scope.ADMIN, "read the audit trail")


@dataclass(frozen=True, slots=True)
class Route:
    """One route: method, path template (aiohttp syntax), handler, policy, and the scope it needs."""

    method: str
    path: str
    handler: Handler
    policy: Policy
    need: Need


# Below /api/v1/sessions/ every path is a session key ([\s\S]: a key may hold a
# newline, %0A, which "." would not match), so new resources sit beside the collection.
SESSION = r"/api/v1/sessions/{key:[\s\S]+}"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", health, Policy.PROBE, READ),
    Route("GET", "/readyz", health, Policy.PROBE, READ),  # the same answer: ready to take traffic
    Route("GET", "/livez", livez, Policy.PROBE, READ),
    Route("GET", "/metrics", scrape, Policy.MONITORING, METRICS),
    Route("GET", "/api/v1/health", api_health, Policy.STATUS, READ),
    Route("GET", "/api/v1/openapi.json", openapi_document, Policy.STATUS, READ),
    Route("GET", "/api/v1/sessions", list_sessions, Policy.API, READ),
    Route("GET", SESSION, get_session, Policy.API, READ),
    Route("DELETE", SESSION, delete_session, Policy.API, DELETE),
    Route("POST", "/api/v1/sessions:batchDelete", batch_delete, Policy.API, DELETE),
    Route("GET", "/api/v1/events", stream_events, Policy.API, READ),
    Route("GET", "/api/v1/export", export, Policy.API, READ),
    Route("GET", "/api/v1/trash", list_trash, Policy.API, READ),
    Route("POST", "/api/v1/trash:restore", restore, Policy.API, RESTORE),
    Route("GET", "/api/v1/trash/{id}", read_trashed, Policy.API, READ),
    Route("GET", "/api/v1/stats", stats, Policy.API, READ),
    Route("GET", "/api/v1/invalid", list_invalid, Policy.API, READ),
    Route("GET", "/api/v1/search", search, Policy.API, READ),
    # The page is public (a dozen small files on a first visit, which must not use up the
    # per-IP allowance its own API calls need); every figure on it needs the token.
    Route("GET", "/ui", page_redirect, Policy.PAGE, READ),
    Route("GET", "/ui/", page_index, Policy.PAGE, READ),
    Route("GET", "/ui/v/{version}/{name}", page_asset, Policy.PAGE, READ),
    Route("GET", "/api/v1/retention", show_retention, Policy.API, READ),
    Route("GET", "/api/v1/audit", read_audit, Policy.STATUS, AUDIT),  # from its file, not the index
    Route("GET", "/api/v1/whoami", whoami, Policy.STATUS, READ),  # the page asks what its token may do
)

# Unknown paths and methods get the strictest policy: a token first, then the JSON 404/405.
UNMATCHED = Policy.API


def canonical(path: str) -> str:
    """A path template as aiohttp names its resource: "{key:[\\s\\S]+}" becomes "{key}"."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


# The route an unknown path or method meets (registered last, so every other route is tried first).
UNMATCHED_PATH = r"/{unmatched:[\s\S]*}"

# What the front door makes of a route's handler: (handler, policy, need, metrics label) -> the handler served.
Guard = Callable[[Handler, Policy, Need, str], Handler]


async def unmatched(request: web.Request) -> web.StreamResponse:
    """No route for this path and method: 405 (with Allow) when the path has routes, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def add_routes(app: web.Application, guard: Guard) -> None:
    """Register every route of the table, each handler behind the front door (a GET also answers HEAD, but the event stream)."""
    for route in ROUTES:
        handler = guard(route.handler, route.policy, route.need, canonical(route.path))
        if route.method == "GET":
            app.router.add_get(route.path, handler, allow_head=route.handler is not stream_events)
        else:
            app.router.add_route(route.method, route.path, handler)
    app.router.add_route("*", UNMATCHED_PATH, guard(unmatched, UNMATCHED, READ, "unmatched"))

"""The routes: look up the index, turn domain results into the contract's responses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import __version__
from .keys import METRICS, STARTED_AT, STORE, WATCHER
from .listing import query_response
from .loader import MAX_KEY_LENGTH
from .responses import NOT_FOUND, error_response, etag_matches, json_response
from .store import DeleteFailed, SessionNotFound
from .watcher import WatchState


def _key(request: web.Request) -> str | web.Response:
    # The route's tail is decoded once by aiohttp (so %2F is a slash, %252F is "%2F").
    key = request.match_info["key"]
    if len(key) > MAX_KEY_LENGTH:
        return error_response(400, f"Session key longer than {MAX_KEY_LENGTH} characters")
    return key


async def list_sessions(request: web.Request) -> web.Response:
    """GET /api/v1/sessions: every key, ascending; the body is cached by the index.

    With If-None-Match equal to the current ETag the answer is an empty 304, so a
    monitor polling the list costs almost nothing while nothing changes.
    """
    if request.query_string and (answer := query_response(request)) is not None:
        return answer
    index = request.app[STORE].index
    body = index.list_body()
    etag = index.list_etag()
    if etag_matches(request.headers.get("If-None-Match", ""), etag):
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(body=body, headers={"Content-Type": "application/json", "ETag": etag})


async def get_session(request: web.Request) -> web.Response:
    """GET /api/v1/sessions/{key}: one session's metadata."""
    key = _key(request)
    if isinstance(key, web.Response):
        return key
    record = await request.app[STORE].find(key)
    if record is None:
        return error_response(404, NOT_FOUND)
    return json_response(
        {
            "key": record.key,
            "message_count": record.message_count,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "age_seconds": round(time.time() - record.created_at, 1),
        }
    )


async def delete_session(request: web.Request) -> web.Response:
    """DELETE /api/v1/sessions/{key}: remove the file; the index knows before we answer."""
    key = _key(request)
    if isinstance(key, web.Response):
        return key
    store = request.app[STORE]
    try:
        if await store.find(key) is None:  # a session the agent saved a moment ago is found
            raise SessionNotFound(key)
        record = await store.delete(key)
    except SessionNotFound:
        return error_response(404, NOT_FOUND)
    except DeleteFailed as exc:
        return error_response(503, f"Session not deleted: {exc}")
    return json_response({"deleted": True, "key": record.key})


def _problem(app: web.Application) -> str | None:
    watcher = app[WATCHER]
    if not watcher.ready.is_set():
        return f"starting: {watcher.describe()}"
    return watcher.problem  # e.g. "sessions folder gone", "degraded: watcher restarting ..."


def readiness(app: web.Application) -> tuple[int, dict[str, Any]]:
    """What /health and /readyz answer: 200 once indexed with a live watcher, else 503 and why."""
    problem = _problem(app)
    if problem:
        return 503, {"status": "unavailable", "reason": problem}
    return 200, {"status": "ok", "sessions": len(app[STORE].index)}


def liveness(app: web.Application) -> tuple[int, dict[str, Any]]:
    """What /livez answers: 200 while the process can serve at all; 503 means "restart me"."""
    if app[WATCHER].state is WatchState.FAILED:
        return 503, {"status": "failed", "reason": "watcher failed"}
    return 200, {"status": "ok"}


def probe_answer(app: web.Application) -> Callable[[str], tuple[int, dict[str, Any]] | None]:
    """The probes' answers by path, for a responder outside aiohttp (capacity.py)."""
    probes = {"/health": readiness, "/readyz": readiness, "/livez": liveness}

    def answer(path: str) -> tuple[int, dict[str, Any]] | None:
        probe = probes.get(path)
        return probe(app) if probe is not None else None

    return answer


async def health(request: web.Request) -> web.Response:
    """GET /health (public): 200 once indexed with a live watcher, else 503 and why."""
    status, body = readiness(request.app)
    return json_response(body, status=status)


async def livez(request: web.Request) -> web.Response:
    """GET /livez (public): 200 while the process can serve at all (the loop answers and
    the watcher has not failed for good); a failure here means "restart me"."""
    status, body = liveness(request.app)
    return json_response(body, status=status)


async def api_health(request: web.Request) -> web.Response:
    """GET /api/v1/health (token): version, uptime and index figures."""
    app = request.app
    index = app[STORE].index
    problem = _problem(app)
    return json_response(
        {
            "status": "ok" if problem is None else "unavailable",
            "reason": problem,
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - app[STARTED_AT], 1),
            "sessions": len(index),
            "invalid_files": len(index.invalid),
            "collisions": index.collision_count,
            "watcher": app[WATCHER].state.value,
        },
        status=200 if problem is None else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body, content_type = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


def add_routes(app: web.Application) -> None:
    """Register every route of the API."""
    app.router.add_get("/health", health)
    app.router.add_get("/readyz", health)  # same answer as /health: ready to take traffic
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/health", api_health)
    app.router.add_get("/api/v1/sessions", list_sessions)
    # [\s\S], not ".": a key may hold a newline (%0A), and "." stops at one.
    app.router.add_get(r"/api/v1/sessions/{key:[\s\S]+}", get_session)
    app.router.add_delete(r"/api/v1/sessions/{key:[\s\S]+}", delete_session)


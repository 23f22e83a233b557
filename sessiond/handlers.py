"""The routes: look up the index, turn domain results into the contract's responses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import __version__
from .appkeys import METRICS, STARTED_AT, STORE, WATCHER
from .errors import SessionNotFound
from .listing import query_response
from .loader import MAX_KEY_LENGTH
from .query import version
from .responses import etag_matches, json_response
from .watcher import WatchState


def _key(request: web.Request) -> str:
    # The route's tail is decoded once by aiohttp (so %2F is a slash, %252F is "%2F").
    key = request.match_info["key"]
    if len(key) > MAX_KEY_LENGTH:
        raise web.HTTPBadRequest(text=f"Session key longer than {MAX_KEY_LENGTH} characters")
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
    store = request.app[STORE]
    # The index first, without a coroutine; a miss looks at the disk (read-your-writes).
    record = store.index.get(key) or await store.find(key)
    if record is None:
        raise SessionNotFound(key)
    return json_response(
        {
            "key": record.key,
            "message_count": record.message_count,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "age_seconds": round(time.time() - record.created_at, 1),
            "version": version(record),
        }
    )


async def delete_session(request: web.Request) -> web.Response:
    """DELETE /api/v1/sessions/{key}: remove the file; the index knows before we answer."""
    key = _key(request)
    store = request.app[STORE]
    if await store.find(key) is None:  # a session the agent saved a moment ago is found
        raise SessionNotFound(key)
    record = await store.delete(key)  # SessionNotFound, DeleteFailed: mapped by the error middleware
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

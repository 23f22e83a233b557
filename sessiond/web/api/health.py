"""The probes (GET /health, /readyz, /livez: public) and GET /api/v1/health (token)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sessiond import __version__
from sessiond.live.watcher import WatchState
from sessiond.web.appkeys import SEARCH, STARTED_AT, STORE, WATCHER
from sessiond.web.responses import json_response


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
            "search": _search(app),
        },
        status=200 if problem is None else 503,
    )


def _search(app: web.Application) -> dict[str, Any]:
    """Whether search is on (the page shows its box only then) and how far its index is built."""
    keeper = app[SEARCH]
    if keeper is None:
        return {"enabled": False}
    indexed, total = keeper.progress()
    return {"enabled": True, "complete": keeper.complete, "indexed": indexed, "total": total}

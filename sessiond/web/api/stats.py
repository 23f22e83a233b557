"""GET /api/v1/stats: the overview's figures (kept by live/stats.py) and the index's health."""

from __future__ import annotations

import time

from aiohttp import web

from sessiond.web.appkeys import SETTINGS, STATS, STORE, WATCHER
from sessiond.web.responses import json_response


async def stats(request: web.Request) -> web.Response:
    """GET /api/v1/stats: counts by channel, per day, by message count; bytes; health.

    Until the index is whole the front door answers 503 with Retry-After (Policy.needs_whole_index).
    """
    app = request.app
    watcher = app[WATCHER]
    index = app[STORE].index
    body = (await app[STATS].current()).summary(time.time())
    trash_days = app[SETTINGS].trash_days
    body.update(
        {
            "invalid_files": len(index.invalid),
            "collisions": index.collision_count,
            "watcher": watcher.state.value,
            "problem": watcher.problem,
            "trash": {"enabled": trash_days > 0, "days": trash_days},
        }
    )
    return json_response(body)

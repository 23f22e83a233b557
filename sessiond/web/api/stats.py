"""GET /api/v1/stats, and the full pass made as soon as the first index is complete."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiohttp import web

from sessiond.web.appkeys import SETTINGS, STATS, STORE, WATCHER
from sessiond.web.responses import json_response


async def count_when_ready(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: make the full pass as soon as the first index is complete, not on a request."""

    async def count() -> None:
        await app[WATCHER].ready.wait()
        await app[STATS].current()

    task = asyncio.create_task(count(), name="sessiond-stats-first-pass")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def stats(request: web.Request) -> web.Response:
    """GET /api/v1/stats: counts by channel, per day, by message count; bytes; health.

    Until the index is whole the readiness middleware answers 503 with Retry-After.
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

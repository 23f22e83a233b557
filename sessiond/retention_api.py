"""GET /api/v1/retention and the task that runs the rules (retention_run.py does the work)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from .appkeys import RETENTION
from .responses import json_response


async def show_retention(request: web.Request) -> web.Response:
    """GET /api/v1/retention: the rules, the last run, the next, and a preview of it."""
    retention = request.app[RETENTION]
    settings = retention.runtime.settings
    return json_response(
        {
            "rules": [rule.describe() for rule in settings.retention],
            "interval_seconds": settings.retention_interval,
            "max_per_run": settings.retention_max_per_run,
            "dry_run": settings.retention_dry_run,
            "grace_seconds": settings.retention_grace,
            "last_run": retention.last.show() if retention.last else None,
            "next_run_at": retention.next_at if settings.retention else None,
            "preview": await retention.preview() if settings.retention else None,
        }
    )


async def run_retention(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the retention task, for as long as the app runs."""
    task = asyncio.create_task(app[RETENTION].forever(), name="sessiond-retention")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

"""GET /api/v1/retention (the runs themselves: live/retention.py)."""

from __future__ import annotations

from aiohttp import web

from sessiond.web.appkeys import RETENTION
from sessiond.web.responses import json_response


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
            "came_back_total": retention.came_back_total,
            "next_run_at": retention.next_at if settings.retention else None,
            "preview": await retention.preview() if settings.retention else None,
        }
    )

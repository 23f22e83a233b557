"""GET /api/v1/audit: the audit trail's file, newest first (admin scope; the writer is core/audit.py)."""

from __future__ import annotations

import asyncio
import functools
import math

from aiohttp import web

from sessiond.core.errors import Unavailable
from sessiond.core.query import QueryError, single_values, whole_number
from sessiond.web.appkeys import AUDIT
from sessiond.web.responses import json_response

PARAMS = frozenset({"prefix", "actor", "since", "until", "cursor", "limit"})
NO_FILE = "The audit file is kept in state_dir, which is not set; the records are in the journal (logger sessiond.audit)"


def _seconds(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise QueryError(name, f"{text!r} is not a number (Unix seconds)")
    return value


async def read_audit(request: web.Request) -> web.Response:
    """Records filtered by key prefix, actor and time (since/until, Unix seconds), paged by cursor."""
    trail = request.app[AUDIT]
    if trail.path is None:
        raise Unavailable(NO_FILE, status=404)
    values = single_values(request.query.items(), PARAMS, strict=True)
    cursor = values.get("cursor")
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 30):
        raise QueryError("cursor", "is not a cursor from a previous answer")
    read = functools.partial(
        trail.read,
        prefix=values.get("prefix"),
        actor=values.get("actor"),
        since=_seconds("since", values.get("since")),
        until=_seconds("until", values.get("until")),
        cursor=cursor,
        limit=whole_number("limit", values["limit"], 1, 1000) if "limit" in values else 100,
    )
    try:
        page = await asyncio.get_running_loop().run_in_executor(None, read)
    except OSError as exc:
        raise Unavailable(f"The audit file cannot be read: {exc.strerror}") from None
    return json_response({"records": page.records, "next_cursor": page.next_cursor})

"""GET /api/v1/invalid: the files in the sessions folder that are not sessions, and why.

Answered from the index (what the loader found when it last read each file); the
folder is not read again per request. The operator's next step is to fix or delete
each file, so each comes with its reason, size and modification time.
"""

from __future__ import annotations

import heapq
from typing import Any

from aiohttp import web

from sessiond.core.index import InvalidFile
from sessiond.core.query import MAX_LIMIT, whole_number
from sessiond.web.appkeys import STORE
from sessiond.web.responses import json_response

DEFAULT_LIMIT = 1000


def shown_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by os as surrogate escapes) as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def describe(bad: InvalidFile) -> dict[str, Any]:
    """One invalid file as the API shows it (mtime null when the file could not be stat'ed)."""
    name = shown_name(bad.name)
    return {
        "name": name,
        "name_is_utf8": name == bad.name,
        "reason": bad.reason,
        "size": bad.stat.size,
        "mtime": bad.stat.mtime_ns / 1e9 if bad.stat.mtime_ns else None,
    }


async def list_invalid(request: web.Request) -> web.Response:
    """The first `limit` invalid files by name (default 1000), and how many there are."""
    limit = whole_number("limit", request.query["limit"], 1, MAX_LIMIT) if "limit" in request.query else DEFAULT_LIMIT
    invalid = request.app[STORE].index.invalid
    # O(n log limit): a folder of many bad files costs no full sort per request.
    names = heapq.nsmallest(limit, invalid, key=shown_name)
    return json_response(
        {"files": [describe(invalid[name]) for name in names], "count": len(invalid), "truncated": len(invalid) > len(names)}
    )

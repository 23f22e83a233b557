"""The search resource: GET /api/v1/search?q=... (full text over every session's messages)."""

from __future__ import annotations

from aiohttp import web

from sessiond.core.errors import Unavailable
from sessiond.core.query import FILTER_PARAMS, QueryError, parse_filter, single_values, whole_number
from sessiond.core.search_query import parse
from sessiond.web.appkeys import SEARCH
from sessiond.web.responses import json_response

SEARCH_PARAMS = FILTER_PARAMS | {"q", "role", "limit", "cursor"}
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_ROLE = 32
MAX_CURSOR = 512
OFF = "search is turned off on this server (search = false)"


async def search(request: web.Request) -> web.Response:
    """One page of sessions whose messages match `q`, best first, each with its hits as plain-text segments."""
    keeper = request.app[SEARCH]
    if keeper is None:
        raise Unavailable(OFF, 404)
    values = single_values(request.query.items(), SEARCH_PARAMS, strict=True)  # QueryError: a 400 at the edge
    if "q" not in values:
        raise QueryError("q", "is required: the words to search for")
    query = parse(values["q"])
    flt = parse_filter({k: v for k, v in values.items() if k in FILTER_PARAMS})
    role = values.get("role") or None
    if role is not None and len(role) > MAX_ROLE:
        raise QueryError("role", f"must be at most {MAX_ROLE} characters (user, assistant, tool, system, ...)")
    limit = whole_number("limit", values["limit"], 1, MAX_LIMIT) if "limit" in values else DEFAULT_LIMIT
    cursor = values.get("cursor") or None
    if cursor is not None and len(cursor) > MAX_CURSOR:
        raise QueryError("cursor", "is not a cursor this search gave")
    answer = await keeper.search(query, flt, role, limit, cursor)
    return json_response({"query": values["q"], **answer})

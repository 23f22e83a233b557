"""GET /api/v1/sessions with query parameters: the filtered, sorted, paged list."""

from __future__ import annotations

from aiohttp import web

from sessiond.core.query import LIST_PARAMS, meta, parse_query, run, single_values
from sessiond.web.appkeys import RUNTIME, STORE
from sessiond.web.responses import json_response


def query_response(request: web.Request) -> web.Response | None:
    """The list answer for a request with list parameters; None when it has none.

    None sends the caller down the seed's cached fast path, so a request without
    parameters (or with only unknown ones, like a cache-buster) is answered as before.
    """
    values = single_values(request.query.items(), LIST_PARAMS)  # QueryError: a 400, mapped at the edge
    if not values:
        return None
    query = parse_query(values, request.app[RUNTIME].cursor_key)
    page = run(request.app[STORE].index, query)
    items = [meta(r) for r in page.records] if query.include_meta else [r.key for r in page.records]
    return json_response({"sessions": items, "count": page.total, "next_cursor": page.next_cursor})

"""GET /api/v1/whoami: the name and scope of the token the request carries (the page shows them, and hides
what the scope may not do; the server refuses it anyway)."""

from __future__ import annotations

from aiohttp import web

from sessiond.web.front.request_id import info_of
from sessiond.web.responses import json_response


async def whoami(request: web.Request) -> web.Response:
    """{"name", "scope"} of the token (never the token)."""
    info = info_of(request)
    token = info.token if info is not None else None
    if token is None:  # the front door admits no request here without one
        raise web.HTTPUnauthorized(text="Authentication required")
    return json_response({"name": token.name, "scope": token.scope.label})

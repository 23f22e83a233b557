"""Every error leaves as JSON `{"detail": ...}`; the unexpected ones are logged with their request id."""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web

from ..responses import error_response
from ..typedefs import Handler
from .request_id import request_id_of

log = logging.getLogger(__name__)

# Clear words for the errors aiohttp raises by itself (unknown route, wrong method, ...).
_DETAILS = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    414: "Request URI too long",
    431: "Request headers too large",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn HTTP exceptions and crashes into JSON error responses."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        detail = _DETAILS.get(exc.status) or HTTPStatus(exc.status).phrase
        response = error_response(exc.status, detail)
        for name in ("Allow", "WWW-Authenticate", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("unexpected error in %s %s (request id %s)", request.method, request.path, request_id_of(request))
        return error_response(500, f"Internal server error (request id {request_id_of(request)})")

"""Every error leaves as JSON `{"detail": ...}`; the unexpected ones are logged with their request id."""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web

from ..responses import error_response
from ..typedefs import Handler
from .request_id import request_id_of

log = logging.getLogger(__name__)

# Words for the errors aiohttp raises by itself (unknown route, wrong method, ...):
# the agent's API (FastAPI) says the standard phrase, "Not Found", "Method Not Allowed".
_DETAILS = {
    413: "Request body too large",
}


def _detail(exc: web.HTTPException) -> str:
    # A handler that raises with a text of its own (`HTTPNotFound(text="Session not
    # found")`) keeps it; aiohttp's default text is "404: Not Found".
    phrase = HTTPStatus(exc.status).phrase
    if exc.text and exc.text != f"{exc.status}: {exc.reason}":
        return exc.text
    return _DETAILS.get(exc.status, phrase)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn HTTP exceptions and crashes into JSON error responses."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        response = error_response(exc.status, _detail(exc))
        for name in ("Allow", "WWW-Authenticate", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("unexpected error in %s %s (request id %s)", request.method, request.path, request_id_of(request))
        return error_response(500, f"Internal server error (request id {request_id_of(request)})")

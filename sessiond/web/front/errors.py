"""Every error leaves as JSON `{"detail": ...}`; the unexpected ones are logged with their request id.

Raise-and-map: handlers raise domain errors (SessionNotFound, QueryError,
DeleteFailed, ...) or aiohttp's HTTP exceptions with the contract's text, and
this one middleware turns each into its status and JSON body, keeping the text.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web

from sessiond.core.errors import DeleteFailed, SessionNotFound, Unavailable
from sessiond.core.query import QueryError
from sessiond.web.front.request_id import info_of, request_id_of
from sessiond.web.responses import NOT_FOUND, error_response, json_response
from sessiond.web.typedefs import Handler

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


def answer_error(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The JSON answer for *exc* raised by a handler; re-raises what must not be answered.

    An HTTP exception below 400 (a redirect) or already JSON, and a client gone
    away, propagate; an error after the response's headers went out cuts the
    connection instead of writing a second status line into the body.
    """
    if isinstance(exc, SessionNotFound):
        return error_response(404, NOT_FOUND)
    if isinstance(exc, QueryError):
        return json_response({"detail": str(exc), "parameter": exc.param}, status=400)
    if isinstance(exc, DeleteFailed):
        return error_response(503, f"Session not deleted: {exc}")
    if isinstance(exc, Unavailable):
        return error_response(exc.status, str(exc))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400 or exc.content_type == "application/json":
            raise exc
        response = error_response(exc.status, _detail(exc))
        for name in ("Allow", "WWW-Authenticate", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    if isinstance(exc, ConnectionResetError):
        raise exc  # the client went away (aiohttp's ClientConnectionResetError too): nothing to answer
    log.error("unexpected error in %s %r (request id %s)", request.method, request.path, request_id_of(request), exc_info=exc)
    if (info := info_of(request)) is not None and info.prepared:
        # Its status line is long gone: a second response would land inside the
        # body. Cut the connection, so the client sees a broken response, not a whole one.
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("response cut after an error") from None
    return error_response(500, f"Internal server error (request id {request_id_of(request)})")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn domain errors, HTTP exceptions and crashes into JSON error responses."""
    try:
        return await handler(request)
    except Exception as exc:
        return answer_error(request, exc)

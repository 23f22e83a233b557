"""Nothing before the whole truth: the API answers 503 until its index is the disk's.

Until the first index is whole (a cold start, or a restart from the snapshot),
while a new sessions folder is being indexed, and while the folder is unusable,
a partial list or a 404 for a file on disk would be a wrong answer. So every
API route answers `503 {"detail": ...}` with `Retry-After` instead; the probes,
the metrics, `/api/v1/health` and the OpenAPI document keep answering, and say why.
"""

from __future__ import annotations

from aiohttp import web

from sessiond.web.responses import error_response

RETRY_AFTER = "1"


def not_ready(why: str) -> web.Response:
    """The 503 of a route that needs the whole index, and why it is not there yet."""
    return error_response(503, f"Service unavailable: {why}", headers={"Retry-After": RETRY_AFTER})

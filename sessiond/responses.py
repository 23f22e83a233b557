"""Response builders shared by handlers and middlewares."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

NO_STORE = {"Cache-Control": "no-store"}


JSON_HEADERS = {"Content-Type": "application/json"}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response serialised with orjson."""
    # A plain header is cheaper than content_type=, which re-parses and re-sets it.
    return web.Response(body=orjson.dumps(data), status=status, headers={**JSON_HEADERS, **headers} if headers else JSON_HEADERS)


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """The contract's error shape: `{"detail": ...}`."""
    return json_response({"detail": detail}, status=status, headers=headers)

"""Response builders shared by handlers and middlewares."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

NO_STORE = {"Cache-Control": "no-store"}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """The contract's error shape: `{"detail": ...}`."""
    return json_response({"detail": detail}, status=status, headers=headers)

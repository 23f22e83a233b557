"""One access-log line per request, for journald: never a token, always the request id."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from sessiond.web.front.request_id import info_of


class AccessLogger(AbstractAccessLogger):
    """`METHOD path status duration client=… rid=…` (no query string, no headers)."""

    @property
    def enabled(self) -> bool:
        """aiohttp skips log() entirely when off (access_log = false sets the level)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        info = info_of(request)
        self.logger.info(
            "%s %s %d %.1fms client=%s rid=%s",
            request.method,
            request.path,
            response.status,
            time * 1000,
            (info.client if info else None) or request.remote or "-",
            info.id if info else "-",
        )

"""The scrape listener: /metrics alone, without a token, on a socket of its own.

systemd passes it as the socket named ``metrics`` (systemd/sessiond-metrics.socket,
127.0.0.1:9477). Prometheus scrapes it the ordinary way, with no credentials
file to hand out: the API token (which can delete sessions) never leaves
sessiond, and what the listener serves is figures, never session data. Who
may connect is the socket unit's business (IPAddressAllow=, the address).
"""

from __future__ import annotations

from aiohttp import web

from sessiond.web.appkeys import METRICS
from sessiond.web.front.errors import error_middleware
from sessiond.web.front.request_id import request_id_middleware, stamp_response

METRICS_FD_NAME = "metrics"


def create_metrics_app(main: web.Application) -> web.Application:
    """A small app serving the main app's metrics; anything else is a JSON 404."""
    metrics = main[METRICS]

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application(middlewares=[request_id_middleware, error_middleware], client_max_size=1024)
    app.on_response_prepare.append(stamp_response)
    app.router.add_get("/metrics", scrape)
    return app

"""The operators' web page at /ui/: the files of sessiond/web/ui/, served from memory.

Not `web.static`: the page needs index.html at /ui/, its own security headers on every
answer, and its files read through importlib.resources, so they are found in a wheel or
a zip as well as in a checkout (pagefiles.py). The set of files is fixed when the app is
built, so a request can only ever name one of them: there is no path to traverse.

The page is public (routes.py: Policy.PAGE); everything it shows comes from the API
with the operator's token, which the page keeps in sessionStorage and sends as a
Bearer header.
"""

from __future__ import annotations

from aiohttp import web

from sessiond.web.appkeys import PAGE
from sessiond.web.pagefiles import IMMUTABLE, SECURITY_HEADERS, Asset
from sessiond.web.responses import etag_matches

PAGE_PATH = "/ui/"


def _send(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": asset.etag}
    if etag_matches(request.headers.get("If-None-Match", ""), asset.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


async def page_redirect(request: web.Request) -> web.Response:
    """GET /ui: the page lives at /ui/.

    Relative ("ui/"), so behind a proxy that mounts the daemon under a prefix
    (/agents/NAME/ui -> /ui) the browser lands on /agents/NAME/ui/, not on /ui/.
    """
    return web.Response(status=308, headers={**SECURITY_HEADERS, "Location": PAGE_PATH.removeprefix("/")})


async def page_index(request: web.Request) -> web.Response:
    """GET /ui/: index.html, revalidated with its ETag."""
    return _send(request, request.app[PAGE].index, "no-cache")


async def page_asset(request: web.Request) -> web.Response:
    """GET /ui/v/{version}/{name}: a script, style sheet or icon, cacheable for a year."""
    page = request.app[PAGE]
    found = page.assets.get(request.match_info["name"])
    if found is None or request.match_info["version"] != page.version:
        raise web.HTTPNotFound()
    return _send(request, found, IMMUTABLE)

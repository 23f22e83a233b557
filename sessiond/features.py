"""Everything beyond the seed's three calls, wired into the app in one place.

The list's query parameters live in the list handler itself (listing.py); the rest is
here: bulk delete, the trash, the change feed, export and the OpenAPI document. New
resources sit beside the collection, never under it: below /api/v1/sessions/ every
path is a session key.
"""

from __future__ import annotations

from aiohttp import web

from .bulk import batch_delete


def setup_features(app: web.Application) -> None:
    """Register the routes, state and background work of the features beyond the seed."""
    app.router.add_post("/api/v1/sessions:batchDelete", batch_delete)

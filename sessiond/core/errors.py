"""The domain errors the HTTP edge maps to a status (web/front/errors.py).

The core and the live services raise them; only web/front/errors.py knows their status codes.
(QueryError, a 400, lives with the query language in query.py.)
"""

from __future__ import annotations


class SessionNotFound(LookupError):
    """No session is indexed under that key (404)."""


class SessionChanged(Exception):
    """The session changed since it was judged (retention): it was left alone."""


class DeleteFailed(Exception):
    """The session could not be deleted and nothing was changed (503); the message is safe to show."""


class Unavailable(Exception):
    """The request cannot be served now or here (trash off, trash unreadable, ...); the text says why."""

    def __init__(self, detail: str, status: int = 503) -> None:
        super().__init__(detail)
        self.status = status

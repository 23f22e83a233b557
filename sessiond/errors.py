"""Domain errors the HTTP edge maps to a status (middlewares/errors.py), beside those of their modules.

SessionNotFound and DeleteFailed live in store.py, QueryError in query.py; what is
here has no better home.
"""

from __future__ import annotations


class Unavailable(Exception):
    """The request cannot be served now or here (trash off, trash unreadable, ...); the text says why."""

    def __init__(self, detail: str, status: int = 503) -> None:
        super().__init__(detail)
        self.status = status

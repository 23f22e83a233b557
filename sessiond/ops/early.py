"""A stop asked for while the daemon is still importing its modules.

Importing aiohttp and the rest takes a few hundred ms (more on a loaded machine), and
until the event loop takes SIGTERM over, the default action would kill the process
mid-start: exit status -15 instead of a clean stop. The entry point installs these
handlers first, with nothing but the standard library imported; the daemon asks
`requested()` once its own handlers are in place, and stops at once if so.
"""

from __future__ import annotations

import signal
from types import FrameType

_requested: list[int] = []


def _note(signum: int, _frame: FrameType | None) -> None:
    _requested.append(signum)


def install() -> None:
    """Remember SIGTERM and SIGINT instead of dying of them (until the loop takes them over)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _note)


def requested() -> bool:
    """Whether a stop was asked for before the daemon's own handlers were in place."""
    return bool(_requested)

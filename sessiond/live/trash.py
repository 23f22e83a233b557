"""The trash's work off the event loop: its file operations in the executor, and the purge task."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sessiond.core.errors import Unavailable
from sessiond.core.folder import Folder, FolderUnusable
from sessiond.core.removal import RemovalFailed
from sessiond.core.trash import Trash

log = logging.getLogger(__name__)

PURGE_EVERY = 600.0
T = TypeVar("T")


async def off_loop(what: str, call: Callable[..., T], *args: object) -> T:
    """*call*(*args) in the executor; a folder or file-system failure becomes Unavailable("*what*: why")."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, call, *args)
    except (FolderUnusable, RemovalFailed) as exc:
        raise Unavailable(f"{what}: {exc}") from None
    except OSError as exc:
        log.warning("%s: %s", what, exc.strerror)
        raise Unavailable(f"{what}: {exc.strerror}") from None


async def purge_forever(trash: Trash, folder: Callable[[], Folder | None]) -> None:
    """Purge expired entries now and then, from the sessions *folder* of the moment (None: nothing to purge)."""
    every = min(PURGE_EVERY, max(1.0, trash.retention / 10))
    while True:
        current = folder()
        if current is not None:
            try:
                await off_loop("trash purge failed", trash.purge, current, time.time())
            except Unavailable as exc:
                log.warning("%s", exc)
        await asyncio.sleep(every)

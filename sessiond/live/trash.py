"""The trash's work off the event loop: its file operations in the executor, and the purge task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sessiond.core.audit import Actor, AuditFailed, AuditTrail
from sessiond.core.errors import Unavailable
from sessiond.core.folder import Folder, FolderUnusable
from sessiond.core.removal import RemovalFailed
from sessiond.core.trash import RestoreError, Trash, TrashEntry

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


def restore_audited(trash: Trash, folder: Folder, entry: TrashEntry, audit: AuditTrail, actor: Actor) -> str:
    """Restore *entry* (trash.restore), its audit record written first: AuditFailed restores nothing. Blocking."""
    audit.write(actor, "restore", "restored", entry.key, entry.name, trash_id=entry.id)
    try:
        return trash.restore(folder, entry.id)
    except (RestoreError, FolderUnusable, RemovalFailed, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        with contextlib.suppress(AuditFailed):
            audit.write(actor, "restore", "refused", entry.key, entry.name, reason=reason, trash_id=entry.id)
        raise


async def purge_forever(trash: Trash, folder: Callable[[], Folder | None], audit: AuditTrail) -> None:
    """Purge expired entries now and then, from the sessions *folder* of the moment (None: nothing to purge)."""
    every = min(PURGE_EVERY, max(1.0, trash.retention / 10))
    while True:
        current = folder()
        if current is not None:
            try:
                await off_loop("trash purge failed", trash.purge, current, time.time(), audit)
            except Unavailable as exc:
                log.warning("%s", exc)
        await asyncio.sleep(every)

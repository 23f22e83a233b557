"""The watch task: file-system batches in, files re-read, index updated."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable

from watchfiles import BaseFilter, Change, awatch

from .loader import is_session_name
from .store import SessionStore

log = logging.getLogger(__name__)


class SessionFileFilter(BaseFilter):
    """Let through only top-level `*.json` files of the sessions folder."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = os.path.normpath(folder)

    def __call__(self, change: Change, path: str) -> bool:
        head, name = os.path.split(path)
        return head == self.folder and is_session_name(name)


class SessionWatcher:
    """Keeps a SessionStore equal to its folder: watch first, then scan, then apply hints."""

    def __init__(
        self,
        store: SessionStore,
        *,
        debounce_ms: int = 20,
        force_polling: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.store = store
        self.debounce_ms = debounce_ms
        self.force_polling = force_polling
        self.progress = progress
        self.ready = asyncio.Event()
        self.state = "starting"
        self.batches = 0
        self.files_seen = 0
        self.started_at = time.monotonic()
        self._hints: set[str] = set()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        store.retry_hook = self._retry_later

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start watching in the background; `ready` is set once the first scan is applied."""
        self._task = asyncio.create_task(self._run(), name="sessiond-watcher")
        self._task.add_done_callback(self._log_end)
        return self._task

    def _log_end(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.state = "failed"
            log.error("file watcher stopped: %r", task.exception())

    async def stop(self) -> None:
        """Stop the watch and wait for it to finish."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def alive(self) -> bool:
        """True while the watch task runs."""
        return self._task is not None and not self._task.done()

    def hint(self, name: str) -> None:
        """Ask for *name* to be re-read soon."""
        self._hints.add(name)
        self._wake.set()

    def _retry_later(self, name: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.hint, name)

    # -- the task ------------------------------------------------------------

    async def _run(self) -> None:
        folder = self.store.folder
        events = awatch(
            folder,
            watch_filter=SessionFileFilter(folder),
            debounce=max(self.debounce_ms, 1),
            step=max(self.debounce_ms // 4, 1),
            stop_event=self._stop,
            recursive=False,
            force_polling=self.force_polling,
            ignore_permission_denied=True,
        )
        reader = asyncio.create_task(self._read(events), name="sessiond-watch-reader")
        try:
            # awatch sets its watch up on first iteration; one pass of the loop lets the
            # reader task reach that point, so nothing written during the scan is missed.
            await asyncio.sleep(0)
            self.state = "indexing"
            await self.store.scan(self.progress)
            self.state = "ready"
            self.ready.set()
            await self._apply_forever(reader)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await events.aclose()
            self.state = "stopped"

    async def _read(self, events: AsyncIterator[set[tuple[Change, str]]]) -> None:
        async for batch in events:
            self.batches += 1
            self.files_seen += len(batch)
            self._hints.update(os.path.basename(path) for _, path in batch)
            self._wake.set()

    async def _apply_forever(self, reader: asyncio.Task[None]) -> None:
        while True:
            waiter = asyncio.create_task(self._wake.wait())
            done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                waiter.cancel()
                reader.result()  # re-raises what killed the watch
                raise RuntimeError("file watch ended unexpectedly")
            self._wake.clear()
            names, self._hints = self._hints, set()
            await self.store.refresh(sorted(names))

"""The watch task: file-system batches in, files re-read, index updated, and never trusted alone.

Batches are hints (a set of names to re-read), and the watch itself can fail
quietly: watchfiles drops inotify's queue-overflow notice, and a watch on a
folder that is removed or replaced is dead without a word. So the task

- also watches the workspace (not recursively), to see the sessions folder go,
  come back or be replaced, and then re-establishes the watch and resyncs;
- reconciles (a stat-only walk, SessionStore.reconcile) after every burst of
  events, after any restart, and on a slow timer (see reconcile.py);
- restarts a failed watch with backoff, reporting why through `problem`
  (which /health turns into a 503) until it is in step again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import stat
import time
from collections.abc import AsyncIterator, Callable

from watchfiles import BaseFilter, Change, awatch

from .loader import is_session_name
from .reconcile import ReconcileSchedule
from .store import SessionStore

log = logging.getLogger(__name__)

FOLDER_POLL = 0.2  # seconds between looks for a missing sessions folder
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
HEALTHY_AFTER = 30.0  # a watch that ran this long before failing starts the backoff afresh

FolderId = tuple[int, int]


class WatchLost(RuntimeError):
    """The file watch ended without being asked to."""


def folder_identity(path: str) -> FolderId | None:
    """(device, inode) of the directory at *path*, or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class SessionFileFilter(BaseFilter):
    """Let through top-level `*.json` files of the sessions folder, and the folder itself."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = os.path.normpath(folder)
        self.workspace = os.path.dirname(self.folder)

    def __call__(self, change: Change, path: str) -> bool:
        head, name = os.path.split(path)
        if head == self.folder:
            return is_session_name(name)
        # The workspace's own entry for the folder (or the workspace itself) came or went.
        return path in (self.folder, self.workspace)


class SessionWatcher:
    """Keeps a SessionStore equal to its folder: watch first, then scan, then apply hints."""

    def __init__(
        self,
        store: SessionStore,
        *,
        debounce_ms: int = 20,
        force_polling: bool = False,
        reconcile_interval: float = 0.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.store = store
        self.folder = os.path.normpath(store.folder)
        self.debounce_ms = debounce_ms
        self.force_polling = force_polling
        self.progress = progress
        self.schedule = ReconcileSchedule(reconcile_interval, time.monotonic())
        self.ready = asyncio.Event()
        self.state = "starting"
        self.batches = 0
        self.files_seen = 0
        self.restarts = 0
        self._hints: set[str] = set()
        self._folder_touched = False
        self._new_folder = False
        self._wake = asyncio.Event()
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def alive(self) -> bool:
        """True while the watch task runs."""
        return self._task is not None and not self._task.done()

    @property
    def problem(self) -> str | None:
        """Why the index may not equal the disk right now, or None when it is in step."""
        if not self.alive:
            return "watcher down"
        return None if self.state == "ready" else self.state

    def hint(self, name: str) -> None:
        """Ask for *name* to be re-read soon."""
        self._hints.add(name)
        self._wake.set()

    def _retry_later(self, name: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.hint, name)

    # -- the supervisor ------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                began = time.monotonic()
                try:
                    await self._watch(await self._await_folder())
                except Exception as exc:
                    failures = 1 if time.monotonic() - began > HEALTHY_AFTER else failures + 1
                    self.restarts += 1
                    delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
                    self.state = f"degraded: watcher restarting after {type(exc).__name__}"
                    log.error("file watch failed (%r); restarting it in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
        finally:
            self.state = "stopped"

    async def _await_folder(self) -> FolderId:
        """The folder's identity once it exists; until then the index holds nothing."""
        ident = folder_identity(self.folder)
        if ident is not None:
            return ident
        log.warning("sessions folder %s is gone; serving nothing until it is back", self.folder)
        await self.store.reconcile(expect_changes=True)  # every file went with it
        self.state = "sessions folder gone"  # only now: while health says so, nothing is served
        while (ident := folder_identity(self.folder)) is None:
            await asyncio.sleep(FOLDER_POLL)
        log.info("sessions folder %s is back", self.folder)
        self._new_folder = True
        return ident

    # -- one watch -----------------------------------------------------------

    async def _watch(self, ident: FolderId) -> None:
        """Watch the folder until it is removed or replaced (return) or the watch fails (raise)."""
        stop = asyncio.Event()  # one per watch: awatch sets it when its reader is cancelled
        events = awatch(
            os.path.dirname(self.folder),
            self.folder,
            watch_filter=SessionFileFilter(self.folder),
            debounce=max(self.debounce_ms, 1),
            step=max(self.debounce_ms // 4, 1),
            stop_event=stop,
            recursive=False,
            force_polling=self.force_polling,
            ignore_permission_denied=True,
        )
        reader = asyncio.create_task(self._read(events), name="sessiond-watch-reader")
        try:
            # awatch sets its watch up on first iteration; one pass of the loop lets the
            # reader reach that point, so nothing written during the catch-up is missed.
            await asyncio.sleep(0)
            _raise_if_ended(reader)
            await self._catch_up(ident)
            self.state = "ready"
            await self._apply_until_moved(reader, ident)
        finally:
            stop.set()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await events.aclose()

    async def _catch_up(self, ident: FolderId) -> None:
        if not self.ready.is_set():
            self.state = "indexing"
            await self.store.scan(self.progress)
            self.ready.set()
            return
        self.state = "resyncing"
        # A new folder differs from the index by design; after a failed watch, any
        # difference is an event that was lost while it was down.
        await self._reconcile(expect_changes=self._new_folder)
        self._new_folder = False

    async def _read(self, events: AsyncIterator[set[tuple[Change, str]]]) -> None:
        async for batch in events:
            self.batches += 1
            self.files_seen += len(batch)
            self.schedule.saw_events(time.monotonic())
            for _, path in batch:
                if path in (self.folder, os.path.dirname(self.folder)):
                    self._folder_touched = True
                else:
                    self._hints.add(os.path.basename(path))
            self._wake.set()

    async def _apply_until_moved(self, reader: asyncio.Task[None], ident: FolderId) -> None:
        # A reconcile runs beside the hint loop, not in it: its stat walk takes seconds on
        # a huge folder, and new writes must not wait for it to become visible.
        checking: asyncio.Task[None] | None = None
        try:
            while True:
                await self._wait_for_work(reader, checking)
                if checking is not None and checking.done():
                    checking, done = None, checking
                    done.result()  # a failed reconcile fails the watch, which restarts it
                if self._folder_touched:
                    self._folder_touched = False
                    if folder_identity(self.folder) != ident:
                        log.warning("sessions folder %s was removed or replaced; watching it afresh", self.folder)
                        return
                if self._hints:
                    names, self._hints = self._hints, set()
                    await self.store.refresh(sorted(names))
                if checking is None and time.monotonic() >= self.schedule.due_at():
                    if folder_identity(self.folder) != ident:
                        return  # moved without an event saying so (polling can miss it)
                    checking = asyncio.create_task(self._reconcile(), name="sessiond-reconcile")
        finally:
            if checking is not None:
                checking.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await checking

    async def _wait_for_work(self, reader: asyncio.Task[None], checking: asyncio.Task[None] | None) -> None:
        timeout = math.inf if checking is not None else self.schedule.due_at() - time.monotonic()
        if not self._wake.is_set() and timeout > 0:
            waiter = asyncio.ensure_future(self._wake.wait())
            watched = {waiter, reader} if checking is None else {waiter, reader, checking}
            await asyncio.wait(watched, timeout=None if timeout == math.inf else timeout, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        _raise_if_ended(reader)
        self._wake.clear()

    async def _reconcile(self, expect_changes: bool = False) -> None:
        started = time.monotonic()
        # Names the watcher reports while the walk runs are in flight, not lost.
        await self.store.reconcile(in_flight=self._hints, grace=3 * self.debounce_ms / 1000, expect_changes=expect_changes)
        self.schedule.done(started, time.monotonic())


def _raise_if_ended(reader: asyncio.Task[None]) -> None:
    if not reader.done():
        return
    if reader.cancelled():
        raise WatchLost("file watch was cancelled")
    reader.result()  # re-raises what killed the watch
    raise WatchLost("file watch ended unexpectedly")

"""The watch task: file-system batches in, files re-read, index updated, and never trusted alone.

The watch is set up before the first scan, so nothing written meanwhile is missed.
inotify then reports every open of the scan's reads (notify, watchfiles' backend,
subscribes to IN_OPEN and cannot be told not to; watchfiles drops those events), which
costs watchfiles' thread some CPU. Scanning first and closing the window with a stat
walk after the watch was measured too (docs/performance.md): the walk cost more than
the events on this project's VM, so the watch stays first.

Batches are hints (a set of names to re-read), and the watch itself can fail
quietly: watchfiles drops inotify's queue-overflow notice, and a watch on a
folder that is removed or replaced is dead without a word. So the task

- also watches the workspace (not recursively), to see the sessions folder go,
  come back or be replaced, and then re-establishes the watch and resyncs;
- uses the folder only while it is a real directory (folder.py): a symlink or
  anything else in its place is "unusable", and the index is emptied;
- reconciles (a stat-only walk, SessionStore.reconcile) after every burst of
  events, after any restart, and on a slow timer (see reconcile.py);
- restarts a failed watch with backoff, reporting why through `problem`
  (which /health turns into a 503) until it is in step again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable

from watchfiles import BaseFilter, Change, awatch

from sessiond.core.folder import Folder, FolderUnusable, identity, verify
from sessiond.core.names import is_session_name
from sessiond.core.reconcile import ReconcileSchedule
from sessiond.live.store import SessionStore

log = logging.getLogger(__name__)

FOLDER_POLL = 0.2  # seconds between looks for a missing or unusable sessions folder
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
HEALTHY_AFTER = 30.0  # a watch that ran this long before failing starts the backoff afresh
GIVE_UP = 10  # failures in a row (no healthy watch between) and the watch has failed for good
# watchfiles answers at least this often, with an empty batch if nothing changed: the
# answers show its thread is alive (and the first would prove the watch is set up, had
# _StopEvent not proved it already).
HEARTBEAT_MS = 200


class WatchState(enum.Enum):
    """Where the watch is; `SessionWatcher.problem` turns every state but READY into a reason."""

    STARTING = "starting"
    INDEXING = "indexing"  # the first scan runs
    READY = "ready"
    RESYNCING = "resyncing"  # a new sessions folder is being indexed
    DEGRADED = "degraded"  # the watch failed and is being restarted
    GONE = "sessions folder gone"
    UNUSABLE = "sessions folder unusable"
    STOPPED = "stopped"
    FAILED = "failed"


# The API answers 503 in these states: its index is not (yet) the whole truth of a
# folder it may read. GONE serves the empty truth; DEGRADED serves an index that may
# lag (misses are looked up on disk).
NOT_SERVING = frozenset({WatchState.STARTING, WatchState.INDEXING, WatchState.RESYNCING, WatchState.UNUSABLE})


class WatchLost(RuntimeError):
    """The file watch ended without being asked to."""


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


class _StopEvent(asyncio.Event):
    """The watch's stop event, whose first look from watchfiles' thread proves the watch is set up.

    watchfiles' thread asks `is_set()` every `step` ms, and only from `RustNotify.watch`,
    which runs once the watcher exists: the inotify watches added (or, polling, the
    folder's first listing taken). So that first call says the scan may start, without
    waiting up to HEARTBEAT_MS for the first empty batch (which still proves it if
    watchfiles ever stops asking).
    """

    def __init__(self, on_first_look: Callable[[], None]) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._on_first_look: Callable[[], None] | None = on_first_look

    def is_set(self) -> bool:
        notify = self._on_first_look
        if notify is not None and threading.get_ident() != self._loop_thread:
            self._on_first_look = None
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                self._loop.call_soon_threadsafe(notify)
        return super().is_set()


def _undecodable(exc: BaseException) -> bool:
    # watchfiles raises its internal error, wrapped in an ExceptionGroup by anyio, and
    # keeps raising it on every later event: its core cannot turn such a name into text.
    if isinstance(exc, BaseExceptionGroup):
        return any(_undecodable(inner) for inner in exc.exceptions)
    return type(exc).__name__ == "WatchfilesRustInternalError" and "Unable to decode path" in str(exc)


class SessionWatcher:
    """Keeps a SessionStore equal to its folder: watch first, then scan, then apply hints."""

    def __init__(
        self,
        store: SessionStore,
        *,
        debounce_ms: int = 20,
        force_polling: bool | None = None,
        reconcile_interval: float = 0.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.store = store
        self.folder = os.path.normpath(store.path)
        self.debounce_ms = debounce_ms
        self.force_polling = force_polling
        self.progress = progress
        self.schedule = ReconcileSchedule(reconcile_interval, time.monotonic())
        self.ready = asyncio.Event()
        self.state = WatchState.STARTING
        self.why = ""  # the detail of DEGRADED and UNUSABLE
        self.batches = 0
        self.files_seen = 0
        self.restarts = 0
        self.indexed = (0, 0)  # (files done, files in all) of the first scan
        self._hints: set[str] = set()
        self._folder_touched = False
        self._new_folder = False
        self._batch_lost = False
        self._checking: asyncio.Task[None] | None = None  # a reconcile beside the hint loop
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        store.reread = self.hint

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start watching in the background; `ready` is set once the first scan is applied."""
        self._task = asyncio.create_task(self._run(), name="sessiond-watcher")
        self._task.add_done_callback(self._log_end)
        return self._task

    def _log_end(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._enter(WatchState.FAILED)
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

    def _enter(self, state: WatchState, why: str = "") -> None:
        self.state, self.why = state, why

    def describe(self) -> str:
        """The state in words, e.g. "sessions folder unusable: is a symlink (not followed)"."""
        if self.state is WatchState.INDEXING and self.indexed[1]:
            return f"indexing {self.indexed[0]:,}/{self.indexed[1]:,} files"
        return f"{self.state.value}: {self.why}" if self.why else self.state.value

    def _indexing(self, done: int, total: int) -> None:
        self.indexed = (done, total)
        if self.progress is not None:
            self.progress(done, total)

    @property
    def problem(self) -> str | None:
        """Why the index may not equal the disk right now, or None when it is in step."""
        if not self.alive:
            return "watcher down"
        return None if self.state is WatchState.READY else self.describe()

    @property
    def not_serving(self) -> str | None:
        """Why the API must answer 503 now (its index is not the whole truth), or None."""
        if not self.ready.is_set() or self.state in NOT_SERVING:
            if self.state in (WatchState.STARTING, WatchState.INDEXING):
                return f"starting: {self.describe()}"
            return self.describe()
        return None

    def hint(self, name: str) -> None:
        """Ask for *name* to be re-read soon."""
        self._hints.add(name)
        self._wake.set()

    def _hinted(self, name: str) -> bool:
        return name in self._hints

    # -- the supervisor ------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                began = time.monotonic()
                try:
                    await self._watch(await self._await_folder())
                except Exception as exc:
                    if _undecodable(exc):
                        # Not a failure of the watch: one file name it cannot report. Watch
                        # again at once; a reconcile soon (it survives the restart) finds what
                        # the lost batch held, and sees that file by its stat.
                        self._batch_lost = True
                        self.schedule.soon(time.monotonic())
                        self._check_if_due()  # from here: the watch may die again before it gets to it
                        log.debug("a file name that is not UTF-8 changed; watching again")
                        await asyncio.sleep(self.debounce_ms / 1000)  # a writer that never stops cannot spin us
                        continue
                    await self._stop_checking()
                    failures = 1 if time.monotonic() - began > HEALTHY_AFTER else failures + 1
                    self.restarts += 1
                    if failures >= GIVE_UP:
                        # /livez turns 503 and the watchdog stops: a restart of the process is the remedy left.
                        self._enter(WatchState.FAILED, f"{failures} failures in a row, the last {type(exc).__name__}")
                        log.critical("file watch failed %d times in a row (%r); giving up, restart sessiond", failures, exc)
                        return
                    delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
                    self._enter(WatchState.DEGRADED, f"watcher restarting after {type(exc).__name__}")
                    log.error("file watch failed (%r); restarting it in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
        finally:
            await self._stop_checking()
            if self.state is not WatchState.FAILED:
                self._enter(WatchState.STOPPED)

    async def _stop_checking(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._checking
            self._checking = None

    async def _await_folder(self) -> Folder:
        """The verified folder once there is one; until then the index holds nothing."""
        announced = None
        while True:
            try:
                folder = verify(self.folder)
                why = None if folder is not None else ""
            except FolderUnusable as exc:
                folder, why = None, str(exc)
            if folder is not None:
                break
            if announced != why:
                announced = why
                if why:
                    log.error("sessions folder %s %s; serving nothing until it is a real directory", self.folder, why)
                else:
                    log.warning("sessions folder %s is gone; serving nothing until it is back", self.folder)
                await self.store.clear()  # every file went with it, or must not be read
                self._enter(WatchState.UNUSABLE, why) if why else self._enter(WatchState.GONE)
                self.ready.set()  # started: the truth is "nothing to serve", and the state says why
            await asyncio.sleep(FOLDER_POLL)
        if announced is not None:
            log.info("sessions folder %s is a usable directory again", self.folder)
            self._new_folder = True
        elif self.store.folder is not None and self.store.folder.ident != folder.ident:
            self._new_folder = True  # replaced by another directory between two looks
        self.store.folder = folder
        return folder

    # -- one watch -----------------------------------------------------------

    async def _watch(self, folder: Folder) -> None:
        """Watch the folder until it is removed or replaced (return) or the watch fails (raise)."""
        watching = asyncio.Event()
        stop = _StopEvent(watching.set)  # one per watch: awatch sets it when its reader is cancelled
        events = awatch(
            os.path.dirname(self.folder),
            self.folder,
            watch_filter=SessionFileFilter(self.folder),
            debounce=max(self.debounce_ms, 1),
            step=max(self.debounce_ms // 4, 1),
            stop_event=stop,
            rust_timeout=HEARTBEAT_MS,
            yield_on_timeout=True,
            recursive=False,
            force_polling=self.force_polling,
            ignore_permission_denied=True,
        )
        reader = asyncio.create_task(self._read(events, watching), name="sessiond-watch-reader")
        try:
            # Once the watch is set up (its thread's first look at `stop`, or the first
            # batch), the catch-up: so nothing written meanwhile is missed.
            first = asyncio.ensure_future(watching.wait())
            try:
                await asyncio.wait({first, reader}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                first.cancel()
            _raise_if_ended(reader)
            await self._catch_up()
            self._enter(WatchState.READY)
            await self._apply_until_moved(reader, folder)
        finally:
            stop.set()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await events.aclose()

    async def _catch_up(self) -> None:
        if not self.ready.is_set():
            self._enter(WatchState.INDEXING)
            await self.store.scan(self._indexing)
            self.ready.set()
            return
        if self._new_folder:
            # A new folder differs from the index by design: index it whole before serving.
            self._enter(WatchState.RESYNCING)
            await self._reconcile(expect_changes=True)
            self._new_folder = False
            return
        if self._batch_lost:
            return  # only one batch was lost: the reconcile asked for when it was covers it
        # After a failed watch, any difference is an event that was lost while it was down.
        await self._reconcile()

    async def _read(self, events: AsyncIterator[set[tuple[Change, str]]], watching: asyncio.Event) -> None:
        async for batch in events:
            watching.set()
            if not batch:
                continue  # a heartbeat
            self.batches += 1
            self.files_seen += len(batch)
            self.schedule.saw_events(time.monotonic())
            for _, path in batch:
                if path in (self.folder, os.path.dirname(self.folder)):
                    self._folder_touched = True
                else:
                    self._hints.add(os.path.basename(path))
            self._wake.set()

    async def _apply_until_moved(self, reader: asyncio.Task[None], folder: Folder) -> None:
        # A reconcile runs beside the hint loop, not in it: its stat walk takes seconds on
        # a huge folder, and new writes must not wait for it to become visible.
        while True:
            await self._wait_for_work(reader)
            if self._checking is not None and self._checking.done():
                done, self._checking = self._checking, None
                done.result()  # a failed reconcile fails the watch, which restarts it
            if self._folder_touched:
                self._folder_touched = False
                if identity(self.folder) != folder.ident:
                    log.warning("sessions folder %s was removed or replaced; watching it afresh", self.folder)
                    await self._stop_checking()
                    return
            if self._hints:
                names, self._hints = self._hints, set()
                await self.store.refresh(sorted(names))
            if self._checking is None and time.monotonic() >= self.schedule.due_at():
                if identity(self.folder) != folder.ident:
                    return  # moved without an event saying so (polling can miss it)
                self._check_if_due()

    def _check_if_due(self) -> None:
        """Start a reconcile beside the hint loop if one is due and none runs."""
        if self._checking is None or self._checking.done():
            if self._checking is not None and not self._checking.cancelled() and self._checking.exception():
                return  # a failed reconcile is raised by the hint loop, which restarts the watch
            if time.monotonic() >= self.schedule.due_at():
                self._checking = asyncio.create_task(self._reconcile(), name="sessiond-reconcile")

    async def _wait_for_work(self, reader: asyncio.Task[None]) -> None:
        checking = self._checking
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
        # A batch lost to a name the watch could not report is known, not drift.
        expect_changes, self._batch_lost = expect_changes or self._batch_lost, False
        # Names the watcher reports while the walk runs are in flight, not lost.
        await self.store.reconcile(in_flight=self._hinted, grace=3 * self.debounce_ms / 1000, expect_changes=expect_changes)
        # The duty cycle counts the walk, not the grace period spent waiting on the watch.
        self.schedule.done(started, time.monotonic(), self.store.last_walk_seconds)


def _raise_if_ended(reader: asyncio.Task[None]) -> None:
    if not reader.done():
        return
    if reader.cancelled():
        raise WatchLost("file watch was cancelled")
    reader.result()  # re-raises what killed the watch
    raise WatchLost("file watch ended unexpectedly")

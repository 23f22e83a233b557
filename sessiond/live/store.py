"""SessionStore: the index plus the I/O around it (scan, re-read, look up, delete)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sessiond.core import heap, loader, removal, snapshot, workers
from sessiond.core.audit import RETENTION, SESSIOND, Actor, AuditedDestination, AuditTrail
from sessiond.core.deletions import Deletions, Resurrection
from sessiond.core.errors import DeleteFailed, SessionChanged, SessionNotFound
from sessiond.core.folder import Folder, FolderChanged, FolderUnusable
from sessiond.core.index import (
    Change,
    ColumnSource,
    FileStat,
    FileState,
    InvalidFile,
    SessionIndex,
    SessionRecord,
    Sheet,
    Table,
    pack_stat,
)
from sessiond.core.names import file_name_for, is_session_name, name_is_text
from sessiond.live.threads import COLLECTOR, COMPACTIONS, SAVES

log = logging.getLogger(__name__)

# Small folders are read in a thread; big ones are spread over worker processes
# because parsing is CPU-bound and a thread pool would share one core under the GIL.
PROCESS_POOL_THRESHOLD = 20_000
SCAN_CHUNK = 2_000
STAT_CHUNK = 25_000  # a restart's files stat-ed per worker call (a few tenths of a second)
# A snapshot this big (about PROCESS_POOL_THRESHOLD sessions) makes a restart list and stat in worker processes.
BIG_SNAPSHOT_BYTES = 2 << 20
APPLY_CHUNK = 256
# Sessions held as objects (files changed since the last load) are folded back into the index's
# rows (index.Compaction) once they are at least this many and a tenth of the index, looked at
# every COMPACT_CHECK_SECONDS.
COMPACT_AT = 20_000
COMPACT_CHECK_SECONDS = 60.0
# A save told to stop (at the stop's deadline) is waited for this long, then left to end on its own.
ABANDON_WAIT = 0.25
# A file that fails to parse right after it changed may be half-written by a
# writer that does not rename; look again after these delays before calling it invalid.
RETRY_DELAYS = (0.05, 0.2, 0.5)


ChangeListener = Callable[[list[Change]], None]
ResurrectionListener = Callable[[str, Resurrection], None]
# Told the names of files just applied to the index, whatever changed for clients (a rewrite
# that keeps size and mtime changes no key, but its text); None: a scan, anything may have.
FileListener = Callable[[list[str] | None], None]


class _Big:
    """Marks a file to be parsed in a child process, off the hint loop."""

    __slots__ = ()


BIG = _Big()


class _Save:
    """A snapshot save running in a thread: its future, and the flag that tells it to stop."""

    __slots__ = ("future", "halt", "started", "version")

    def __init__(self, future: asyncio.Future[int], halt: threading.Event, version: int) -> None:
        self.future = future
        self.halt = halt
        self.started = time.monotonic()
        self.version = version


class SessionStore:
    """Owns the index for one sessions folder; every change to it goes through here."""

    def __init__(
        self,
        path: os.PathLike[str] | str,
        max_file_bytes: int,
        snapshot_path: Path | None = None,
        deletions_path: Path | None = None,
    ) -> None:
        self.path = os.fspath(path)
        # The verified folder (folder.py); None while it is gone or unusable, when it holds nothing.
        self.folder: Folder | None = None
        self.snapshot_path = snapshot_path
        self.snapshot_version = -1
        self._snapshot_lock = asyncio.Lock()
        self._saving: _Save | None = None  # the last save started (its thread may outlive a cancelled task)
        # Set by the daemon on SIGTERM: the stop's save ends (written or abandoned) by then.
        self.save_deadline: float | None = None
        self.last_scan_counts = (0, 0)  # (files read, files kept from the snapshot)
        self.max_file_bytes = max_file_bytes
        self.destination: removal.Destination = removal.Unlink()
        self.audit = AuditTrail(None, 0)  # the journal only, until the app gives it the state directory's file
        self.index = SessionIndex()
        # Serialises "read files, then update the index" and DELETE's "check, move,
        # update", so a read that started before an unlink cannot put the session back.
        self.lock = asyncio.Lock()
        self.listeners: list[ChangeListener] = []
        self.file_listeners: list[FileListener] = []
        self._retries: dict[str, int] = {}
        self._big: dict[str, asyncio.Task[None]] = {}
        self._big_again: set[str] = set()
        self._reported_invalid: set[tuple[str, str]] = set()
        self._reported_collisions: set[tuple[str, ...]] = set()
        self.last_change = time.monotonic()
        # Asks for a file to be re-read soon (the watcher's hint); the delays are ours.
        self.reread: Callable[[str], None] | None = None
        self.files_applied = 0
        self.scans = 0
        self.reconciles = 0
        # One set per running reconcile: names re-read meanwhile came through an event, not lost.
        self._applied_during_walks: list[set[str]] = []
        self.drift_files = 0  # files a reconcile found out of date that no event had reported
        self.last_walk_seconds = 0.0  # what the last reconcile's stat walk took (its cost, without waits)
        # The last deletions made through sessiond, to notice one written back (core/deletions.py).
        self.deletions = Deletions()
        self.deletions_path = deletions_path
        self.resurrection_listeners: list[ResurrectionListener] = []
        self.first_save_over = asyncio.Event()  # set once keep_snapshot's first save ended (written, current, or failed)

    # -- whole-folder --------------------------------------------------------

    async def scan(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Read every session file off the event loop and replace the index with the result.

        With a snapshot, only files whose stat differs from it are read, and every
        file it does not vouch for (new, changed, or invalid before) is read.
        """
        with COLLECTOR.paused(freeze=True):  # threads.py: the index it builds is frozen after
            await self._scan(progress)
            # What the scan left in reference cycles (its futures, ~3,400 objects at 1M) is freed
            # before settling, whose dropped strings then give whole arenas back: 178 arenas after
            # it at 1M, 206 without this collection (measured after 7ad02f0, which removed it).
            gc.collect()
            self.index.settle()  # the scan's objects are gone now
            heap.give_back()  # and the heap they left

    async def _scan(self, progress: Callable[[int, int], None] | None) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        folder = self.folder
        if folder is None:
            self._load(Sheet(), started, 0, 0)
            return
        # The first scan's listing also names the files an interrupted delete left (removal.py).
        others: list[str] | None = [] if self.scans == 0 else None
        if others is not None and self.deletions_path is not None:
            self.deletions = await loop.run_in_executor(None, Deletions.load, self.deletions_path)
        kept: list[tuple[str, FileState]] = []
        # A snapshot's rows still true of their files, taken as its columns (no record made).
        kept_rows: tuple[snapshot.Columns, list[int]] | None = None
        unchanged = False
        if self.snapshot_path is None or not self.snapshot_path.exists():
            names = await loop.run_in_executor(None, _names_in, folder, others)  # no stat: reads fstat anyway
            if others is not None and (back := await loop.run_in_executor(None, self._tidy_after_crash, folder, others)):
                listed = set(names)
                names.extend(name for name in dict.fromkeys(back) if name not in listed)
            total = len(names)
        else:
            # The snapshot is decoded while the folder is listed: one waits on the disk.
            pool = _scan_pool() if _size_of(self.snapshot_path) >= BIG_SNAPSHOT_BYTES else None
            statting: _StatWalk | None = None
            try:
                loading = loop.run_in_executor(None, snapshot.load, self.snapshot_path, self.path)
                try:
                    listing: tuple[str, list[str], list[str]] | None = None
                    if pool is not None:
                        # Listed in a worker, against the snapshot's own names: only new names come back.
                        # A million names made here while the snapshot's are decoded would share the
                        # heap's arenas with them and keep ~50 MB of it after the scan.
                        in_worker = loop.run_in_executor(pool, _new_names, folder, self.snapshot_path, others)
                        # The stat walk starts once the snapshot is decoded, not once the folder is
                        # listed too (at 1M the listing ended ~0.4 s after the decode): the other
                        # worker takes its first slices meanwhile.
                        try:
                            if (decoded := await loading) is not None:
                                statting = _StatWalk(pool, folder, decoded)
                        finally:
                            listing = await in_worker
                    new: list[str] | None = None
                    if listing is None:
                        found = await loop.run_in_executor(None, _names_in, folder, others)
                    else:
                        _, new, more = listing
                        found = new
                        if others is not None:
                            others.extend(more)
                    if others is not None and (back := await loop.run_in_executor(None, self._tidy_after_crash, folder, others)):
                        found.extend(back)
                finally:
                    previous = await loading
                if previous is not None and listing is not None and listing[0] != previous.checksum:
                    # The worker read another snapshot than the one decoded here (a save replaced the file
                    # in between, at a rescan): its "new" names mean nothing; listed again, here.
                    found = [*await loop.run_in_executor(None, _names_in, folder, None), *found]
                    new = None
                if previous is not None and new is not None and statting is not None:
                    # Every file of the snapshot is stat-ed in the scan's worker processes (one process
                    # takes ~4 µs a file here: 4 s at 1M, half of it with two), in the snapshot's order,
                    # so the comparison is column against column; the records are made meanwhile.
                    kept_rows = (previous, [])
                    names, total = await statting.compare(found, kept_rows[1])
                    unchanged = not names and len(kept_rows[1]) == len(previous)
                elif previous is not None and new is None:
                    disk = await loop.run_in_executor(None, _idents_of, folder, found)
                    total = len(disk)
                    names = await loop.run_in_executor(None, previous.split, disk, kept)
                    unchanged = not names and len(kept) == len(previous)
                    del disk
                else:  # no usable snapshot: every file is read
                    if new is not None:
                        found += await loop.run_in_executor(None, _names_in, folder, None)
                    names = list(dict.fromkeys(found))
                    total = len(names)
            finally:
                if statting is not None:
                    statting.drop()  # what the walk had not given (an error, or the listing's other snapshot)
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
            del previous, found, statting
        counts = len(names), len(kept) + (len(kept_rows[1]) if kept_rows else 0)
        sheet = Sheet(kept)  # a small snapshot's rows still true, as columns again
        del kept
        await self._read_all(folder, names, total, progress, sheet)
        if kept_rows is None:
            await loop.run_in_executor(None, sheet.order)
        self._load(sheet, started, *counts, kept_rows=kept_rows)
        if unchanged:
            self.snapshot_version = self.index.version  # the file on disk says exactly this: no save

    def _tidy_after_crash(self, folder: Folder, others: list[str]) -> list[str]:
        if self.snapshot_path is not None and (count := snapshot.remove_leftovers(self.snapshot_path)):
            log.info("removed %d unfinished snapshot file(s) of an earlier run", count)
        return removal.recover_interrupted(folder, self.max_file_bytes, others)

    def _load(
        self,
        sheet: Sheet,
        started: float,
        read: int,
        kept: int,
        kept_rows: tuple[ColumnSource, Sequence[int]] | None = None,
    ) -> None:
        """The index made of what a scan found: *sheet* (in order) read, or with *kept_rows* a snapshot's
        rows still true and *sheet* what was read beside them."""
        self.last_scan_counts = (read, kept)
        first = not len(self.index)
        if kept_rows is None:
            changes = self.index.load(sheet.others, (sheet, range(len(sheet))))
        else:
            changes = self.index.load(sheet.states(), kept_rows)
        results = sheet.others
        files = sheet.files
        # The index has its rows now. The sheet may outlive this call a moment (a worker thread that
        # put it in order drops its work item once it gets the GIL): it must not keep the strings
        # SessionIndex.settle replaces.
        sheet.clear()
        if first and self.deletions.recent:
            # A start announces nothing as created: look for what came back while we were stopped.
            now = time.time()
            for key in [key for key in self.deletions.recent if key in self.index]:
                record = self.index.get(key)
                if record is not None and (mark := self.deletions.check(record, now)) is not None:
                    changes.append(Change("resurrected", key, record, note=mark.show()))
                    self._report_resurrection(key, mark)
        self.scans += 1
        self._retries.clear()
        for _, state in results:
            if isinstance(state, InvalidFile):
                self._report_invalid(state)
        self._report_collisions()
        self.last_change = time.monotonic()
        log.info(
            "indexed %d sessions from %d files in %.2fs (%d read, %d unchanged since the snapshot, %d invalid)",
            len(self.index),
            files,
            time.monotonic() - started,
            read,
            kept,
            len(self.index.invalid),
        )
        if changes:
            self._notify(changes)
        self._files_applied(None)

    async def clear(self) -> None:
        """Forget every file: the folder is gone or unusable, so it holds nothing we may serve."""
        async with self.lock:
            self.folder = None
            self._load(Sheet(), time.monotonic(), 0, 0)

    async def _read_all(
        self, folder: Folder, names: list[str], total: int, progress: Callable[[int, int], None] | None, sheet: Sheet
    ) -> None:
        """Read the files *names* (slice by slice, in worker processes for many) into *sheet*."""
        loop = asyncio.get_running_loop()
        chunks = [names[i : i + SCAN_CHUNK] for i in range(0, len(names), SCAN_CHUNK)]
        done = total - len(names)
        pool = _scan_pool() if len(names) >= PROCESS_POOL_THRESHOLD else None
        try:
            futures = [loop.run_in_executor(pool, _read_sheet, folder, chunk, self.max_file_bytes) for chunk in chunks]
            for future in asyncio.as_completed(futures):
                part = await future
                done += part.files
                sheet.take(part)
                if progress:
                    progress(done, total)
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    async def save_snapshot(self, deadline: float | None = None) -> None:
        """Write the index to the snapshot file (off the loop) unless it is current.

        One save at a time; failures are logged, not raised. With *deadline* (a
        time.monotonic() value: the stop's), a save still running is given until then,
        and so is a new one; one not done by then is abandoned: its temp file is
        removed and the snapshot already on disk, whole and checksummed, stays the one
        the next start trusts (it re-reads only the files changed since).
        """
        if self.deletions_path is not None and self.deletions.dirty:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.deletions.save, self.deletions_path)
            except OSError as exc:
                log.warning("cannot write the deletions file %s: %s", self.deletions_path, exc.strerror)
        if self.snapshot_path is None:
            return
        async with self._snapshot_lock:
            # A save whose task was cancelled (the stop cancels the periodic one): its thread runs on.
            if self._saving is not None and not await self._finish(self._saving, deadline):
                return
            version = self.index.version
            if version == self.snapshot_version:
                return
            if deadline is not None and time.monotonic() >= deadline:
                log.warning("stop: no time left for the snapshot; the previous one stays")
                return
            read = self.index.table_reader()  # dead marks copied on the loop; the columns merged on the thread
            halt = threading.Event()
            # On a daemon thread: a stop that abandons the save does not wait for its step to end (threads.py).
            future = asyncio.wrap_future(SAVES.submit(_save, self.snapshot_path, self.path, read, lambda: not halt.is_set()))
            future.add_done_callback(_retrieved)  # a save left to end on its own is awaited by no one
            del read
            self._saving = _Save(future, halt, version)
            await self._finish(self._saving, deadline)

    async def _finish(self, save: _Save, deadline: float | None) -> bool:
        """Wait for *save* (until *deadline*, then tell it to stop); False if it was abandoned."""
        try:
            if deadline is not None and not save.future.done():
                await asyncio.wait({save.future}, timeout=max(0.0, deadline - time.monotonic()))
                save.halt.set()  # no effect on a save that is done
                # Told, it ends at its next step: on a loaded machine at 1M that took over a second. The stop
                # waits ABANDON_WAIT, then leaves it (its thread is a daemon's: the exit does not wait either).
                await asyncio.wait({save.future}, timeout=ABANDON_WAIT)
                if not save.future.done():
                    raise snapshot.Abandoned
            count = await asyncio.shield(save.future)
        except snapshot.Abandoned:
            if self.snapshot_path is not None:
                snapshot.remove_own_temp(self.snapshot_path)  # the exit does not wait for the thread to remove it
            log.warning(
                "stop: snapshot save abandoned after %.2fs (out of time); the previous snapshot stays",
                time.monotonic() - save.started,
            )
            return False
        except OSError as exc:
            log.warning("cannot write snapshot %s: %s", self.snapshot_path, exc)
            return True
        finally:
            if save.future.done() and self._saving is save:
                self._saving = None
        self.snapshot_version = save.version
        took = time.monotonic() - save.started
        if deadline is not None:
            log.info("stop: snapshot of %d sessions written (the save took %.2fs)", count, took)
        else:
            log.debug("snapshot of %d files written to %s in %.2fs", count, self.snapshot_path, took)
        return True

    async def keep_snapshot(self, ready: asyncio.Event, interval: float) -> None:
        """Once the first scan is served, save the snapshot, then again every *interval* s if changed."""
        await ready.wait()  # never before: an empty or partial index is no snapshot
        try:
            await self.save_snapshot()
        finally:
            self.first_save_over.set()
        while True:
            await asyncio.sleep(interval)
            await self.save_snapshot()

    async def compact(self) -> int:
        """Fold the sessions held as objects back into the index's rows; how many were.

        The new rows are built on a daemon thread of their own (~1-2 s at 1M; neither a stop nor
        its snapshot save waits for it) while requests and writes go on; a file changed meanwhile
        stays an object."""
        job = self.index.compaction()
        if job is None:
            return 0
        # The new rows' lists are walked by no collection while made, then frozen as a scan's are.
        folded = 0
        with COLLECTOR.paused(freeze=True):
            try:
                await asyncio.wrap_future(COMPACTIONS.submit(job.build))
            finally:
                slices = self.index.compact(job)  # cancelled (a stop) before the build ended: abandoned
            for count in slices:  # ~10 ms each at 1M: the loop serves between them
                folded += count
                await asyncio.sleep(0)
        del job, slices
        heap.give_back()
        if folded:
            log.info("folded %d sessions held as objects back into the index's rows", folded)
        return folded

    async def keep_compact(self, ready: asyncio.Event, interval: float = COMPACT_CHECK_SECONDS) -> None:
        """Once the first scan is served, fold the sessions held as objects back into rows whenever
        they have become many (compacting_due), looked at every *interval* s."""
        await ready.wait()
        while True:
            await asyncio.sleep(interval)
            if compacting_due(self.index.held_as_objects, len(self.index)):
                await self.compact()

    async def reconcile(
        self,
        *,
        in_flight: Callable[[str], bool] | None = None,
        grace: float = 0.0,
        expect_changes: bool = False,
        recheck_invalid: bool = False,
    ) -> int:
        """Stat-walk the folder and re-read only the files whose stat differs from the index.

        Returns the drift: files that disagreed with the index and still did *grace*
        seconds after the walk, not counting names *in_flight* says the watcher has
        been told about meanwhile. With *expect_changes* (a new folder)
        differences are not drift. With *recheck_invalid*, every invalid file is read
        again whatever its stat (a limit raised, a permission granted).
        """
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        applied: set[str] = set()
        self._applied_during_walks.append(applied)
        try:
            stale = await loop.run_in_executor(None, _stale, self.folder, self.index.idents_reader())
            self.last_walk_seconds = time.monotonic() - started
            # A file awaiting a re-read after a failed parse keeps its old stat on purpose; its retry will settle it.
            stale = [(name, st) for name, st in stale if name not in self._retries]
            drift = 0
            if stale and not expect_changes:
                await asyncio.sleep(grace)  # a write just before the walk may still be inside the watch's debounce
                # A DELETE or an event applied while the walk ran may already have fixed a name.
                drift = sum(
                    1
                    for name, st in stale
                    if not (in_flight and in_flight(name))
                    and name not in applied
                    and self._recorded_stat(name) != st
                    and name_is_text(name)  # such names are never reported by the watch
                )
        finally:
            self._applied_during_walks.remove(applied)
        names = [name for name, _ in stale]
        if recheck_invalid:
            names.extend(name for name in list(self.index.invalid) if name not in set(names))
        if names:
            await self.refresh(names)
        self.reconciles += 1
        self.drift_files += drift
        if drift:
            log.warning("reconcile: %d file(s) had changed without an event reaching the index; re-read", drift)
        log.debug("reconcile: %d stale, %d drift, %.3fs", len(stale), drift, time.monotonic() - started)
        return drift

    def _recorded_stat(self, name: str) -> FileStat | None:
        state = self.index.file_state(name)
        return state.stat if state is not None else None

    # -- single files --------------------------------------------------------

    async def refresh(self, names: Iterable[str]) -> list[Change]:
        """Re-read each named file and record what is on disk now (the watcher's hints).

        Files too big to parse in the daemon are handed to a child process in the
        background, so the names after them do not wait.
        """
        loop = asyncio.get_running_loop()
        names = [n for n in names if is_session_name(n)]
        changes: list[Change] = []
        for i in range(0, len(names), APPLY_CHUNK):
            chunk = names[i : i + APPLY_CHUNK]
            async with self.lock:
                folder = self.folder
                if folder is None:
                    break  # gone or unusable: the watcher empties the index and resyncs
                try:
                    states = await loop.run_in_executor(None, _read_inline, folder, chunk, self.max_file_bytes)
                except FolderUnusable:
                    break  # replaced under us: the watcher sees it and resyncs
                for name, state in states:
                    if state is BIG:
                        self._parse_in_child(name)
                    else:
                        changes.extend(self._apply(name, state))  # type: ignore[arg-type]
                self.files_applied += len(states)
                for seen in self._applied_during_walks:
                    seen.update(chunk)
                self._files_applied([name for name, state in states if state is not BIG])
        self._publish(changes)
        return changes

    def _publish(self, changes: list[Change]) -> None:
        if changes:
            self._report_collisions()
            self._notify(changes)

    def _parse_in_child(self, name: str) -> None:
        if name in self._big:
            self._big_again.add(name)  # changed again while being parsed: parse once more after
            return
        task = asyncio.create_task(self._parse_big(name), name="sessiond-big-parse")
        self._big[name] = task
        task.add_done_callback(lambda _: self._big.pop(name, None))

    async def _parse_big(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._big_again.discard(name)
            folder = self.folder
            if folder is None:
                return
            try:
                state = await loop.run_in_executor(None, _read_big, folder, name, self.max_file_bytes)
            except FolderUnusable:
                return
            async with self.lock:
                # Applied only if the file is still what the child read: otherwise a newer
                # event (or the re-run below) has the truth.
                now = await loop.run_in_executor(None, _stat_in, folder, name)
                if name not in self._big_again and (state.stat if state is not None else None) == now:
                    changes = self._apply(name, state)
                    self.files_applied += 1
                    self._files_applied([name])
                else:
                    changes = []
                    self._big_again.add(name)
            self._publish(changes)
            if name not in self._big_again:
                return
            await self.refresh([name])  # small again, or still big: refresh decides
            if name not in self._big_again:
                return

    def _apply(self, name: str, state: FileState) -> list[Change]:
        if isinstance(state, InvalidFile) and self._should_retry(name, state):
            return []  # keep what we had until the writer has had time to finish
        self._retries.pop(name, None)
        if isinstance(state, InvalidFile):
            self._report_invalid(state)
        return self.index.set_file(name, state)

    def _should_retry(self, name: str, state: InvalidFile) -> bool:
        attempt = self._retries.get(name, 0)
        recent = time.time() - state.stat.mtime_ns / 1e9 < 2.0
        if attempt >= len(RETRY_DELAYS) or not recent or self.reread is None:
            return False
        self._retries[name] = attempt + 1
        asyncio.get_running_loop().call_later(RETRY_DELAYS[attempt], self.reread, name)
        return True

    async def find(self, key: str) -> SessionRecord | None:
        """The record for *key*; on a miss, the agent's file for it is looked at first.

        Read-your-writes: the agent may have saved the session a moment ago and the
        watch not have reported it yet. One stat of the file the agent's naming rule
        gives; a read only if that file is not what the index already knows.
        """
        record = self.index.get(key)
        folder = self.folder
        if record is not None or folder is None:
            return record
        name = file_name_for(key)
        if len(os.fsencode(name)) > removal.NAME_MAX:
            return None
        now = await asyncio.get_running_loop().run_in_executor(None, _stat_in, folder, name)
        if (record := self.index.get(key)) is not None:
            return record  # the watcher got there while we looked
        if now is None or now == self._recorded_stat(name):
            return None
        await self.refresh([name])
        return self.index.get(key)

    async def current(self, key: str) -> SessionRecord | None:
        """The record for *key* as its file is now: one stat, a re-read only when it differs.

        The watch reports a write some milliseconds after it; a detail, an export or a
        DELETE must not answer from before it. The served file's identity (size, mtime,
        inode, ctime) is compared with the index's; a file rewritten since is re-read
        first, a file gone is dropped at once. The stat runs on the loop: a few µs on a
        local disk, against an executor hop of ~50 µs. A miss is find()'s (read-your-writes).
        """
        record = self.index.get(key)
        folder = self.folder
        if record is None or folder is None:
            return await self.find(key)
        now = _ident_by_path(folder, record.name)
        if now is not None and (now == record.ident or record.name in self._retries):
            # Unchanged; or half-written by an in-place writer, whose scheduled re-reads settle it
            # (a request must not use up the writer's retries).
            return record
        await self.refresh([record.name])
        return self.index.get(key) or await self.find(key)

    async def delete(
        self,
        key: str,
        expected: SessionRecord | None = None,
        files: Sequence[SessionRecord] | None = None,
        actor: Actor = SESSIOND,
    ) -> SessionRecord:
        """Remove every file claiming *key* and drop it from the index before returning.

        Raises SessionNotFound when no file on disk still holds the session (see
        removal.py for what counts; the index then records what is there), and
        DeleteFailed when a file could not be removed (nothing else was changed).
        With *expected* (retention), the session must still be that very record,
        and only files unchanged since the index read them go; else SessionChanged.
        With *files* too, the files claiming *key* must still be exactly those records
        (a file that claimed it since was never judged, so the key stays whole).
        Each file's audit record (by *actor*) is written just before it moves; one that
        cannot be written refuses the delete (DeleteFailed) with nothing changed.
        """
        loop = asyncio.get_running_loop()
        changes: list[Change] = []
        removed = 0
        gone = "deleted" if isinstance(self.destination, removal.Unlink) else "to trash"
        audited = AuditedDestination(self.destination, self.audit, actor, key, gone)
        refusal = "changed or replaced meanwhile; not deleted"
        try:
            async with self.lock:
                record = self.index.get(key)
                folder = self.folder
                if record is None or folder is None:
                    raise SessionNotFound(key)
                if expected is not None and not expected.same_version(record):
                    raise SessionChanged(key)
                names = self.index.files_for(key)
                if files is not None and (
                    len(names) != len(files)
                    or any(not f.same_version(self.index.file_state(n)) for n, f in zip(names, files, strict=True))
                ):
                    raise SessionChanged(key)
                for name in names:
                    indexed = self.index.file_state(name)
                    outcome = await loop.run_in_executor(
                        None,
                        removal.remove_claimant,
                        folder,
                        name,
                        key,
                        indexed if isinstance(indexed, SessionRecord) else None,
                        self.max_file_bytes,
                        audited,
                        expected is not None,
                    )
                    if outcome.removed:
                        audited.done(name)
                    removed += outcome.removed
                    changes.extend(self.index.set_file(name, None if outcome.removed else outcome.now))
                    self._files_applied([name])
                    for seen in self._applied_during_walks:
                        seen.add(name)
        except FolderChanged:
            refusal = "the sessions folder changed meanwhile; try again"
            raise DeleteFailed(refusal) from None
        except FolderUnusable as exc:
            refusal = f"the sessions folder {exc}"
            raise DeleteFailed(refusal) from None
        except removal.RemovalFailed as exc:
            refusal = str(exc)
            raise DeleteFailed(refusal) from None
        except OSError as exc:
            log.warning("cannot delete session %r: %s", key, exc.strerror)
            refusal = f"{exc.strerror or 'the file system refused'}; nothing was changed"
            raise DeleteFailed(refusal) from None
        finally:
            self._publish(changes)
            if audited.pending:  # written before a file that did not go after all: say so
                await loop.run_in_executor(None, audited.refuse, refusal)
        if not removed:
            if expected is not None and key in self.index:
                raise SessionChanged(key)  # rewritten since it was judged: it stays
            raise SessionNotFound(key)  # someone else removed it first; the index has healed
        # How it went, for noticing a write-back: retention's own runs, or a client of the API.
        self.deletions.remember(record, time.time(), "retention" if actor is RETENTION else "api")
        return record

    # -- reporting -----------------------------------------------------------

    def _files_applied(self, names: list[str] | None) -> None:
        for listener in self.file_listeners:
            listener(names)

    def _notify(self, changes: list[Change]) -> None:
        changes = self._explained(changes)
        self.last_change = time.monotonic()
        for listener in self.listeners:
            listener(changes)

    def _explained(self, changes: list[Change]) -> list[Change]:
        """*changes*, each followed by what explains it: `compacted` (fewer messages than
        before: the agent consolidated, or cleared, the session) or `resurrected`."""
        out: list[Change] = []
        now = time.time()
        for change in changes:
            out.append(change)
            record, before = change.record, change.before
            if record is None:
                continue
            if change.kind == "updated" and before is not None and record.message_count < before.message_count:
                note = {"before": before.message_count, "after": record.message_count}
                out.append(Change("compacted", change.key, record, before, note))
            elif change.kind == "created" and (mark := self.deletions.check(record, now)) is not None:
                out.append(Change("resurrected", change.key, record, None, mark.show()))
                self._report_resurrection(change.key, mark)
        return out

    def _report_resurrection(self, key: str, mark: Resurrection) -> None:
        log.warning(
            "session %r came back after sessiond deleted it (%s, at %s): the agent wrote its cached copy again; "
            "restart the agent or start that chat anew (/new) to stop it",
            key,  # %r: a key may hold newlines and control characters
            mark.deletion.by,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mark.deletion.deleted_at)),
        )
        for listener in self.resurrection_listeners:
            listener(key, mark)

    def _report_invalid(self, bad: InvalidFile) -> None:
        marker = (bad.name, bad.reason)
        if marker not in self._reported_invalid:
            self._reported_invalid.add(marker)
            log.warning("ignoring %r: %s", bad.name, bad.reason)  # %r: a name may hold newlines
        # Pruned with the files it describes: a file fixed or gone is forgotten.
        if len(self._reported_invalid) > 2 * len(self.index.invalid) + 64:
            self._reported_invalid = {(n, b.reason) for n, b in self.index.invalid.items()} | {marker}

    def _report_collisions(self) -> None:
        if not self.index.collision_count and not self._reported_collisions:
            return
        current = {(key, *names) for key, names in self.index.collisions().items()}
        for key, *names in current - self._reported_collisions:
            log.warning("key %r is claimed by %d files; serving %r", key, len(names), names[0])
        self._reported_collisions = current  # what the disk holds now, nothing more


# -- blocking helpers (executor threads and worker processes) ---------------------------


def compacting_due(objects: int, sessions: int) -> bool:
    """True when *objects* held as objects among *sessions* are worth a compaction."""
    return objects >= COMPACT_AT and objects * 10 >= sessions


def _names_in(folder: Folder, others: list[str] | None) -> list[str]:
    with folder.open() as dir_fd, os.scandir(dir_fd) as entries:
        names = [entry.name for entry in entries]
    if others is None:
        return [name for name in names if is_session_name(name)]
    sessions: list[str] = []
    for name in names:
        (sessions if is_session_name(name) else others).append(name)
    return sessions


class _StatWalk:
    """A restart's stat walk: the snapshot's files stat-ed in the scan's worker processes, STAT_CHUNK
    at a time in its order, from the moment it is made; compare() takes the slices as they come."""

    def __init__(self, pool: concurrent.futures.Executor, folder: Folder, previous: snapshot.Columns) -> None:
        loop = asyncio.get_running_loop()
        self.previous = previous
        self.ranges = [(lo, min(lo + STAT_CHUNK, len(previous))) for lo in range(0, len(previous), STAT_CHUNK)]
        self.futures = [loop.run_in_executor(pool, _stat_columns, folder, previous.names[lo:hi]) for lo, hi in self.ranges]

    async def compare(self, new: list[str], kept: list[int]) -> tuple[list[str], int]:
        """Fill *kept* with the rows still true; return the names to read (changed, racy, or *new*)
        and how many files there are."""
        loop = asyncio.get_running_loop()
        names: list[str] = []
        for (lo, hi), future in zip(self.ranges, self.futures, strict=True):
            stats = await future
            names.extend(await loop.run_in_executor(None, self.previous.compare, lo, hi, stats, kept))
        # A file put back by the crash tidy-up (in *new*) may be one the snapshot holds, changed: read once.
        names = list(dict.fromkeys([*names, *new]))
        return names, len(kept) + len(names)

    def drop(self) -> None:
        """Cancel the slices not taken yet; the ones that end anyway are looked at (never "never retrieved")."""
        for future in self.futures:
            future.cancel()
            future.add_done_callback(_retrieved)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # looked at: asyncio does not log it as "never retrieved"


def _scan_pool() -> concurrent.futures.ProcessPoolExecutor:
    """Worker processes for a big scan (one per core); they end with the daemon."""
    # forkserver, not fork: forking a process that runs threads (the watcher's,
    # the executor's) can copy a held lock into the child.
    context = multiprocessing.get_context("forkserver")
    # Imported once in the fork server, not once per worker.
    context.set_forkserver_preload(["sessiond.live.store"])
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=os.cpu_count() or 2, mp_context=context, initializer=workers.in_a_worker, initargs=(os.getpid(),)
    )


def _idents_of(folder: Folder, names: list[str]) -> dict[str, int]:
    """Name -> index.pack of the stat of each of *names* still there."""
    idents: dict[str, int] = {}
    with folder.open() as dir_fd:
        for name in names:
            try:
                idents[name] = pack_stat(os.lstat(name, dir_fd=dir_fd))
            except OSError:
                continue
    return idents


def _stat_columns(folder: Folder, names: list[str]) -> snapshot.Stats:
    # In a worker process: the stats of a chunk of the snapshot's files, as columns.
    with folder.open() as dir_fd:
        return snapshot.stat_columns(dir_fd, names)


def _new_names(folder: Folder, snapshot_path: Path, others: list[str] | None) -> tuple[str, list[str], list[str]] | None:
    # In a worker process: the checksum of the snapshot read, the session files it does not hold, and
    # (when *others* is a list) every other name; None when the snapshot cannot be read here (the daemon
    # lists the folder itself).
    read = snapshot.names_of(snapshot_path)
    if read is None:
        return None
    checksum, held = read
    more: list[str] = []
    names = _names_in(folder, more if others is not None else None)
    return checksum, [name for name in names if name not in held], more


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _stale(folder: Folder | None, read: Callable[[], dict[str, int]]) -> list[tuple[str, FileStat | None]]:
    known = read()  # here, off the loop: a million identities made from the index's rows
    if folder is None:
        return loader.stale_names(None, known)
    try:
        with folder.open() as dir_fd:
            return loader.stale_names(dir_fd, known)
    except FolderUnusable:
        return []  # replaced or gone: the watcher resyncs against the new folder


def _save(path: Path, folder: str, read: Callable[[], Table], go_on: Callable[[], bool]) -> int:
    try:
        with COLLECTOR.paused():  # lists of a million rows, made and gone: nothing for the collector to walk
            return snapshot.save(path, folder, read(), go_on)
    finally:
        heap.give_back()  # what the save freed (~120 MB at 1M) goes back to the system


def _ident_by_path(folder: Folder, name: str) -> int | None:
    """The identity (pack) of the file *name* by its path: one lstat, where _stat_in makes four
    system calls (open the folder, check it, lstat, close), a third of a detail request's own work.

    For comparing with the identity the index recorded, and nothing else: through a folder
    swapped for another (or for a symlink) the file found is another file, whose identity
    (size, mtime, inode, ctime) is not the recorded one, so the caller re-reads through the
    verified folder, as for any change. Only the stat's figures are used; nothing is read.
    """
    try:
        return pack_stat(os.lstat(f"{folder.path}/{name}"))
    except (OSError, ValueError):  # ValueError: a NUL, which no listed name holds
        return None


def _stat_in(folder: Folder, name: str) -> FileStat | None:
    with contextlib.suppress(OSError, FolderUnusable), folder.open() as dir_fd:
        return loader.stat_of(os.lstat(name, dir_fd=dir_fd))
    return None


def _read_inline(folder: Folder, names: list[str], max_bytes: int) -> list[tuple[str, FileState | _Big]]:
    out: list[tuple[str, FileState | _Big]] = []
    with folder.open() as dir_fd:
        for name in names:
            try:
                out.append((name, loader.read_state(dir_fd, name, max_bytes)))
            except loader.NeedsChild:
                out.append((name, BIG))
    return out


def _read_big(folder: Folder, name: str, max_bytes: int) -> FileState:
    with folder.open() as dir_fd:
        return loader.read_fully(folder, dir_fd, name, max_bytes)


def _read_sheet(folder: Folder, names: list[str], max_bytes: int) -> Sheet:
    # Runs in a worker process for big scans: columns pickle several times faster than
    # record objects, and the daemon makes none. A file gone since the listing is left out.
    with folder.open() as dir_fd:
        return Sheet([(name, loader.read_fully(folder, dir_fd, name, max_bytes)) for name in names])

"""SessionStore: the index plus the I/O around it (scan, re-read, delete)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Container, Iterable
from pathlib import Path

from . import loader, snapshot
from .index import Change, FileStat, FileState, InvalidFile, SessionIndex, SessionRecord

log = logging.getLogger(__name__)

# Small folders are read in a thread; big ones are spread over worker processes
# because parsing is CPU-bound and a thread pool would share one core under the GIL.
PROCESS_POOL_THRESHOLD = 20_000
SCAN_CHUNK = 2_000
APPLY_CHUNK = 256
# A file that fails to parse right after it changed may be half-written by a
# writer that does not rename; look again after these delays before calling it invalid.
RETRY_DELAYS = (0.05, 0.2, 0.5)


class SessionNotFound(LookupError):
    """No session is indexed under that key."""


ChangeListener = Callable[[list[Change]], None]
# Removes one session file (folder, name); True if it was there. Blocking: runs in an executor.
FileRemover = Callable[[str, str], bool]


class SessionStore:
    """Owns the index for one sessions folder; every change to it goes through here."""

    def __init__(
        self,
        folder: os.PathLike[str] | str,
        max_file_bytes: int,
        remove_file: FileRemover | None = None,
        snapshot_path: Path | None = None,
    ) -> None:
        self.folder = os.fspath(folder)
        self.snapshot_path = snapshot_path
        self.snapshot_version = -1
        self._snapshot_lock = asyncio.Lock()
        self.last_scan_counts = (0, 0)  # (files read, files kept from the snapshot)
        self.max_file_bytes = max_file_bytes
        self.remove_file: FileRemover = remove_file or unlink_if_present
        self.index = SessionIndex()
        # Serialises "read a file, then update the index" against DELETE, so a
        # read that started before an unlink cannot put the session back.
        self.lock = asyncio.Lock()
        self.listeners: list[ChangeListener] = []
        self._retries: dict[str, int] = {}
        self._reported_invalid: set[tuple[str, str]] = set()
        self._reported_collisions: set[tuple[str, ...]] = set()
        self.last_change = time.monotonic()
        self.retry_hook: Callable[[str, float], None] | None = None
        self.files_applied = 0
        self.scans = 0
        self.reconciles = 0
        # One set per running reconcile: names re-read meanwhile came through an event, not lost.
        self._applied_during_walks: list[set[str]] = []
        self.drift_files = 0  # files a reconcile found out of date that no event had reported

    # -- whole-folder --------------------------------------------------------

    async def scan(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Read every session file off the event loop and replace the index with the result.

        With a snapshot, only files whose stat differs from it are read.
        """
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        previous = None
        if self.snapshot_path is not None:
            previous = await loop.run_in_executor(None, snapshot.load, self.snapshot_path, self.folder)
        kept: list[tuple[str, FileState]] = []
        if previous is None:
            names = await loop.run_in_executor(None, _names_in, self.folder)  # no stat: reads fstat anyway
            total = len(names)
        else:
            taken_at, states = previous
            listing = await loop.run_in_executor(None, _listing, self.folder)
            names = []
            for name, st in listing:
                state = states.get(name)
                if state is not None and snapshot.still_valid(state, st, taken_at):
                    kept.append((name, state))
                else:
                    names.append(name)
            total = len(listing)
            del states, listing
        results = kept + await self._read_all(names, total, progress)
        self.last_scan_counts = (len(names), len(kept))
        changes = self.index.load(results)
        self.scans += 1
        self._retries.clear()
        for name, state in results:
            if isinstance(state, InvalidFile):
                self._report_invalid(state)
        self._report_collisions()
        self.last_change = time.monotonic()
        log.info(
            "indexed %d sessions from %d files in %.2fs (%d read, %d unchanged since the snapshot, %d invalid)",
            len(self.index), total, time.monotonic() - started, len(names), len(kept), len(self.index.invalid),
        )
        if changes:
            self._notify(changes)

    async def _read_all(
        self, names: list[str], total: int, progress: Callable[[int, int], None] | None
    ) -> list[tuple[str, FileState]]:
        loop = asyncio.get_running_loop()
        chunks = [names[i : i + SCAN_CHUNK] for i in range(0, len(names), SCAN_CHUNK)]
        results: list[tuple[str, FileState]] = []
        done = total - len(names)
        pool: concurrent.futures.Executor | None = None
        if len(names) >= PROCESS_POOL_THRESHOLD:
            # forkserver, not fork: forking a process that runs threads (the watcher's,
            # the executor's) can copy a held lock into the child.
            pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=os.cpu_count() or 2, mp_context=multiprocessing.get_context("forkserver")
            )
        try:
            futures = [loop.run_in_executor(pool, _read_flat, self.folder, chunk, self.max_file_bytes) for chunk in chunks]
            for future in asyncio.as_completed(futures):
                flats = await future
                results.extend(snapshot.unflatten(flat) for flat in flats)
                done += len(flats)
                if progress:
                    progress(done, total)
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        return results

    async def save_snapshot(self) -> None:
        """Write the index to the snapshot file (off the loop) unless it is current.

        One save at a time; failures are logged, not raised.
        """
        if self.snapshot_path is None:
            return
        async with self._snapshot_lock:
            version = self.index.version
            if version == self.snapshot_version:
                return
            states = self.index.file_states()  # a cheap copy on the loop; encoding happens in a thread
            loop = asyncio.get_running_loop()
            try:
                count = await loop.run_in_executor(None, snapshot.save, self.snapshot_path, self.folder, states)
            except OSError as exc:
                log.warning("cannot write snapshot %s: %s", self.snapshot_path, exc)
                return
            self.snapshot_version = version
            log.debug("snapshot of %d files written to %s", count, self.snapshot_path)

    async def keep_snapshot(self, ready: asyncio.Event, interval: float) -> None:
        """Once the first scan is served, save the snapshot, then again every *interval* s if changed."""
        await ready.wait()  # never before: an empty or partial index is no snapshot
        while True:
            await self.save_snapshot()
            await asyncio.sleep(interval)

    async def reconcile(
        self, *, in_flight: Container[str] = (), grace: float = 0.0, expect_changes: bool = False
    ) -> int:
        """Stat-walk the folder and re-read only the files whose stat differs from the index.

        Returns the drift: files that disagreed with the index and still did *grace*
        seconds after the walk, not counting names in *in_flight* (a live set the
        watcher fills meanwhile). With *expect_changes* (a new folder) differences are
        not drift.
        """
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        applied: set[str] = set()
        self._applied_during_walks.append(applied)
        try:
            stale = await loop.run_in_executor(None, loader.stale_names, self.folder, self.index.file_stats())
            # A file awaiting a re-read after a failed parse keeps its old stat on purpose; its retry will settle it.
            stale = [(name, st) for name, st in stale if name not in self._retries]
            drift = 0
            if stale and not expect_changes:
                await asyncio.sleep(grace)  # a write just before the walk may still be inside the watch's debounce
                # A DELETE or an event applied while the walk ran may already have fixed a name.
                drift = sum(
                    1
                    for name, st in stale
                    if name not in in_flight and name not in applied and self._recorded_stat(name) != st
                )
        finally:
            self._applied_during_walks.remove(applied)
        if stale:
            await self.refresh([name for name, _ in stale])
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
        """Re-read each named file and record what is on disk now (the watcher's hints)."""
        loop = asyncio.get_running_loop()
        names = [n for n in names if loader.is_session_name(n)]
        changes: list[Change] = []
        for i in range(0, len(names), APPLY_CHUNK):
            chunk = names[i : i + APPLY_CHUNK]
            async with self.lock:
                states = await loop.run_in_executor(None, loader.scan_names, self.folder, chunk, self.max_file_bytes)
                for name, state in states:
                    changes.extend(self._apply(name, state))
                self.files_applied += len(states)
                for seen in self._applied_during_walks:
                    seen.update(chunk)
        if changes:
            self._report_collisions()
            self._notify(changes)
        return changes

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
        if attempt >= len(RETRY_DELAYS) or not recent or self.retry_hook is None:
            return False
        self._retries[name] = attempt + 1
        self.retry_hook(name, RETRY_DELAYS[attempt])
        return True

    async def delete(self, key: str) -> SessionRecord:
        """Remove every file claiming *key* and drop it from the index before returning.

        Raises SessionNotFound when no file on disk still holds the session (see
        _remove_claimant for what counts); the index then records what is there.
        """
        async with self.lock:
            record = self.index.get(key)
            if record is None:
                raise SessionNotFound(key)
            loop = asyncio.get_running_loop()
            changes: list[Change] = []
            removed = 0
            for name in self.index.files_for(key):
                indexed = self._recorded_stat(name)
                gone, now = await loop.run_in_executor(None, self._remove_claimant, name, key, indexed)
                removed += gone
                changes.extend(self.index.set_file(name, None if gone else now))
        self._notify(changes)
        if not removed:
            raise SessionNotFound(key)  # someone else removed it first; the index has healed
        return record

    def _remove_claimant(self, name: str, key: str, indexed: FileStat | None) -> tuple[bool, FileState]:
        """Remove file *name* if it still holds session *key*; blocking.

        The same inode is the indexed file (perhaps mid-way through an in-place
        rewrite): removed. A new inode is an atomic rewrite that landed after
        indexing: removed only if it still claims *key*, else left alone and
        returned so the index can record it. Returns (removed, state now).
        """
        try:
            inode = os.lstat(os.path.join(self.folder, name)).st_ino
        except FileNotFoundError:
            return False, None
        if indexed is None or inode != indexed.inode:
            now = loader.read_state(self.folder, name, self.max_file_bytes)
            if not (isinstance(now, SessionRecord) and now.key == key):
                return False, now
        return self.remove_file(self.folder, name), None

    # -- reporting -----------------------------------------------------------

    def _notify(self, changes: list[Change]) -> None:
        self.last_change = time.monotonic()
        for listener in self.listeners:
            listener(changes)

    def _report_invalid(self, bad: InvalidFile) -> None:
        marker = (bad.name, bad.reason)
        if marker not in self._reported_invalid:
            self._reported_invalid.add(marker)
            log.warning("ignoring %r: %s", bad.name, bad.reason)  # %r: a name may hold newlines
        if len(self._reported_invalid) > 10_000:
            self._reported_invalid = {(n, b.reason) for n, b in self.index.invalid.items()}

    def _report_collisions(self) -> None:
        for key, names in self.index.collisions().items():
            marker = (key, *names)
            if marker not in self._reported_collisions:
                self._reported_collisions.add(marker)
                log.warning("key %r is claimed by %d files; serving %r", key, len(names), names[0])


def _names_in(folder: str) -> list[str]:
    with os.scandir(folder) as entries:
        return [entry.name for entry in entries if loader.is_session_name(entry.name)]


def _listing(folder: str) -> list[tuple[str, FileStat]]:
    return list(loader.list_session_files(folder))


def _read_flat(folder: str, names: list[str], max_bytes: int) -> list[snapshot.Flat]:
    # Runs in a worker process for big scans: plain tuples pickle several times faster
    # than record objects. A file gone since the listing is simply left out.
    flats = []
    for name in names:
        flat = snapshot.flatten(name, loader.read_state(folder, name, max_bytes))
        if flat is not None:
            flats.append(flat)
    return flats


def unlink_if_present(folder: str, name: str) -> bool:
    """Unlink a session file; False if it was already gone."""
    # Names come from the index, which only holds top-level `*.json` names found in
    # this folder, so this never reaches outside it.
    if not loader.is_session_name(name):
        raise ValueError(f"refusing to delete {name!r}")
    try:
        os.unlink(os.path.join(folder, name))
    except FileNotFoundError:
        return False
    return True

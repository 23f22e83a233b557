"""SearchKeeper: the full-text index kept in step with the in-memory index, and the searches over it.

As true as the index:

- The store tells the keeper which files it applied (`SessionStore.file_listeners`:
  watch batches, reconciles, DELETE, batchDelete, retention, restores, re-reads of big
  files) or that everything may have changed (a scan). The keeper queues those names;
  one writer thread owns the SQLite connection and writes each batch in one
  transaction, reading a file only if it is still the file the index describes.
- A full pass (at start, after the metadata index is whole, and after every scan)
  compares the identities the search index holds with the in-memory index and
  indexes only what differs, the newest hour first; what is gone is removed.
- A batch with many files to read (the full pass) is read, parsed and, when the
  index is a file, written in a worker process (`_ParseWorker`, at nice 10, with its
  own connection to the file): that Python work and every SQLite statement's return
  would otherwise take the GIL the event loop needs. The writer thread only waits
  for the worker's commit; batches are written in the order taken, so a watch batch
  is written here only after the worker's batch before it has committed. (With the
  index in memory the worker parses and the writer thread writes.) The worker
  checks each file's identity as the writer thread would; a worker that dies or
  hangs is replaced (and after WORKER_FAILURES, not started again) and its batch
  done here, with a WARNING (killed before its COMMIT, its transaction is rolled
  back by SQLite). A few files (a watch batch) are parsed on the writer thread: no
  round trip.
- A search's candidates come from SQLite, but every one is checked against the
  in-memory index (key, file name, identity) and its hits and snippets are built from
  the file as it is now, read only if it still has that identity: a deleted or
  rewritten session's old text is never returned, whatever the search index still
  holds. A stale row found so is queued for the writer.

The event loop never waits on SQLite: writes run on the writer thread (or in the
worker), reads on a reader thread with a connection of its own (WAL mode: it sees
the worker's commits; one connection on one thread when the index is in memory,
without a state directory).
"""

from __future__ import annotations

import array
import asyncio
import base64
import bisect
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import multiprocessing
import operator
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from sessiond.core import heap, search_files, search_text, workers
from sessiond.core.folder import Folder, FolderUnusable
from sessiond.core.index import FileVersions, SessionRecord
from sessiond.core.query import Filter, QueryError
from sessiond.core.search_db import Candidate, Ident, SearchDB
from sessiond.core.search_files import Batch, read_parts
from sessiond.core.search_pack import Dictionary
from sessiond.core.search_query import Plan, Query, match, plan
from sessiond.live.store import SessionStore
from sessiond.live.threads import COLLECTOR, PLANS, prestarted

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH = 256  # files per write transaction
WINDOW = 2000  # matches ranked together (the newest first); later pages rank the next ones
HITS_PER_RESULT = 3
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TITLES_KEPT = 4096  # titles kept in memory for the list (about 1 MB)
WORKER_MIN = 32  # files to read from which a batch is parsed in the worker process (fewer: here, no round trip)
# The worker's niceness: the build takes the CPU the daemon's requests leave (on two cores it
# would otherwise take a whole one from them), yet still about a tenth when they want it all,
# so it never starves into looking hung.
WORKER_NICE = 10
FIRST_WAIT = 30.0  # seconds after ready the search waits at most for the work ready starts (forever)
WORKER_FAILURES = 3  # worker deaths (or hangs) after which batches are parsed here only
WORKER_SECONDS = 30.0  # a batch's time in the worker before it counts as hung, plus a second per WORKER_BYTES_PER_S
WORKER_BYTES_PER_S = 4 << 20
# The full pass yields to requests. Even at nice 10 in a process of its own, the build costs
# the daemon a third of its list and detail answers on two cores (the worker's reads, the
# commits' round trips, the caches it evicts); while the event loop's thread has been busy
# more than BUSY_SHARE of the time since the last batch (its CPU time: requests, whatever
# their rate or cost), it waits BUSY_PAUSE before the next batch (a batch takes ~50-100 ms: a
# twentieth of the time or less; half a second left list and detail 14 % / 10 % slower at 100k,
# a second 9 % / 3 %; at 1M a second left them 18 % / 15 % slower, two seconds 10 % / 8 %, the
# median of three pairs of daemons in bench.search), so it still ends under any load (~125 files a second),
# and runs at full pace as soon as the loop is idle again. Without requests the loop spends
# under 5 % of the build's time. A live write's batch never waits.
BUSY_SHARE = 0.25
BUSY_PAUSE = 2.0


def _ident(record: SessionRecord) -> Ident:
    return Ident(*record.stat)


class SearchKeeper:
    """Owns the search index of one store."""

    def __init__(self, store: SessionStore, path: Path | None, cache_kib: int = 16 * 1024) -> None:
        self.store = store
        self._looked = (0.0, 0.0)  # (the loop thread's CPU time, monotonic time) at the full pass's last look
        self.paused = 0.0  # seconds the full pass waited for requests to slow down
        self.path = path
        self.cache_kib = cache_kib
        self._writer_db = SearchDB(path, cache_kib)
        self._reader_db = SearchDB(path, cache_kib) if path is not None else self._writer_db
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sessiond-search-write")
        self._reader = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sessiond-search-read")
            if path is not None
            else self._writer
        )
        self._pending: dict[str, float] = {}  # name -> when it was first queued (monotonic)
        self._todo = Todo()  # the full pass's files, newest last
        # The full pass's files not written yet (no title as they are now): the plan's name list and
        # a mark each, made while the collector is paused and frozen after (threads.py), so no
        # collection walks a million names (46 ms each for a set, holding the GIL and the loop).
        self._unwritten = Unwritten()
        self._full = True
        self._planning = False  # a full pass is comparing identities: what is left to do is not known yet
        self._busy = 0  # files in the batches taken and not yet written
        self._held: _Taken | None = None  # a batch the worker is parsing, written after the one before
        self._worker = _ParseWorker()
        self._wake = asyncio.Event()
        self.opened = False
        self.built = False  # the first full pass has ended
        self.rows = 0
        self.bytes = 0
        self.files_read = 0  # files read to index them (a restart reads only the changed ones)
        self.files_read_in_worker = 0  # of those, read and parsed by the worker process
        self.batches_written_in_worker = 0  # batches the worker process wrote into the index file itself
        self.lag = 0.0  # seconds from a file's change reaching the index to its text being searchable
        self.query_seconds = 0.0
        self.query_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.rebuilt_because: str | None = None
        self._titles: OrderedDict[str, tuple[int, str | None]] = OrderedDict()  # name -> (record.ident, title or None)
        self._batches_written = 0
        self._tickets = 0  # the worker's batches, numbered
        # The dictionary new rows are compressed with (search_pack): the file's, once it has one. Writer thread only.
        self._dictionary: Dictionary | None = None

    # -- what changed ------------------------------------------------------------------

    def on_files(self, names: Sequence[str] | None) -> None:
        """The store applied these files (None: a scan; anything may have changed)."""
        if names is None:
            self._full = True
        else:
            now = time.monotonic()
            for name in names:
                self._pending.setdefault(name, now)
        self._wake.set()

    @property
    def complete(self) -> bool:
        """Whether the index holds every file the in-memory index does, as it is now."""
        return self.built and not self._full and not self._planning and not self._pending and not self._todo and not self._busy

    def progress(self) -> tuple[int, int]:
        """(sessions indexed, sessions in the index) for the answers and the page."""
        total = len(self.store.index)
        if not self.opened:
            return 0, total
        if self._planning:
            return min(self.rows, total), total  # the rows held: the best guess until the plan says
        waiting = len(self._todo) + len(self._pending) + self._busy if not self.complete else 0
        return max(0, total - waiting), total

    # -- the writer ----------------------------------------------------------------------

    async def _w(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def _r(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    def start_threads(self) -> None:
        """Start the writer's, the reader's and the plan's threads now, before the daemon is busy, not by the first submit on the loop (live/threads.py)."""
        PLANS.start()
        prestarted(self._writer, 1)
        if self._reader is not self._writer:
            prestarted(self._reader, 1)

    async def forever(self, ready: asyncio.Event, first: Sequence[asyncio.Event] = (), wait_at_most: float = FIRST_WAIT) -> None:
        """Open (or rebuild) the index once the metadata index is whole, then keep it in step.

        After *ready*, the work the first ready starts goes first (*first*: the snapshot's
        first save, the overview's first pass; each sets its event when over), for at most
        *wait_at_most* seconds: at 1M those take the first seconds after ready, and the
        search's plan and build stacked on them made the loop's longest stalls and the
        slowest answers of a start. The build takes minutes there; seconds later changes nothing.
        """
        await ready.wait()  # never before: listing and detail must not wait for search
        if first:
            waits = [asyncio.ensure_future(event.wait()) for event in first]
            try:
                await asyncio.wait(waits, timeout=wait_at_most)
            finally:
                for waiting in waits:
                    waiting.cancel()
        await self._w(self._writer_db.open)
        self.rebuilt_because = self._writer_db.rebuilt_because
        if self._reader_db is not self._writer_db:
            await self._r(self._reader_db.open_reader)
        self.rows = await self._w(self._writer_db.count)
        self.opened = True
        while True:
            if self._full:
                await self._settle()  # the plan compares with what is written
                self._full = False
                self._planning = True
                try:
                    await self._plan()
                finally:
                    self._planning = False
            if self._todo and not self._pending:
                await self._make_way()
            batch = self._next_batch()
            if batch:
                await self._write(batch)
                continue
            if self._held is not None:
                await self._settle()
                continue
            if not self._full and not self._pending:
                if not self.built:
                    log.info(
                        "search index complete: %d sessions (%d files read, %d of them in the worker process;"
                        " %d batches written by it)",
                        self.rows,
                        self.files_read,
                        self.files_read_in_worker,
                        self.batches_written_in_worker,
                    )
                self.built = True
                self.bytes = await self._w(self._writer_db.size_bytes)
                await self._w(self._worker.stop)  # idle: its memory goes back; a later full pass starts another
                self._wake.clear()
                if not self._full and not self._pending:
                    await self._wake.wait()

    async def close(self) -> None:
        """End the worker process at once (a batch it holds is indexed at the next start), close both connections, end the threads."""
        self._worker.close(wait=False)
        if self._reader is not self._writer:
            await self._r(self._reader_db.close)
            self._reader.shutdown(wait=True)
        await self._w(self._writer_db.close)
        await self._w(self._worker.close, True)  # also one the writer thread may have started meanwhile
        self._writer.shutdown(wait=True)

    async def _plan(self) -> None:
        # A million records, identities and names, made and compared; the queue then frozen (threads.py).
        with COLLECTOR.paused(freeze=True):
            read = self.store.index.versions_reader()  # names and times as columns: no record made
            # The queue and the set are built off the loop too: a million names each at a first build.
            # On a daemon thread: at 1M the plan takes a second, and a stop must not wait for it
            # (the loop's executor is joined when the daemon exits). The index's pages are read
            # on the writer's thread, one at a time.
            self._todo, self._unwritten = await asyncio.wrap_future(PLANS.submit(_plan_of, read, self._indexed))
        log.debug("search: %d files to index or remove", len(self._todo))

    def _indexed(self) -> Iterator[list[tuple[str, int]]]:
        """Every indexed file's (name, identity), page by page (from another thread than the writer's)."""
        after = 0
        while True:
            after, page = self._writer.submit(self._writer_db.idents_page, after, PLAN_SLICE).result()
            if not page:
                return
            yield page

    async def _make_way(self) -> None:
        """Before a full-pass batch (on the loop's thread): wait BUSY_PAUSE if the loop was busy more than BUSY_SHARE since the last look."""
        used, now = time.thread_time(), time.monotonic()
        used_before, then = self._looked
        self._looked = (used, now)
        if then and used - used_before > BUSY_SHARE * (now - then):
            await asyncio.sleep(BUSY_PAUSE)
            self.paused += time.monotonic() - now

    def _next_batch(self) -> list[tuple[str, float | None]]:
        batch: list[tuple[str, float | None]] = []
        pending = self._pending
        while pending and len(batch) < BATCH:
            name = next(iter(pending))
            batch.append((name, pending.pop(name)))
        # A live write goes first; the full pass fills the rest of the batch.
        while self._todo and len(batch) < BATCH:
            batch.append((self._todo.pop(), None))
        return batch

    async def _write(self, batch: list[tuple[str, float | None]]) -> None:
        self._busy += len(batch)
        await self._write_now(batch)

    async def _write_now(self, batch: list[tuple[str, float | None]]) -> None:
        """Take *batch* (a big one goes to the worker), write the batch the worker holds, then this one unless the worker has it."""
        queued = [when for _, when in batch if when is not None]
        index = self.store.index
        jobs: list[tuple[str, str | None, Ident | None]] = []
        for name, _ in batch:
            state = index.file_state(name)
            if isinstance(state, SessionRecord):
                jobs.append((name, state.key, _ident(state)))
            else:
                jobs.append((name, None, None))
        taken = await self._w(self._take, self.store.folder, jobs, self.store.max_file_bytes, len(batch), queued)
        await self._settle()  # batches are written in the order they were taken
        if taken.parsing is None:
            await self._finish(taken)
        else:
            self._held = taken  # written once the next batch is taken: the worker parses one while SQLite writes the other

    async def _settle(self) -> None:
        """Write the batch the worker holds, if any."""
        if self._held is not None:
            taken, self._held = self._held, None
            await self._finish(taken)

    async def _finish(self, taken: _Taken) -> None:
        try:
            delta, read = await self._w(self._apply, taken)
        finally:
            self._busy -= taken.size
            self._batches_written += 1
            for name, _, _ in taken.reads:
                self._titles.pop(name, None)  # a title remembered as missing may be there now
                self._unwritten.discard(name)
            for name in taken.removals:
                self._unwritten.discard(name)
        self.rows += delta
        self.files_read += read
        if taken.queued:
            self.lag = time.monotonic() - min(taken.queued)

    def _take(
        self,
        folder: Folder | None,
        jobs: list[tuple[str, str | None, Ident | None]],
        max_bytes: int,
        size: int,
        queued: list[float],
    ) -> _Taken:
        # On the writer thread: what to remove, what to read (handed to the worker when there are many).
        if self._dictionary is None:
            self._dictionary = self._writer_db.dictionary()  # one the worker made and committed, or one from before a restart
        known = self._writer_db.idents_of([name for name, key, _ in jobs if key is not None])
        removals: list[str] = []
        reads: list[tuple[str, str, Ident]] = []
        for name, key, ident in jobs:
            if key is None or ident is None:
                removals.append(name)
            elif known.get(name) != ident:
                reads.append((name, key, ident))
        taken = _Taken(size, queued, folder, max_bytes, removals, reads)
        if folder is not None and len(reads) >= WORKER_MIN:
            seconds = WORKER_SECONDS + sum(ident.size for _, _, ident in reads) / WORKER_BYTES_PER_S
            held = self._held.parsing if self._held is not None else None
            if self.path is not None and held is not None and not self._worker.holds(held):
                # The batch before this one is written here again (its worker failed): a new worker would write
                # this one at once, before it. Done here too, in the order taken.
                return taken
            if self.path is not None:
                # The worker writes the batch too, with its own connection: this thread only waits for its commit.
                self._tickets += 1
                args: tuple[Any, ...] = (
                    self.path,
                    self.cache_kib,
                    folder,
                    removals,
                    reads,
                    max_bytes,
                    self._tickets,
                    self._dictionary,
                )
                taken.parsing = self._worker.submit(search_files.index_batch, args, seconds, ticket=self._tickets)
            else:
                wanted = [(name, ident) for name, _, ident in reads]
                args = (folder, wanted, max_bytes, self._dictionary)
                taken.parsing = self._worker.submit(search_files.prepare_batch, args, seconds)
        return taken

    def _apply(self, taken: _Taken) -> tuple[int, int]:
        # On the writer thread: the batch's files as read (by the worker, or here), written in one transaction
        # (by the worker when it has the batch and the index is a file: then this thread only waits for its commit).
        batch: Batch | None = Batch([], None)
        redone = False
        read = len(taken.reads) if taken.folder is not None else 0
        if taken.reads and taken.folder is not None:
            batch = None
            wanted = [(name, ident) for name, _, ident in taken.reads]
            if taken.parsing is not None:
                try:
                    answer = self._worker.result(taken.parsing)
                    if taken.parsing.writes:
                        answer = self._worker.committed(taken.parsing)  # written while it prepared the next
                except _WorkerFailed:
                    redone = taken.parsing.writes  # logged; parsed (and written) here
                    taken.parsing = None
                else:
                    self.files_read_in_worker += len(wanted)
                    if taken.parsing.writes:
                        self.batches_written_in_worker += 1
                        return (answer or 0), read  # None: the folder is gone (as below); nothing was written
                    batch = answer
            if taken.parsing is None:
                batch = search_files.prepare_batch(taken.folder, wanted, taken.max_bytes, self._dictionary)
        if batch is None:
            return 0, read  # the folder was replaced or is gone: the watcher rescans, and the scan asks for a full pass
        prepared = batch.prepared or [None] * len(taken.reads)
        upserts, removals = search_files.docs_of(taken.reads, prepared, taken.removals)
        delta = self._writer_db.apply(upserts, removals, batch.dictionary)
        if redone:
            # The worker may have died after its COMMIT, before its answer: count what the file holds.
            delta = self._writer_db.count() - self.rows
        return delta, read

    # -- searching -------------------------------------------------------------------------

    async def search(self, query: Query, flt: Filter, role: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        """One page of results (the API's answer without `query`)."""
        started = time.monotonic()
        try:
            return await self._search(query, flt, role, limit, cursor)
        finally:
            self._observe(time.monotonic() - started)

    async def _search(self, query: Query, flt: Filter, role: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        fingerprint = _fingerprint(query, flt, role)
        below, skip = _decode_cursor(cursor, fingerprint) if cursor else (None, 0)
        indexed, total = self.progress()
        answer: dict[str, Any] = {
            "complete": self.complete,
            "indexed": indexed,
            "total": total,
            "results": [],
            "next_cursor": None,
        }
        if not self.opened:
            return answer
        chosen, next_below = await self._window(plan(query), flt, below)
        chosen.sort(key=lambda pair: (pair[0].score, -pair[1].updated_at, pair[1].key))
        page = chosen[skip : skip + limit]
        if skip + limit < len(chosen):
            answer["next_cursor"] = _encode_cursor(fingerprint, below, skip + limit)
        elif next_below is not None:
            answer["next_cursor"] = _encode_cursor(fingerprint, next_below, 0)
        folder = self.store.folder
        if not page or folder is None:
            return answer
        loop = asyncio.get_running_loop()
        built = await loop.run_in_executor(
            None, _read_hits, folder, [(c.name, c.ident) for c, _ in page], query, role, self.store.max_file_bytes
        )
        index = self.store.index
        for (candidate, record), found in zip(page, built, strict=True):
            if found is None:
                self._stale(candidate.name)  # changed or gone since the index read it, or no longer matches
                continue
            title, hits = found
            if not record.same_version(index.get(record.key)):
                continue  # deleted or rewritten while its file was read: not even for a moment
            answer["results"].append(
                {
                    "key": record.key,
                    "updated_at": record.updated_at,
                    "message_count": record.message_count,
                    "title": title,
                    "score": round(-candidate.score, 3),
                    "hits": hits,
                }
            )
        return answer

    async def _window(
        self, asked: Plan, flt: Filter, below: int | None
    ) -> tuple[list[tuple[Candidate, SessionRecord]], int | None]:
        """Up to WINDOW matches that pass the filter and the in-memory index, newest first, and where the next window starts.

        Ranked by bm25 only when the window holds every match left: for words or a
        phrase in more sessions than that, bm25's IDF (a walk over every session
        holding them) costs several times the matching, so a full window goes by
        recency alone.
        """
        index = self.store.index
        chosen: list[tuple[Candidate, SessionRecord]] = []
        position = below
        while True:
            found = await self._r(self._reader_db.window, asked, position, WINDOW, flt.prefix, not chosen)
            for candidate in found.rows:
                record = index.get(candidate.key)
                if record is None or record.name != candidate.name or _ident(record) != candidate.ident:
                    self._stale(candidate.name)
                    continue
                if not flt.matches(record) or (flt.contains and flt.contains not in record.key):
                    continue
                chosen.append((candidate, record))
                if len(chosen) == WINDOW:
                    return chosen, candidate.rowid
            if not found.full:
                return chosen, None
            position = found.last

    def _stale(self, name: str) -> None:
        """A row that is not the file's truth: queue the file (unless it is a collision's loser, which is true)."""
        state = self.store.index.file_state(name)
        if (
            isinstance(state, SessionRecord)
            and state.key in self.store.index
            and not state.same_version(self.store.index.get(state.key))
        ):
            return
        self.on_files([name])

    def _observe(self, seconds: float) -> None:
        self.query_seconds += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.query_buckets[i] += 1
                return
        self.query_buckets[-1] += 1

    async def titles(self, records: Sequence[SessionRecord]) -> dict[str, str]:
        """Key -> title for the records whose file is indexed as it is now.

        The last TITLES_KEPT answers are kept by file name with the identity they were
        asked for (the record's packed stat): a title, or None for a file not indexed
        yet, forgotten when a batch writes that file. A page listed again (the page's
        first request, polled, also while the build has not reached it) makes no trip
        to the reader thread, whose every hop back waits for the GIL behind the busy loop.
        Nor does a file the full pass has not written yet (most of them while it builds),
        which is remembered as untitled too: at 100k asking the full pass's set for each
        row of a page was ~50 µs of a list's ~320 µs (list -10 % while building).
        """
        if not self.opened or not records:
            return {}
        out: dict[str, str] = {}
        kept = self._titles
        missing: list[SessionRecord] = []
        for record in records:
            hit = kept.get(record.name)
            if hit is not None and hit[0] == record.ident:
                if hit[1] is not None:
                    out[record.key] = hit[1]
                kept.move_to_end(record.name)
            elif record.name not in self._unwritten:
                missing.append(record)
            else:  # the full pass has not written it yet: no title, no trip; remembered until a batch writes it
                kept[record.name] = (record.ident, None)  # (asking the set again is a bisection in Python per row)
                kept.move_to_end(record.name)
        if missing:
            written = self._batches_written
            known = await self._r(self._reader_db.titles, [r.name for r in missing])
            for record in missing:
                found = known.get(record.name)
                if found is not None and found[0] == _ident(record):
                    out[record.key] = found[1]
                    kept[record.name] = (record.ident, found[1])
                elif written == self._batches_written:  # no batch written meanwhile: "not indexed" is still true
                    kept[record.name] = (record.ident, None)
                else:
                    continue
                kept.move_to_end(record.name)
        while len(kept) > TITLES_KEPT:
            kept.popitem(last=False)
        return out


@dataclasses.dataclass(slots=True)
class _Taken:
    """A batch taken from the queue, not yet written."""

    size: int  # its files, for the progress
    queued: list[float]  # when its live changes were queued
    folder: Folder | None
    max_bytes: int
    removals: list[str]
    reads: list[tuple[str, str, Ident]]  # (name, key, identity) to read
    parsing: _Parsing | None = None  # the worker's work on *reads*, when it has them


class _WorkerFailed(Exception):
    """The worker died, hung or failed; the batch is parsed in the daemon (logged)."""


class _Closed(Exception):
    """The daemon is stopping: the batch is dropped (the next start indexes it)."""


@dataclasses.dataclass(slots=True)
class _Parsing:
    pool: concurrent.futures.ProcessPoolExecutor
    future: concurrent.futures.Future[Any]
    seconds: float
    ticket: int | None  # the worker writes the batch (index_batch; `committed(ticket)`) rather than handing it back

    @property
    def writes(self) -> bool:
        return self.ticket is not None


class _ParseWorker:
    """One worker process that reads, parses and writes big batches (`search_files.index_batch`; `prepare_batch` in memory).

    Started from the forkserver, as the scan's pool (forking a process that runs
    threads can copy a held lock into the child); started when a big batch comes,
    ended when the keeper is idle, killed at close. Used from the writer thread;
    `close(wait=False)` from the loop.
    """

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.failures = 0
        self.closed = False
        self.pids: set[int] = set()  # every worker process started (tests: never the daemon's)
        self.nice = WORKER_NICE  # (the bench measures the build at 0 too)

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], seconds: float, ticket: int | None = None) -> _Parsing | None:
        """Hand the worker a batch (`fn(*args)`); None if there is no worker (closing, or given up after failures)."""
        if self.closed or self.failures >= WORKER_FAILURES:
            return None
        try:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["sessiond.live.store", "sessiond.core.search_files"])
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    1, mp_context=context, initializer=workers.in_a_worker, initargs=(os.getpid(), self.nice)
                )
            future = self._pool.submit(fn, *args)
            self.pids.update(self._pool._processes or ())
        except (BrokenProcessPool, RuntimeError, OSError) as exc:
            self._failed(exc)
            return None
        return _Parsing(self._pool, future, seconds, ticket)

    def holds(self, parsing: _Parsing) -> bool:
        """Whether *parsing* went to the worker now running (else it fails, and is done in the daemon)."""
        return parsing.pool is self._pool and not self.closed

    def committed(self, parsing: _Parsing) -> Any:
        """Wait for the COMMIT of a batch the worker prepared (`result` first); raises _WorkerFailed (logged) or _Closed."""
        pool, ticket = parsing.pool, parsing.ticket
        assert ticket is not None
        if self.closed:
            raise _Closed
        if pool is not self._pool:
            raise _WorkerFailed  # that worker failed on an earlier batch (logged then)
        try:
            future = pool.submit(search_files.committed, ticket)
        except (BrokenProcessPool, RuntimeError, OSError) as exc:
            if self.closed:
                raise _Closed from None
            self._failed(exc)
            raise _WorkerFailed from None
        return self.result(_Parsing(pool, future, parsing.seconds, parsing.ticket))

    def result(self, parsing: _Parsing) -> Any:
        """The worker's answer; raises _WorkerFailed (logged) or _Closed."""
        try:
            return parsing.future.result(timeout=parsing.seconds)
        except Exception as exc:
            if self.closed:
                raise _Closed from None
            if parsing.pool is not self._pool:
                raise _WorkerFailed from None  # that worker failed on an earlier batch (logged then)
            self._failed(exc)
            raise _WorkerFailed from None

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        why = "it hung" if isinstance(exc, TimeoutError) else ("it died" if isinstance(exc, BrokenProcessPool) else repr(exc))
        later = "from now on in the daemon" if self.failures >= WORKER_FAILURES else "a new worker takes the next"
        log.warning("search: the parse worker failed (%s); its batch is parsed in the daemon, %s", why, later)
        self._end(kill=True)

    def stop(self) -> None:
        """End the worker once it is idle (its memory goes back). On the writer thread."""
        self._end(kill=False)

    def close(self, wait: bool) -> None:
        """Kill the worker now and start no other: the daemon is stopping.

        From the loop without *wait* (a batch the writer thread waits for fails at once);
        then from the writer thread with *wait*: the pool's own thread is joined, so none
        is left for the interpreter's exit to wake (a race in 3.11's concurrent.futures).
        """
        self.closed = True
        if wait:
            self._end(kill=True)
        elif (pool := self._pool) is not None:
            _kill(pool)

    def _end(self, kill: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            _kill(pool)
            # A worker killed while it sent a result leaves half a message in the result pipe,
            # and the pool's thread would wait for the rest for ever: the daemon holds the pipe's
            # write end too. Closed, the rest reads as the end: the pool is broken, its thread ends.
            with contextlib.suppress(AttributeError, OSError):
                pool._result_queue._writer.close()  # type: ignore[attr-defined]
        pool.shutdown(wait=True, cancel_futures=True)  # at once once killed, or idle


def _kill(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    for process in list((pool._processes or {}).values()):
        with contextlib.suppress(OSError, ValueError):
            process.kill()


def _differences(files: FileVersions, indexed: Iterable[list[tuple[str, int]]]) -> tuple[Todo, bytearray]:
    """The files to index or remove so the search index equals *files* (*indexed*: the index's
    (name, packed identity), page by page, as SearchDB.idents_page gives), the newest hour first
    (_by_update), what is gone before them; and a mark for each of *files* to be indexed.

    An indexed name is found among the files by bisection (their names are in order): nothing
    is made per file but a mark, where a map of every indexed name was ~200 MB at 1M."""
    names, ident = files.names, files.ident
    count = len(names)
    seen = bytearray(count)
    fresh: list[int] = []  # changed since indexed
    gone: list[str] = []
    find = bisect.bisect_left
    for page in indexed:
        for name, known in page:
            i = find(names, name)
            if i < count and names[i] == name:
                seen[i] = 1
                if ident(i) != known:
                    fresh.append(i)
            else:
                gone.append(name)  # a rewrite under the same name is changed, not gone
    # Removals are popped first: gone text goes before new text comes.
    if len(fresh) == 0 and not seen.count(1):  # a first build: every file, none to compare
        return Todo(names, array.array("q", _by_update(range(count), files.in_order())), gone), bytearray(b"\x01") * count
    marks = seen.translate(_NOT)  # never indexed (in C: a mark per file, ~1 ms at 1M) ...
    for i in fresh:
        marks[i] = 1  # ... or changed since
    for start in range(0, count, PLAN_SLICE):  # never indexed; a C call of a million holds the loop too
        fresh += itertools.compress(range(start, start + PLAN_SLICE), map(operator.not_, seen[start : start + PLAN_SLICE]))
    return Todo(names, array.array("q", _by_update(fresh, map(files.updated, fresh))), gone), marks


_NOT = bytes([1]) + bytes(255)  # bytes.translate table: 0 -> 1, anything else -> 0

# Items one C call of the plan covers (a page of the index, the never-indexed picked out): a few ms.
# The plan runs on a thread, but a C call holds the GIL throughout, and with it the event loop: one
# sort of a million records was ~300 ms, one set of a million names ~120 ms.
PLAN_SLICE = 1 << 14


BUILD_ORDER_SECONDS = 3600.0  # a build goes newest hour first; within an hour, in name order


def _by_update(order: Iterable[int], times: Iterable[float]) -> list[int]:
    """*order* oldest hour first (popped from the end: the newest hour is indexed first), in its
    own order within an hour; *times*: each one's updated_at, in the same order.

    Not an exact sort by updated_at: a build indexes ~5,000 files a second, so an order finer
    than an hour changes nothing anyone sees, and the exact one (sorted runs merged in Python,
    two key calls a file) held the GIL for ~3 s of a first build at 1M, beside the loop serving
    requests. One bucket a file; the hours, a few thousand, are sorted once."""
    hours: dict[float, list[int]] = {}
    for i, when in zip(order, times, strict=True):
        hour = when // BUILD_ORDER_SECONDS
        if (bucket := hours.get(hour)) is None:
            hours[hour] = [i]
        else:
            bucket.append(i)
    ordered: list[int] = []
    for hour in sorted(hours):
        ordered += hours[hour]
    return ordered


class Todo:
    """A full pass's files to write, popped one by one: what is gone first, then the plan's names
    by position (`order`, popped from the end), so no list of a million names is made for it."""

    __slots__ = ("_gone", "_names", "_order")

    def __init__(self, names: Sequence[str] = (), order: array.array[int] | None = None, gone: Sequence[str] = ()) -> None:
        self._names = names
        self._order: array.array[int] = order if order is not None else array.array("q")
        self._gone = list(gone)

    def __len__(self) -> int:
        return len(self._order) + len(self._gone)

    def pop(self) -> str:
        return self._gone.pop() if self._gone else self._names[self._order.pop()]


class Unwritten:
    """The files a full pass has yet to write, by name: its plan's file names (in name order) and a
    mark each, where a set of a million names took ~0.3 s to make (GIL held) and ~60 MB."""

    __slots__ = ("_marks", "_names")

    def __init__(self, names: Sequence[str] = (), marks: bytearray | None = None) -> None:
        self._names = names
        self._marks = marks if marks is not None else bytearray(len(names))

    def _at(self, name: str) -> int:
        i = bisect.bisect_left(self._names, name)
        return i if i < len(self._names) and self._names[i] == name else -1

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (i := self._at(name)) >= 0 and self._marks[i] == 1

    def discard(self, name: str) -> None:
        """Written (or removed): no longer waiting."""
        if (i := self._at(name)) >= 0:
            self._marks[i] = 0


def _plan_of(read: Callable[[], FileVersions], indexed: Callable[[], Iterable[list[tuple[str, int]]]]) -> tuple[Todo, Unwritten]:
    files = read()
    todo, marks = _differences(files, indexed())
    # The order's buckets (a million ints at a first build at 1M) are freed: their pages go back (~20 MB).
    heap.give_back()
    return todo, Unwritten(files.names, marks)


def _read_hits(
    folder: Folder, wanted: list[tuple[str, Ident]], query: Query, role: str | None, max_bytes: int
) -> list[tuple[str, list[dict[str, Any]]] | None]:
    """For each file: (title, hits) from the file as it is now, or None (changed, gone, or no longer a match)."""
    out: list[tuple[str, list[dict[str, Any]]] | None] = []
    try:
        with folder.open() as dir_fd:
            for name, ident in wanted:
                pieces = read_parts(dir_fd, name, ident, max_bytes)
                found = match(query, pieces, role) if pieces is not None else None
                if not found:
                    out.append(None)
                    continue
                hits = [
                    {
                        "message": hit.part.number if hit.part.number >= 0 else None,
                        "role": hit.part.role,
                        "snippet": search_text.snippet(hit.part.text, hit.marks),
                    }
                    for hit in found[:HITS_PER_RESULT]
                ]
                out.append((search_text.title(pieces or []), hits))
    except FolderUnusable:
        return [None] * len(wanted)
    return out


# -- cursors ---------------------------------------------------------------------------------


def _fingerprint(query: Query, flt: Filter, role: str | None) -> str:
    raw = orjson.dumps([query.fts(), repr(flt), role])
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _encode_cursor(fingerprint: str, below: int | None, skip: int) -> str:
    raw = orjson.dumps({"f": fingerprint, "b": below, "s": skip})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str, fingerprint: str) -> tuple[int | None, int]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:
        raise QueryError("cursor", "is not a cursor this search gave") from None
    if (
        not isinstance(data, dict)
        or data.get("f") != fingerprint
        or not (data.get("b") is None or (type(data.get("b")) is int and data["b"] > 0))
        or type(data.get("s")) is not int
        or not 0 <= data["s"] <= 1_000_000
    ):
        raise QueryError("cursor", "is not a cursor of this search (the query, filters and role must stay the same)")
    return data["b"], data["s"]


# -- metrics ---------------------------------------------------------------------------------


class SearchMetrics(Collector):
    """sessiond_search_*: the index's rows, bytes, lag and build progress, and query latency."""

    def __init__(self, keeper: SearchKeeper) -> None:
        self.keeper = keeper

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        k = self.keeper
        indexed, _ = k.progress()
        yield GaugeMetricFamily("sessiond_search_rows", "Session files in the search index", value=k.rows)
        yield GaugeMetricFamily("sessiond_search_bytes", "Bytes the search index takes on disk", value=k.bytes)
        yield GaugeMetricFamily("sessiond_search_lag_seconds", "Change-to-searchable delay of the last write batch", value=k.lag)
        yield GaugeMetricFamily("sessiond_search_indexed_sessions", "Sessions indexed as they are now", value=indexed)
        yield GaugeMetricFamily(
            "sessiond_search_complete", "1 when the search index holds every session as it is now", value=int(k.complete)
        )
        yield CounterMetricFamily("sessiond_search_files_read", "Session files read to index them", value=k.files_read)
        yield CounterMetricFamily(
            "sessiond_search_build_paused_seconds", "Seconds the build waited for requests to slow down", value=k.paused
        )
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), k.query_buckets, strict=True):
            running += count
            buckets.append((bound, running))
        yield HistogramMetricFamily(
            "sessiond_search_query_seconds", "Search request latency", buckets=buckets, sum_value=k.query_seconds
        )

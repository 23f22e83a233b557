"""The overview's figures kept in step with the index.

`StatsKeeper` keeps a SessionStats in step with the index: one
full pass once the first index is complete (the first scan announces nothing), done in
chunks that give the event loop back between them, then every change the store
announces is applied: the record a change replaced (Change.before) is counted out, the
new one in. The index announces every change of what it serves exactly once, in order,
so nothing is kept per session. While the pass runs, a change of a key the pass has
yet to reach is left to the pass (it counts what the index holds when it gets there).
A request therefore costs O(changes since the last one), never a walk of 100k records;
a count that disagrees with the index's (cheap to notice) means a pass again.
"""

from __future__ import annotations

import asyncio
import bisect
import logging

from sessiond.core.index import Change, SessionIndex
from sessiond.core.stats import SessionStats
from sessiond.live.store import SessionStore
from sessiond.live.threads import COLLECTOR

log = logging.getLogger(__name__)

_COUNTED = frozenset({"created", "updated", "deleted"})  # not the notes that follow some (compacted, ...)
BUILD_CHUNK = 1_000  # records per step of the full pass (1-3 ms of the loop; 30 ms while threads share the GIL)


class StatsKeeper:
    """A SessionStats kept in step with a store's index (a store listener)."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self._stats = SessionStats()
        self._index: SessionIndex | None = None  # the index being (or been) counted
        self._pass: asyncio.Future[None] | None = None
        # While a pass runs: the keys it walks (ascending) and how many of them it has counted.
        self._walking: list[str] | None = None
        self._walked = 0
        self.first_pass_over = asyncio.Event()  # set once first_pass ended (counted, failed or cancelled)

    def on_changes(self, changes: list[Change]) -> None:
        """Store listener: count each change's record in place of the one it replaced."""
        if self.store.index is not self._index:
            return  # no pass over this index has begun: the next one will see it all
        stats = self._stats
        for change in changes:
            if change.kind in _COUNTED and not self._ahead(change.key):
                stats.replace(change.before, change.record)

    def _ahead(self, key: str) -> bool:
        """True when the running pass has yet to reach *key* (and will count it as it is then)."""
        keys = self._walking
        if keys is None:
            return False
        at = bisect.bisect_left(keys, key, self._walked)
        return at < len(keys) and keys[at] == key

    async def current(self) -> SessionStats:
        """Figures that match the index now; a full pass only the first time (or for a new index)."""
        index = self.store.index
        stale = self._pass is None or index is not self._index or self._pass.cancelled()
        if not stale and self._pass is not None and self._pass.done() and len(self._stats) != len(index):
            log.warning("stats: %d sessions counted for %d indexed; counting again", len(self._stats), len(index))
            stale = True  # some change was never announced; cheap to notice, rare to happen
        if stale:
            self._pass = asyncio.ensure_future(self._full_pass(index))
        assert self._pass is not None
        await asyncio.shield(self._pass)
        return self._stats

    async def _full_pass(self, index: SessionIndex) -> None:
        stats = SessionStats()
        self._stats, self._index = stats, index  # changes are applied from now on, during the pass too
        # The key list, and the key map while it fills; then frozen, as the index is (threads.py).
        with COLLECTOR.paused(freeze=True):
            keys = list(index.keys())
            self._walking, self._walked = keys, 0
            try:
                for start in range(0, len(keys), BUILD_CHUNK):
                    # What the index holds now; a key gone meanwhile is skipped (records_of).
                    stats.add_new(list(index.records_of(keys[start : start + BUILD_CHUNK])))
                    self._walked = start + BUILD_CHUNK
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                self._index = None  # half counted: changes wait for the next pass, which starts afresh
                raise
            finally:
                self._walking = None

    async def first_pass(self, ready: asyncio.Event) -> None:
        """Count as soon as the first index is complete (*ready*), not on the first request.

        Cancelled (the daemon stops), the pass ends too: a request's wait is shielded from
        its own cancel, so nothing else would end it, and at 1M a stop a second after ready
        waited hundreds of ms for it while it went on taking the loop in steps.
        """
        await ready.wait()
        try:
            await self.current()
        finally:
            if self._pass is not None and not self._pass.done():
                self._pass.cancel()
            self.first_pass_over.set()

"""The overview's figures kept in step with the index.

`StatsKeeper` keeps a SessionStats in step with the index: one
full pass once the first index is complete (the first scan announces nothing), done in
chunks that give the event loop back between them, then every change the store
announces is applied by key. Announcements are hints, as the watcher's are: for each
key the record the index holds *now* replaces the one counted before, so a change
applied twice, or announced after the full pass already saw it, counts once. A request
therefore costs O(changes since the last one), never a walk of 100k records.
"""

from __future__ import annotations

import asyncio
import logging

from sessiond.core.index import Change, SessionIndex
from sessiond.core.stats import SessionStats
from sessiond.live.store import SessionStore
from sessiond.live.threads import COLLECTOR

log = logging.getLogger(__name__)

BUILD_CHUNK = 1_000  # records per step of the full pass (1-3 ms of the loop; 30 ms while threads share the GIL)


class StatsKeeper:
    """A SessionStats kept in step with a store's index (a store listener)."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self._stats = SessionStats()
        self._index: SessionIndex | None = None  # the index being (or been) counted
        self._pass: asyncio.Future[None] | None = None

    def on_changes(self, changes: list[Change]) -> None:
        """Store listener: re-count each changed key from what the index holds now."""
        index = self.store.index
        if index is not self._index:
            return  # no pass over this index has begun: the next one will see it all
        stats = self._stats
        for change in changes:
            stats.sync(change.key, index.get(change.key))

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
            for start in range(0, len(keys), BUILD_CHUNK):
                # A key a change has counted meanwhile is already current; a key gone is skipped.
                chunk = [r for r in map(index.get, keys[start : start + BUILD_CHUNK]) if r is not None and r.key not in stats]
                stats.add_new(chunk)
                await asyncio.sleep(0)

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

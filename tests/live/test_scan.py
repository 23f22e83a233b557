"""A scan as the daemon runs it: real files read into columns, the index settled after."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from sessiond.core.index import SessionIndex
from sessiond.live import store as store_mod
from tests.support import open_store, write_atomic


async def test_once_a_scan_settles_nothing_but_the_index_holds_what_it_read(
    sessions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settling makes the index hold new copies of the scan's keys and names so that the heap the
    # scan used can go back to the system. Anything else still holding the old strings (at 1M,
    # a future whose result was the scan's Sheet: 165 MB) keeps both copies alive.
    # Read in worker processes, as a big folder is (a small one is read in a thread, where the
    # listing's names are the records' own strings and a finished work item may hold its slice of
    # them a moment longer: a few hundred kB at most).
    monkeypatch.setattr(store_mod, "PROCESS_POOL_THRESHOLD", 0)
    for i in range(40):
        write_atomic(sessions, f"user:{i}")
    store = open_store(sessions)
    holders: list[list[str]] = []
    settle = SessionIndex.settle

    def watched(index: SessionIndex) -> None:
        probes = [index.get("user:7").key, index.file_state("user_7.json").name]  # type: ignore[union-attr]
        settle(index)
        for probe in probes:
            holders.append([type(holder).__name__ for holder in gc.get_referrers(probe) if holder is not probes])

    monkeypatch.setattr(SessionIndex, "settle", watched)
    await store.scan()
    assert holders == [[], []]
    assert len(store.index) == 40 and store.index.get("user:7") is not None

"""A scan as the daemon runs it (real files read into columns, the index settled after), and the
compaction that folds what changed since back into columns."""

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


async def test_sessions_rewritten_since_the_scan_fold_back_into_rows_and_answer_the_same(sessions: Path) -> None:
    for i in range(60):
        write_atomic(sessions, f"user:{i}", messages=1)
    store = open_store(sessions)
    await store.scan()
    assert store.index.held_as_objects == 0
    for i in range(0, 60, 3):  # the agent rewrites a third of them
        write_atomic(sessions, f"user:{i}", messages=5)
    await store.refresh([f"user_{i}.json" for i in range(0, 60, 3)])
    before = [(r.key, r.name, r.message_count, r.ident) for r in store.index.records()]
    body = store.index.list_body()
    assert store.index.held_as_objects == 20
    assert await store.compact() == 20
    assert store.index.held_as_objects == 0 and await store.compact() == 0
    assert [(r.key, r.name, r.message_count, r.ident) for r in store.index.records()] == before
    assert store.index.list_body() == body
    write_atomic(sessions, "user:3", messages=9)  # a folded row changes again as any row does
    await store.refresh(["user_3.json"])
    assert store.index.get("user:3").message_count == 9  # type: ignore[union-attr]


def test_a_compaction_is_due_once_many_sessions_and_a_tenth_of_the_index_are_objects() -> None:
    assert not store_mod.compacting_due(store_mod.COMPACT_AT - 1, store_mod.COMPACT_AT)
    assert store_mod.compacting_due(store_mod.COMPACT_AT, 10 * store_mod.COMPACT_AT)
    assert not store_mod.compacting_due(store_mod.COMPACT_AT, 10 * store_mod.COMPACT_AT + 1)

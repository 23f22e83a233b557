"""Convergence without trusting the watcher: the reconcile pass and when it runs."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from sessiond.core import reconcile
from sessiond.core.reconcile import ReconcileSchedule
from sessiond.live import watcher as watcher_mod
from tests.disk import api_equals_disk, disk_model
from tests.support import AUTH, eventually, open_store, session_doc, store_of, write_atomic

# -- the schedule (pure) -----------------------------------------------------


def test_no_events_no_timer_means_never() -> None:
    assert ReconcileSchedule(0, now=0).due_at() == math.inf


def test_timer_is_the_safety_net() -> None:
    s = ReconcileSchedule(300, now=10)
    assert s.due_at() == 310
    s.done(310, 311)
    assert s.due_at() == 611


def test_burst_is_checked_once_it_settles() -> None:
    s = ReconcileSchedule(0, now=0)
    s.saw_events(100.0)
    s.saw_events(100.2)
    assert s.due_at() == pytest.approx(100.2 + reconcile.SETTLE)
    s.done(100.6, 100.61)
    assert s.due_at() == math.inf


def test_endless_burst_is_still_checked() -> None:
    s = ReconcileSchedule(0, now=0)
    for i in range(100):
        s.saw_events(50 + i * 0.1)
    assert s.due_at() == 50 + reconcile.MAX_DEFER


def test_slow_walks_thin_out() -> None:
    s = ReconcileSchedule(0, now=0)
    s.saw_events(1.0)
    s.done(1.3, 3.3)  # a 2 s walk (a huge folder)
    s.saw_events(3.4)
    assert s.due_at() == pytest.approx(3.3 + reconcile.DUTY * 2)


def test_events_during_a_reconcile_are_checked_after_it() -> None:
    s = ReconcileSchedule(0, now=0)
    s.saw_events(1.0)
    s.saw_events(1.35)  # while the reconcile below ran
    s.done(1.3, 1.31)
    assert s.due_at() == pytest.approx(max(1.35 + reconcile.SETTLE, 1.31 + reconcile.MIN_GAP))


# -- the pass itself (no watcher) ----------------------------------------------


async def test_reconcile_rereads_only_what_differs_and_counts_drift(sessions: Path) -> None:
    for i in range(20):
        write_atomic(sessions, f"s:{i}")
    store = open_store(sessions)
    await store.scan()
    before = store.files_applied
    assert await store.reconcile() == 0
    assert store.files_applied == before  # nothing differed: nothing re-read

    write_atomic(sessions, "s:1", messages=5)  # new inode
    (sessions / "s_2.json").unlink()
    write_atomic(sessions, "new:1")
    with (sessions / "s_3.json").open("r+b") as fh:  # in place, same inode, new size
        fh.write(orjson.dumps(session_doc("s:3", messages=2)))
    (sessions / "bad.json").write_bytes(b"{")

    assert await store.reconcile() == 5
    assert store.files_applied == before + 5
    assert store.drift_files == 5 and store.reconciles == 2
    assert store.index.get("s:1").message_count == 5
    assert store.index.get("s:3").message_count == 2
    assert "s:2" not in store.index and "new:1" in store.index
    assert "bad.json" in store.index.invalid
    assert disk_model(sessions) == {r.key: r.message_count for r in store.index.records()}


async def test_reconcile_in_flight_names_are_not_drift(sessions: Path) -> None:
    store = open_store(sessions)
    await store.scan()
    write_atomic(sessions, "a")
    write_atomic(sessions, "b")
    assert await store.reconcile(in_flight={"a.json"}.__contains__) == 1
    assert {"a", "b"} <= set(store.index.keys())


async def test_a_vanished_folder_is_never_read_and_clear_empties_the_index(sessions: Path, tmp_path: Path) -> None:
    write_atomic(sessions, "a")
    store = open_store(sessions)
    await store.scan()
    sessions.rename(tmp_path / "elsewhere")
    sessions.mkdir()
    write_atomic(sessions, "b")  # another folder now: the handle refuses it
    await store.reconcile()
    assert list(store.index.keys()) == ["a"] and store.drift_files == 0
    await store.clear()  # what the watcher does when it sees the folder go
    assert len(store.index) == 0 and store.folder is None


# -- through the daemon ----------------------------------------------------------


def _lossy_awatch(drop: float, seed: int = 1):
    """awatch, but each event is lost with probability *drop* (a kernel queue overflowing)."""
    real = watcher_mod.awatch
    rng = random.Random(seed)

    async def lossy(*args, **kwargs) -> AsyncIterator[set]:
        async for batch in real(*args, **kwargs):
            kept = {change for change in batch if rng.random() >= drop}
            if kept or not batch:  # the heartbeats (empty batches) still come: only events are lost
                yield kept

    return lossy


async def test_lost_events_converge_after_the_burst(start_client, sessions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watcher_mod, "awatch", _lossy_awatch(drop=0.5))
    client = await start_client(reconcile_interval=0)
    rng = random.Random(7)
    for _ in range(300):
        key = f"k:{rng.randrange(60)}"
        if rng.random() < 0.2 and (sessions / f"k_{key[2:]}.json").exists():
            (sessions / f"k_{key[2:]}.json").unlink()
        else:
            write_atomic(sessions, key, messages=rng.randrange(1, 9))
    await eventually(lambda: api_equals_disk(client, sessions), timeout=2)
    assert store_of(client).reconciles >= 1


async def test_timer_alone_converges_a_deaf_watcher(start_client, sessions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watcher_mod, "awatch", _lossy_awatch(drop=1.0))
    client = await start_client(reconcile_interval=0.3)
    write_atomic(sessions, "quiet:1")
    await eventually(lambda: "quiet:1" in store_of(client).index, timeout=2)
    metrics = await (await client.get("/metrics", headers=AUTH)).text()
    drift = next(line for line in metrics.splitlines() if line.startswith("sessiond_reconcile_drift_total"))
    assert float(drift.split()[1]) >= 1


async def test_names_applied_during_a_walk_are_not_drift(sessions: Path) -> None:
    """A reconcile runs beside the hint loop: what an event applied meanwhile was not lost."""
    write_atomic(sessions, "busy", messages=1)
    store = open_store(sessions)
    await store.scan()
    write_atomic(sessions, "busy", messages=2)  # the walk will see this one
    walk = asyncio.create_task(store.reconcile(grace=0.3))
    await asyncio.sleep(0.1)  # the walk is done; the reconcile sits in its grace period
    write_atomic(sessions, "busy", messages=30)
    await store.refresh(["busy.json"])  # the watcher's event arrives and is applied
    assert await walk == 0 and store.drift_files == 0
    assert store.index.get("busy").message_count == 30

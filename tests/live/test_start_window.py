"""The first start: what changes while the first scan runs reaches the index through the watch.

The watch is set up before the scan (the module doc of live/watcher.py says why, and
docs/performance.md what the other order cost). The scan is hooked at its end (every
file read, the index not yet built) through the watcher's progress callback, and real
file operations run there: no mock of the file system. With no reconcile timer, only
the watch's events can make the index right, and they must do so before the burst's
own reconcile (0.3 s after it) has run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from watchfiles import awatch

from sessiond.core.names import file_name_for
from sessiond.live import watcher as watcher_mod
from sessiond.live.store import SessionStore
from sessiond.live.watcher import SessionWatcher, WatchState
from tests.disk import disk_model
from tests.support import eventually, write_atomic

MODES = [pytest.param(False, id="inotify"), pytest.param(True, id="polling")]


def index_model(store: SessionStore) -> dict[str, int]:
    return {record.key: record.message_count for record in store.index.records()}


async def started(sessions: Path, polling: bool, during_scan: Callable[[], None]) -> SessionWatcher:
    """A watcher whose first scan runs *during_scan* once every file is read; returned at ready."""
    fired = False

    def progress(done: int, total: int) -> None:
        nonlocal fired
        if done == total and not fired:
            fired = True
            during_scan()

    store = SessionStore(sessions, 1 << 20)
    watcher = SessionWatcher(store, force_polling=polling, progress=progress)
    watcher.start()
    await asyncio.wait_for(watcher.ready.wait(), 10)
    assert fired
    return watcher


@pytest.mark.parametrize("polling", MODES)
async def test_files_written_rewritten_and_deleted_during_the_first_scan_are_indexed_without_a_reconcile(
    sessions: Path, polling: bool
) -> None:
    for i in range(40):
        write_atomic(sessions, f"w:{i}", messages=1)
    # Rewritten in place below to the very same size: only the file's times can tell.
    in_place = sessions / file_name_for("same:size")
    in_place.write_bytes(b'{"key":"same:size","messages":[1,2],"pad":"xx"}')

    def during_scan() -> None:
        write_atomic(sessions, "new:1", messages=3)  # written
        write_atomic(sessions, "w:1", messages=7)  # rewritten (the agent's rename over it)
        (sessions / file_name_for("w:2")).unlink()  # deleted
        write_atomic(sessions, "w:3", messages=4)  # rewritten, then deleted
        (sessions / file_name_for("w:3")).unlink()
        write_atomic(sessions, "brief:1", messages=2)  # written, then deleted
        (sessions / file_name_for("brief:1")).unlink()
        if polling:
            # The poller compares times: a rewrite of the same size within one tick of the
            # kernel's clock after the first write is invisible to it (and to any stat).
            time.sleep(0.05)
        with in_place.open("r+b") as fh:
            fh.write(b'{"key":"same:size","messages":[1,2,3],"pad":""}')

    watcher = await started(sessions, polling, during_scan)
    store = watcher.store
    try:
        if polling:  # the poller's looks (every 300 ms) and the burst's reconcile converge it together
            await eventually(lambda: index_model(store) == disk_model(sessions), timeout=3)
        else:
            await eventually(lambda: index_model(store) == disk_model(sessions) or store.reconciles > 0, timeout=3)
            assert store.reconciles == 0  # the events made it right, not a walk
            assert index_model(store) == disk_model(sessions)
        assert store.index.get("same:size").message_count == 3
    finally:
        await watcher.stop()


@pytest.mark.parametrize("polling", MODES)
async def test_a_folder_replaced_during_the_first_scan_is_the_one_indexed_soon_after(
    workspace: Path, sessions: Path, polling: bool
) -> None:
    for i in range(10):
        write_atomic(sessions, f"old:{i}")

    def during_scan() -> None:
        os.rename(sessions, workspace / "old-sessions")
        sessions.mkdir()
        write_atomic(sessions, "new:1", messages=2)

    watcher = await started(sessions, polling, during_scan)
    try:
        await eventually(lambda: index_model(watcher.store) == {"new:1": 2} and watcher.state is WatchState.READY, timeout=5)
    finally:
        await watcher.stop()
        shutil.rmtree(workspace / "old-sessions")


@pytest.mark.parametrize("polling", MODES)
async def test_the_watch_is_set_up_when_its_thread_first_looks_at_the_stop_event(sessions: Path, polling: bool) -> None:
    # The catch-up starts without waiting 200 ms for the first batch only while this holds
    # for the watchfiles installed: a write right after that first look is in a batch.
    looked = asyncio.Event()
    stop = watcher_mod._StopEvent(looked.set)
    events = awatch(sessions, stop_event=stop, rust_timeout=5000, yield_on_timeout=True, force_polling=polling, recursive=False)
    first = asyncio.ensure_future(anext(events))
    try:
        await asyncio.wait_for(looked.wait(), 5)  # long before the first (empty) batch, due in 5 s
        assert not first.done()
        write_atomic(sessions, "right:after")
        seen: set[str] = set()
        deadline = time.monotonic() + 5
        while not any(path.endswith(file_name_for("right:after")) for path in seen):
            batch = await asyncio.wait_for(first, max(deadline - time.monotonic(), 0))
            assert batch, "the write was not reported"  # an empty batch: timed out (5 s) without it
            seen.update(path for _, path in batch)
            first = asyncio.ensure_future(anext(events))  # a poll may see the temp file first
    finally:
        stop.set()
        first.cancel()
        await events.aclose()


async def test_every_thread_the_loop_hands_work_to_is_started_before_the_scan_so_a_submit_never_starts_one(
    start_client: Callable[..., Any], tmp_path: Path
) -> None:
    # A ThreadPoolExecutor starts a thread on a submit that finds none idle, and Thread.start() waits until
    # the new thread runs: on the loop, with other threads holding the GIL right after the first ready at 1M,
    # one start held it 117-249 ms. The loop's default executor and the search's writer and reader are
    # started up front, so no submit from the loop starts a thread.
    import threading

    from sessiond.live.threads import DEFAULT_THREADS
    from sessiond.web.appkeys import SEARCH

    state = tmp_path / "state"
    state.mkdir()
    client = await start_client(state_dir=str(state))
    loop = asyncio.get_running_loop()
    executor = loop._default_executor  # type: ignore[attr-defined]
    assert executor is not None and len(executor._threads) == DEFAULT_THREADS
    keeper = client.app[SEARCH]
    assert keeper is not None and len(keeper._writer._threads) == 1 and len(keeper._reader._threads) == 1
    before = threading.active_count()
    await asyncio.gather(*(loop.run_in_executor(None, time.sleep, 0.05) for _ in range(DEFAULT_THREADS)))
    assert threading.active_count() == before and len(executor._threads) == DEFAULT_THREADS

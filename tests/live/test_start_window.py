"""The first start: what changes while the first scan runs is in the index when ready is set.

The scan is hooked at its end (every file read, the index not yet built) through the
watcher's progress callback, and real file operations run there: no mock of the file
system. The index is compared with the disk at the moment `ready` is set, before any
hint from the watch could be applied and with no reconcile timer: only the start's own
catch-up can make it right.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from watchfiles import awatch

from sessiond.core.names import file_name_for
from sessiond.live import watcher as watcher_mod
from sessiond.live.store import SessionStore
from sessiond.live.watcher import SessionWatcher, WatchState
from tests.disk import disk_model
from tests.support import write_atomic

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
async def test_files_written_rewritten_and_deleted_during_the_first_scan_are_right_at_ready(
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
        with in_place.open("r+b") as fh:
            fh.write(b'{"key":"same:size","messages":[1,2,3],"pad":""}')

    watcher = await started(sessions, polling, during_scan)
    try:
        assert index_model(watcher.store) == disk_model(sessions)  # at ready: no hint applied, no reconcile run
        assert watcher.store.index.get("same:size").message_count == 3
        assert watcher.store.drift_files == 0  # the start's own window, not drift
    finally:
        await watcher.stop()


@pytest.mark.parametrize("polling", MODES)
async def test_a_folder_replaced_during_the_first_scan_is_the_one_indexed_at_ready(
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
        assert index_model(watcher.store) == {"new:1": 2}
        assert watcher.state is WatchState.READY
    finally:
        await watcher.stop()
        shutil.rmtree(workspace / "old-sessions")


@pytest.mark.parametrize("polling", MODES)
async def test_the_watch_is_known_set_up_at_the_readers_first_step(sessions: Path, polling: bool) -> None:
    # The catch-up starts without waiting 200 ms for the first batch only while this holds
    # for the watchfiles installed; a write right after that step is in the first batch.
    stop = asyncio.Event()
    events = awatch(sessions, stop_event=stop, rust_timeout=5000, yield_on_timeout=True, force_polling=polling, recursive=False)
    first = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    try:
        assert watcher_mod._set_up(events)
        write_atomic(sessions, "right:after")
        batch = await asyncio.wait_for(first, 5)
        assert any(path.endswith(file_name_for("right:after")) for _, path in batch)
    finally:
        stop.set()
        first.cancel()
        await events.aclose()

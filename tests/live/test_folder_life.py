"""The sessions folder removed, renamed, replaced; the watch failing; polling mode."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from sessiond.live import watcher as watcher_mod
from sessiond.web.appkeys import WATCHER
from tests.disk import api_equals_disk
from tests.support import AUTH, eventually, store_of, write_atomic

MODES = [pytest.param(False, id="inotify"), pytest.param(True, id="polling")]


async def health(client: TestClient) -> tuple[int, dict]:
    resp = await client.get("/health")
    return resp.status, await resp.json()


async def reason_is(client: TestClient, text: str) -> bool:
    status, body = await health(client)
    return status == 503 and text in body.get("reason", "")


async def healthy(client: TestClient) -> bool:
    return (await health(client))[0] == 200


async def in_step(client: TestClient, sessions: Path) -> bool:
    return await healthy(client) and await api_equals_disk(client, sessions)


@pytest.mark.parametrize("polling", MODES)
async def test_polling_and_inotify_converge_the_same(start_client, sessions: Path, polling: bool) -> None:
    client = await start_client(force_polling=polling)
    for i in range(20):
        write_atomic(sessions, f"p:{i}", messages=i + 1)
    await eventually(lambda: in_step(client, sessions), timeout=2)
    write_atomic(sessions, "p:3", messages=30)
    (sessions / "p_4.json").unlink()
    with (sessions / "p_5.json").open("ab") as fh:
        fh.write(b" ")  # touched in place: same content
    await eventually(lambda: in_step(client, sessions), timeout=2)


@pytest.mark.parametrize("polling", MODES)
async def test_folder_removed_then_recreated(start_client, sessions: Path, polling: bool) -> None:
    client = await start_client(force_polling=polling)
    write_atomic(sessions, "old:1")
    await eventually(lambda: "old:1" in store_of(client).index)
    shutil.rmtree(sessions)
    await eventually(lambda: reason_is(client, "sessions folder gone"), timeout=2)
    listing = await (await client.get("/api/v1/sessions", headers=AUTH)).json()
    assert listing == {"sessions": [], "count": 0}  # what is gone is not served

    sessions.mkdir()
    write_atomic(sessions, "new:1")
    await eventually(lambda: in_step(client, sessions), timeout=2)
    write_atomic(sessions, "new:2")  # the new folder is really watched, not just rescanned once
    await eventually(lambda: "new:2" in store_of(client).index, timeout=1)


async def test_folder_renamed_away_and_replaced(start_client, workspace: Path, sessions: Path) -> None:
    client = await start_client()
    write_atomic(sessions, "a:1")
    await eventually(lambda: "a:1" in store_of(client).index)
    staged = workspace / "staged"
    staged.mkdir()
    write_atomic(staged, "b:1")
    os.rename(sessions, workspace / "old")
    os.rename(staged, sessions)  # a restore swapping a whole folder in
    await eventually(lambda: in_step(client, sessions), timeout=2)
    assert list(store_of(client).index.keys()) == ["b:1"]
    write_atomic(workspace / "old", "ghost:1")  # writes in the old folder are not sessions
    write_atomic(sessions, "b:2")
    await eventually(lambda: "b:2" in store_of(client).index, timeout=1)
    assert "ghost:1" not in store_of(client).index


async def test_whole_workspace_removed_and_recreated(start_client, workspace: Path, sessions: Path) -> None:
    client = await start_client()
    write_atomic(sessions, "a:1")
    await eventually(lambda: "a:1" in store_of(client).index)
    shutil.rmtree(workspace)
    await eventually(lambda: reason_is(client, "sessions folder gone"), timeout=2)
    sessions.mkdir(parents=True)
    write_atomic(sessions, "c:1")
    await eventually(lambda: in_step(client, sessions), timeout=3)


async def test_killed_watch_restarts_and_catches_up(start_client, sessions: Path) -> None:
    client = await start_client()
    watcher = client.server.app[WATCHER]  # type: ignore[union-attr]
    reader = next(t for t in asyncio.all_tasks() if t.get_name() == "sessiond-watch-reader")
    reader.cancel()
    write_atomic(sessions, "while:down")  # no watch sees this: the resync must
    await eventually(lambda: watcher.restarts == 1, timeout=1)
    await eventually(lambda: in_step(client, sessions), timeout=2)
    assert store_of(client).drift_files >= 1
    write_atomic(sessions, "after:restart")
    await eventually(lambda: "after:restart" in store_of(client).index, timeout=1)


async def test_failing_watch_backs_off_reports_degraded_then_recovers(
    start_client, sessions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_client()
    watcher = client.server.app[WATCHER]  # type: ignore[union-attr]
    real = watcher_mod.awatch
    failures = {"left": 3}

    def flaky(*args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(28, "inotify watch limit reached")
        return real(*args, **kwargs)

    monkeypatch.setattr(watcher_mod, "awatch", flaky)
    reader = next(t for t in asyncio.all_tasks() if t.get_name() == "sessiond-watch-reader")
    reader.cancel()
    await eventually(lambda: reason_is(client, "degraded: watcher restarting after OSError"), timeout=1)
    write_atomic(sessions, "during:outage")
    # backoff 0.1 + 0.2 + 0.4 + 0.8 s, then a watch that works
    await eventually(lambda: in_step(client, sessions), timeout=4)
    assert watcher.restarts == 4
    metrics = await (await client.get("/metrics", headers=AUTH)).text()
    assert "sessiond_watcher_restarts_total 4.0" in metrics
    assert "sessiond_in_step 1.0" in metrics


async def test_watcher_task_dead_is_503_not_silent(start_client) -> None:
    client = await start_client()
    watcher = client.server.app[WATCHER]  # type: ignore[union-attr]
    assert watcher._task is not None
    watcher._task.cancel()
    await eventually(lambda: reason_is(client, "watcher down"), timeout=1)


async def test_a_watch_that_fails_for_good_turns_livez_503(start_client, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await start_client()
    watcher = client.server.app[WATCHER]  # type: ignore[union-attr]

    def broken(*args, **kwargs):  # the inotify limit reached, for good
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watcher_mod, "awatch", broken)
    monkeypatch.setattr(watcher_mod, "BACKOFF_FIRST", 0.001)
    monkeypatch.setattr(watcher_mod, "BACKOFF_MAX", 0.01)
    assert (await client.get("/livez")).status == 200
    reader = next(t for t in asyncio.all_tasks() if t.get_name() == "sessiond-watch-reader")
    reader.cancel()

    async def failed() -> bool:
        return (await client.get("/livez")).status == 503

    await eventually(failed, timeout=3)
    assert watcher.restarts == watcher_mod.GIVE_UP and not watcher.alive
    assert (await (await client.get("/livez")).json())["status"] == "failed"
    assert (await client.get("/health")).status == 503  # and readiness says why: watcher down


@pytest.mark.parametrize("polling", MODES)
async def test_ready_does_not_wait_for_the_watchs_heartbeat(
    start_client, sessions: Path, monkeypatch: pytest.MonkeyPatch, polling: bool
) -> None:
    # The watch is known to be set up as soon as watchfiles' thread first polls its stop
    # event, not only at its first (empty) heartbeat batch: with a heartbeat a minute away,
    # the daemon is still ready at once, and the watch really sees what follows.
    monkeypatch.setattr(watcher_mod, "HEARTBEAT_MS", 60_000)
    write_atomic(sessions, "a:1")
    client = await start_client(force_polling=polling)  # waits 10 s at most for ready
    write_atomic(sessions, "a:2")
    await eventually(lambda: in_step(client, sessions), timeout=5)

"""File names that are not UTF-8 never stop the watch, the snapshot or a clean stop.

Such a name cannot come from the agent (its names are its keys, made safe), and
watchfiles cannot report one, so sessiond reports the file once as invalid and
keeps watching everything else.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from sessiond.core import snapshot
from tests.support import AUTH, Daemon, eventually, session_doc, store_of, write_atomic

BAD = b"caf\xe9.json"  # latin-1 bytes: not UTF-8


async def test_a_name_that_is_not_utf8_never_stops_the_watch(client: TestClient, sessions: Path) -> None:
    bad = os.fsencode(sessions) + b"/" + BAD
    stop = threading.Event()

    def stranger() -> None:  # something keeps rewriting a file with such a name
        n = 0
        while not stop.is_set():
            n += 1
            with open(bad, "wb") as fh:
                fh.write(json.dumps(session_doc("latin:name", messages=n % 3)).encode())
            time.sleep(0.005)

    writer = threading.Thread(target=stranger)
    writer.start()
    unhealthy, lags = 0, []
    try:
        for i in range(25):
            write_atomic(sessions, f"good:{i}")
            started = time.monotonic()
            while f"good:{i}" not in store_of(client).index:
                unhealthy += (await client.get("/health")).status != 200
                await asyncio.sleep(0.005)
                assert time.monotonic() - started < 2, f"good:{i} not visible"
            lags.append(time.monotonic() - started)
            unhealthy += (await client.get("/health")).status != 200
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        writer.join()
    print(f"\nwrites visible after p50 {sorted(lags)[len(lags) // 2] * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms")
    assert unhealthy == 0
    assert max(lags) < 1.0
    name = os.fsdecode(BAD)
    await eventually(lambda: name in store_of(client).index.invalid)
    assert "not valid UTF-8" in store_of(client).index.invalid[name].reason
    listing = await (await client.get("/api/v1/sessions", headers=AUTH)).json()
    assert listing["count"] == 25 and "latin:name" not in listing["sessions"]


@pytest.mark.slow
def test_a_name_that_is_not_utf8_does_not_break_the_snapshot_or_the_stop(workspace: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with open(os.fsencode(workspace / "sessions") + b"/" + BAD, "wb") as fh:
        fh.write(json.dumps(session_doc("latin:name")).encode())
    write_atomic(workspace / "sessions", "fine:1")
    with Daemon(workspace, env={"SESSIOND_STATE_DIR": str(state)}) as d:
        d.wait_ready()
        assert json.loads(d.get("/api/v1/sessions")[1])["sessions"] == ["fine:1"]
        assert d.stop() == 0, d.output()
        assert "not valid UTF-8" in d.output()
    columns = snapshot.load(state / "index.snapshot", str(workspace / "sessions"))
    assert columns is not None and columns.names == ["fine_1.json"]

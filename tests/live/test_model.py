"""Model-based: random writes, rewrites, deletes and API deletes; after each step settles, the API equals the disk.

The daemon runs on its own event loop in a thread (hypothesis drives steps
synchronously) and is asked over real HTTP. The model is a plain dict of what
each file name holds; file names and keys are drawn independently, so keys
collide across files and the newest `updated_at` must win.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from sessiond import config
from sessiond.app import create_app
from sessiond.core.index import InvalidFile, SessionRecord
from sessiond.live import store as store_mod
from sessiond.web.appkeys import STORE, WATCHER
from tests.support import TOKEN, session_doc

NAMES = [f"s{i}.json" for i in range(3)]
KEYS = ["alpha", "beta:1", "gamma/x y@d"]
SETTLE_TIMEOUT = 2.0
names, keys, counts = st.sampled_from(NAMES), st.sampled_from(KEYS), st.integers(0, 4)


class LiveDaemon:
    """The real app on 127.0.0.1, served from an event loop in a background thread."""

    def __init__(self, workspace: Path) -> None:
        values = {
            "workspace": str(workspace),
            "token": TOKEN,
            "rate_limit_per_ip": 0,
            "rate_limit_per_token": 0,
            "debounce_ms": 10,
        }
        self.app = create_app(config.validate(values, env={}))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-daemon")
        self.thread.start()
        self.runner = web.AppRunner(self.app)
        self.port = self._call(self._start())
        self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    async def _start(self) -> int:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        await asyncio.wait_for(self.app[WATCHER].ready.wait(), 10)
        return int(self.runner.addresses[0][1])

    def request(self, method: str, path: str) -> tuple[int, Any]:
        self.http.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
        resp = self.http.getresponse()
        return resp.status, json.loads(resp.read())

    def close(self) -> None:
        self.http.close()
        self._call(self.runner.cleanup())
        self._call(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class DiskAndApi(RuleBasedStateMachine):
    """The disk is changed the ways the agent, editors and clients change it; the API must follow."""

    def __init__(self) -> None:
        super().__init__()
        self.workspace = Path(tempfile.mkdtemp(prefix="sessiond-model-"))
        self.folder = self.workspace / "sessions"
        self.folder.mkdir()
        self.daemon = LiveDaemon(self.workspace)
        self.files: dict[str, tuple[str, int, float] | None] = {}  # name -> (key, messages, updated_at); None: invalid
        self.clock = 1_700_000_000.0

    def teardown(self) -> None:
        self.daemon.close()
        shutil.rmtree(self.workspace)

    def _doc(self, key: str, count: int) -> bytes:
        self.clock += 1  # every write is newer than the last, so collisions have one right answer
        return orjson.dumps(session_doc(key, messages=count, updated=self.clock))

    @rule(name=names, key=keys, count=counts)
    def atomic_write(self, name: str, key: str, count: int) -> None:
        tmp = self.folder / (name[:-5] + ".tmp")
        tmp.write_bytes(self._doc(key, count))
        os.replace(tmp, self.folder / name)
        self.files[name] = (key, count, self.clock)

    @rule(name=names, key=keys, count=counts, cut=st.integers(1, 40))
    def in_place_write(self, name: str, key: str, count: int, cut: int) -> None:
        data = self._doc(key, count)
        with (self.folder / name).open("wb") as fh:  # two chunks, as an editor or a restore might
            fh.write(data[:cut])
            fh.flush()
            fh.write(data[cut:])
        self.files[name] = (key, count, self.clock)

    @rule(name=names)
    def write_garbage(self, name: str) -> None:
        (self.folder / name).write_bytes(b'{"key": "half-writ')
        self.files[name] = None

    @rule(name=names)
    def remove_file(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)
        self.files.pop(name, None)

    @rule(name=names)
    def stray_tmp_file(self, name: str) -> None:
        (self.folder / (name + ".tmp")).write_bytes(self._doc("tmp-never-a-session", 1))

    @rule(key=keys)
    def api_delete(self, key: str) -> None:
        claimants = [name for name, held in self.files.items() if held and held[0] == key]
        status, body = self.daemon.request("DELETE", "/api/v1/sessions/" + quote(key, safe=""))
        if claimants:
            assert (status, body) == (200, {"deleted": True, "key": key})
            assert not any((self.folder / name).exists() for name in claimants)
            assert self.daemon.request("GET", "/api/v1/sessions/" + quote(key, safe=""))[0] == 404  # at once
        else:
            assert (status, body) == (404, {"detail": "Session not found"})
        for name in claimants:
            del self.files[name]

    def expected(self) -> dict[str, int]:
        best: dict[str, tuple[tuple[float, str], int]] = {}
        for name, held in self.files.items():
            if held is not None:
                key, count, updated = held
                if key not in best or (updated, name) > best[key][0]:
                    best[key] = ((updated, name), count)
        return {key: count for key, (_, count) in best.items()}

    def answered(self) -> dict[str, int]:
        _, listing = self.daemon.request("GET", "/api/v1/sessions")
        out = {}
        for key in listing["sessions"]:
            status, body = self.daemon.request("GET", "/api/v1/sessions/" + quote(key, safe=""))
            out[key] = body["message_count"] if status == 200 else -1
        return out

    def settled(self) -> bool:
        # Per file, not just per key: a second file claiming a key may not change any
        # answer, yet a DELETE right after must know of it to remove it.
        index = self.daemon.app[STORE].index
        for name in NAMES:
            held, state = self.files.get(name, "absent"), index.file_state(name)
            if held == "absent":
                ok = state is None
            elif held is None:
                ok = isinstance(state, InvalidFile)
            else:
                ok = isinstance(state, SessionRecord) and (state.key, state.message_count, state.updated_at) == held
            if not ok:
                return False
        return True

    @invariant()
    def api_equals_disk_once_settled(self) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not self.settled():
            assert time.monotonic() < deadline, f"the index did not learn of {self.files} within {SETTLE_TIMEOUT}s"
            time.sleep(0.01)
        assert self.answered() == self.expected()


@pytest.mark.slow  # a 30-40 s stateful hypothesis run against the daemon: make test runs it, test-quick does not
def test_api_follows_any_mix_of_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Garbage is re-read over 0.75 s before it counts as invalid; a tenth of that keeps
    # the same sequence of states and lets the machine take ten times the steps.
    monkeypatch.setattr(store_mod, "RETRY_DELAYS", (0.005, 0.02, 0.05))
    run_state_machine_as_test(
        DiskAndApi,
        settings=settings(
            max_examples=100,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )

"""GET /api/v1/stats: the pure aggregates, and the endpoint kept in step with a real watched folder."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sessiond.core.index import FileStat, SessionRecord
from sessiond.core.stats import DAY, SessionStats, bucket_bounds, bucket_of, channel_of, day_of
from sessiond.web.appkeys import STATS
from tests.support import AUTH, eventually, store_of, write_atomic

NOW = 1_764_000_000.0  # 2025-11-24T16:00:00Z: every test below pins "now" to this
TODAY = int(NOW // DAY)


def record(key: str, messages: int = 1, created: float = NOW, updated: float | None = None, size: int = 100) -> SessionRecord:
    return SessionRecord(key, key + ".json", messages, created, created if updated is None else updated, FileStat(size, 1, 1, 1))


def full_count(records: Iterable[SessionRecord]) -> dict[str, Any]:
    return SessionStats(records).summary(NOW)


def test_channel_is_the_key_up_to_its_first_colon() -> None:
    assert channel_of("telegram:123") == "telegram"
    assert channel_of("user:alice:x") == "user"
    assert channel_of(":odd") == ""
    assert channel_of("no-colon") == ""


def test_days_and_buckets_tolerate_any_number_the_agent_may_write() -> None:
    assert day_of(NOW) == TODAY and day_of(10**30) == 10**30 // DAY
    assert day_of(float("nan")) is None and day_of(float("inf")) is None and day_of(float("-inf")) is None
    assert [bucket_of(n) for n in (0, 1, 2, 3, 4, 7, 8)] == [0, 1, 2, 2, 3, 3, 4]
    assert [bucket_bounds(b) for b in range(4)] == [(0, 0), (1, 1), (2, 3), (4, 7)]


def test_summary_counts_channels_days_message_buckets_and_bytes() -> None:
    stats = SessionStats(
        [
            record("telegram:1", messages=0, created=NOW - 2 * DAY, updated=NOW, size=10),
            record("telegram:2", messages=3, created=NOW - 2 * DAY, updated=NOW - DAY, size=20),
            record("slack:1", messages=8, created=NOW - 40 * DAY, updated=NOW, size=30),
            record("plain", messages=1, created=float("nan"), updated=NOW, size=40),
        ]
    )
    body = stats.summary(NOW)
    assert body["sessions"] == 4 and body["bytes"] == 100
    assert body["channels"] == [
        {"channel": "telegram", "sessions": 2},
        {"channel": "", "sessions": 1},
        {"channel": "slack", "sessions": 1},
    ]
    assert body["other_channels"] == {"channels": 0, "sessions": 0}
    days = body["days"]
    assert len(days) == 30 and days[-1]["date"] == "2025-11-24" and days[-1]["start"] == TODAY * DAY
    assert [(d["created"], d["updated"]) for d in days[-3:]] == [(2, 0), (0, 1), (0, 3)]
    assert sum(d["created"] for d in days) == 2  # 40 days ago and NaN fall outside the window
    assert body["messages"] == [
        {"min": 0, "max": 0, "sessions": 1},
        {"min": 1, "max": 1, "sessions": 1},
        {"min": 2, "max": 3, "sessions": 1},
        {"min": 4, "max": 7, "sessions": 0},
        {"min": 8, "max": 15, "sessions": 1},
    ]


def test_only_the_largest_channels_are_listed_and_the_rest_summed() -> None:
    records = [record(f"c{c:03d}:{i}") for c in range(60) for i in range(c + 1)]
    body = full_count(records)
    assert [c["channel"] for c in body["channels"][:2]] == ["c059", "c058"] and len(body["channels"]) == 50
    assert body["other_channels"] == {"channels": 10, "sessions": sum(range(1, 11))}


def test_replace_counts_the_new_record_in_place_of_the_one_it_replaced() -> None:
    before = record("a:1", messages=2, created=NOW - DAY, size=10)
    after = record("a:1", messages=9, created=NOW - DAY, updated=NOW, size=50)
    other = record("b:1", messages=1)
    stats = SessionStats([before, other])
    stats.replace(before, after)
    assert stats.summary(NOW) == full_count([after, other])
    stats.replace(after, None)
    assert stats.summary(NOW) == full_count([other]) and len(stats) == 1
    stats.replace(other, None)
    assert stats.summary(NOW) == full_count([]) and stats.channels == {} and stats.created == {}
    stats.replace(None, before)
    assert stats.summary(NOW) == full_count([before])


async def stats_of(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/api/v1/stats", headers=AUTH)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_endpoint_reports_the_index_invalid_files_collisions_and_trash(start_client: Any, sessions: Path) -> None:
    write_atomic(sessions, "telegram:1", messages=2)
    write_atomic(sessions, "telegram:2", messages=5)
    write_atomic(sessions, "telegram:2", name="copy.json", messages=5)  # a second file claiming the key
    (sessions / "broken.json").write_text("{not json")
    client = await start_client(trash_days=3)
    assert (await client.get("/api/v1/stats")).status == 401
    body = await stats_of(client)
    assert body["sessions"] == 2 and body["channels"] == [{"channel": "telegram", "sessions": 2}]
    assert body["invalid_files"] == 1 and body["collisions"] == 1
    assert body["watcher"] == "ready" and body["problem"] is None
    assert body["trash"] == {"enabled": True, "days": 3.0}
    served = [store_of(client).index.get(k) for k in ("telegram:1", "telegram:2")]
    assert body["bytes"] == sum(r.stat.size for r in served)


async def test_figures_follow_changes_without_another_full_pass(client: TestClient, sessions: Path) -> None:
    index = store_of(client).index
    write_atomic(sessions, "a:1", messages=1)
    await eventually(lambda: "a:1" in index)
    await stats_of(client)
    keeper = client.server.app[STATS]  # type: ignore[union-attr]
    first_pass = keeper._pass  # a second full pass would replace it
    assert first_pass is not None
    steps = [
        lambda: write_atomic(sessions, "a:2", messages=4),
        lambda: write_atomic(sessions, "a:1", messages=30, created=1_600_000_000.0),
        lambda: write_atomic(sessions, "b:1", name="a_2.json", messages=2),  # a file changes key
        (sessions / "a_1.json").unlink,
    ]
    for step in steps:
        version = index.version
        step()
        await eventually(lambda version=version: index.version != version)  # type: ignore[misc]
        await asyncio.sleep(0.05)  # let the rest of the batch land
        body = await stats_of(client)
        fresh = _fresh(client)
        assert {name: body[name] for name in fresh} == fresh
    assert (await client.delete("/api/v1/sessions/b:1", headers=AUTH)).status == 200
    body = await stats_of(client)
    assert body["sessions"] == 0 and body["channels"] == [] and body["bytes"] == 0
    assert keeper._pass is first_pass


def _fresh(client: TestClient) -> dict[str, Any]:
    """What a full pass over the index gives now."""
    return SessionStats(store_of(client).index.records()).summary(time.time())


async def test_figures_stay_true_when_the_sessions_folder_goes_and_comes_back(
    client: TestClient, sessions: Path, tmp_path: Path
) -> None:
    for i in range(5):
        write_atomic(sessions, f"x:{i}", messages=i)
    index = store_of(client).index
    await eventually(lambda: len(index) == 5)
    assert (await stats_of(client))["sessions"] == 5
    first_pass = client.server.app[STATS]._pass  # type: ignore[union-attr]
    shutil.move(str(sessions), str(tmp_path / "away"))
    await eventually(lambda: len(index) == 0, timeout=5)
    (tmp_path / "away" / "x_0.json").unlink()
    shutil.move(str(tmp_path / "away"), str(sessions))
    await eventually(lambda: len(index) == 4, timeout=5)
    body = await stats_of(client)
    assert body["sessions"] == 4 and body["channels"] == [{"channel": "x", "sessions": 4}]
    assert client.server.app[STATS]._pass is first_pass  # type: ignore[union-attr]


async def test_stats_answer_503_with_retry_after_until_indexed(
    aiohttp_client: Any, make_settings: Any, held_first_scan: asyncio.Event
) -> None:
    from sessiond.app import create_app
    from sessiond.web.appkeys import WATCHER

    app = create_app(make_settings())
    client = await aiohttp_client(app)
    resp = await client.get("/api/v1/stats", headers=AUTH)
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert "starting" in (await resp.json())["detail"]
    held_first_scan.set()
    await asyncio.wait_for(app[WATCHER].ready.wait(), 5)
    assert (await stats_of(client))["sessions"] == 0


async def test_the_full_pass_gives_the_loop_back_and_misses_no_change_made_during_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sessiond.live import stats as stats_mod
    from sessiond.live.stats import StatsKeeper
    from sessiond.live.store import SessionStore

    store = SessionStore(tmp_path, 1 << 20)
    store.index.load([(f"k{i:03d}.json", record(f"k{i:03d}", messages=i % 5)) for i in range(100)])
    keeper = StatsKeeper(store)
    monkeypatch.setattr(stats_mod, "BUILD_CHUNK", 10)  # ten steps instead of one
    steps = 0
    counting = asyncio.ensure_future(keeper.current())
    await asyncio.sleep(0)
    first_pass = keeper._pass
    while not counting.done():
        steps += 1
        # The store changes the index between two steps and announces it, as the watcher does.
        index, n = store.index, steps
        changes = index.set_file(f"k{n * 7:03d}.json", None)  # one already counted or still to come
        changes += index.set_file(f"new{n}.json", record(f"new{n}", messages=50))
        changes += index.set_file(f"k{99 - n:03d}.json", record(f"k{99 - n:03d}", messages=9))
        keeper.on_changes(changes)
        await asyncio.sleep(0)
    assert steps >= 10  # the loop ran in between
    await counting
    figures = await keeper.current()
    assert keeper._pass is first_pass  # no second pass was needed to catch up
    assert figures.summary(NOW) == full_count(store.index.records())


async def test_the_first_pass_right_after_ready_holds_the_loop_for_at_most_a_thousand_records(tmp_path: Path) -> None:
    """At 1M sessions the first pass runs just after ready beside the snapshot's and the
    search index's threads: a step of 10,000 records held the loop for 130-335 ms at 100k
    (asyncio debug), longer than the whole 50 ms a probe waits between requests."""
    from sessiond.live.stats import StatsKeeper
    from sessiond.live.store import SessionStore

    store = SessionStore(tmp_path, 1 << 20)
    store.index.load([(f"k{i:05d}.json", record(f"k{i:05d}")) for i in range(20_000)])
    keeper = StatsKeeper(store)
    counting = asyncio.ensure_future(keeper.current())
    turns = 0
    while not counting.done():
        turns += 1
        await asyncio.sleep(0)
    assert turns >= 20  # the loop came back at least every 1,000 records
    assert (await counting).summary(NOW)["sessions"] == 20_000


async def test_the_endpoint_reads_the_index_only_never_the_disk(
    start_client: Any, sessions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(50):
        write_atomic(sessions, f"c{i % 5}:{i}", messages=i)
    (sessions / "broken.json").write_text("{")
    # No timed stat walk, and no search index reading the files in the background, while the test counts.
    client = await start_client(reconcile_interval=0, search=False)
    index = store_of(client).index
    await eventually(lambda: len(index) == 50 and len(index.invalid) == 1)
    await stats_of(client)  # the full pass is done: what follows is the steady state
    touched: list[str] = []

    def watched(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            touched.append(f"{name}{args[:1]}")
            return real(*args, **kwargs)

        return call

    # Every way into the file system that the daemon's code (and aiofiles, and pathlib) goes
    # through, from any thread: the handler, an executor, a worker.
    for name in ("stat", "lstat", "fstat", "scandir", "listdir", "open", "read"):
        monkeypatch.setattr(os, name, watched(f"os.{name}", getattr(os, name)))
    monkeypatch.setattr(builtins, "open", watched("open", builtins.open))
    for _ in range(20):
        body = await stats_of(client)
    assert body["sessions"] == 50 and body["invalid_files"] == 1
    assert body["bytes"] == sum(r.size for r in index.records())
    assert touched == []


async def test_cancelling_the_first_pass_ends_the_count_and_a_later_request_counts_again(tmp_path: Path) -> None:
    """The stop cancels the first pass; the count it started went on taking the loop in steps
    (its waiters are shielded) while the stop waited, hundreds of ms at 1M."""
    from sessiond.live.stats import StatsKeeper
    from sessiond.live.store import SessionStore

    store = SessionStore(tmp_path, 1 << 20)
    store.index.load([(f"k{i:05d}.json", record(f"k{i:05d}")) for i in range(20_000)])
    keeper = StatsKeeper(store)
    ready = asyncio.Event()
    ready.set()
    first = asyncio.ensure_future(keeper.first_pass(ready))
    for _ in range(3):
        await asyncio.sleep(0)
    counting = keeper._pass
    assert counting is not None and not counting.done()
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    await asyncio.sleep(0)
    assert counting.cancelled()  # ended with the task that started it
    assert (await keeper.current()).summary(NOW)["sessions"] == 20_000  # a request after it counts afresh

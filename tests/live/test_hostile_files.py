"""Hostile files in the sessions folder: none crashes anything, each is reported, none is followed."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest

from sessiond.core import loader
from sessiond.core.index import InvalidFile, SessionRecord
from sessiond.core.loader import json_loads
from tests.support import AUTH, MB, eventually, read_file, session_doc, store_of, write_atomic, write_big_session

# name -> (bytes, the reason the daemon reports)
HOSTILE = {
    "empty.json": (b"", "empty file"),
    "blank.json": (b"  \n\t", "empty file"),
    "truncated.json": (orjson.dumps(session_doc("t:1"))[:-7], "not valid JSON"),
    "latin1.json": ('{"key": "caf\xe9", "messages": []}'.encode("latin-1"), "not valid JSON"),
    "nul.json": (b'{"key": "a\x00", "messages": []}', "not valid JSON"),
    "array.json": (b'[{"key": "x", "messages": []}]', "top level is a JSON list"),
    "null.json": (b"null", "JSON null"),
    "msgs-dict.json": (b'{"key": "m:1", "messages": {"0": {}}}', "'messages' is not a list"),
    "msgs-missing.json": (b'{"key": "m:2"}', "'messages' is not a list"),
    "no-key.json": (b'{"messages": []}', "no string 'key'"),
    "key-number.json": (b'{"key": 7, "messages": []}', "no string 'key'"),
    "long-key.json": (orjson.dumps({"key": "k" * 5000, "messages": []}), "longer than 4096"),
    "deep.json": (b'{"key": "d", "messages": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "not valid JSON"),
    "two-docs.json": (b'{"key": "a", "messages": []} {}', "not valid JSON"),
}


async def test_every_hostile_file_is_reported_and_nothing_breaks(client, sessions: Path) -> None:
    for name, (data, _) in HOSTILE.items():
        (sessions / name).write_bytes(data)
    write_atomic(sessions, "good:1")
    store = store_of(client)
    await eventually(lambda: set(HOSTILE) <= set(store.index.invalid), timeout=3)
    for name, (_, reason) in HOSTILE.items():
        assert reason in store.index.invalid[name].reason, name
    listing = await (await client.get("/api/v1/sessions", headers=AUTH)).json()
    assert listing == {"sessions": ["good:1"], "count": 1}
    health = await client.get("/api/v1/health", headers=AUTH)
    assert health.status == 200 and (await health.json())["invalid_files"] == len(HOSTILE)
    # Fixed in place, each becomes a session.
    for name in HOSTILE:
        write_atomic(sessions, f"fixed:{name}", name=name)
    await eventually(lambda: len(store.index) == len(HOSTILE) + 1, timeout=3)
    assert not store.index.invalid


async def test_odd_but_valid_files(client, sessions: Path) -> None:
    store = store_of(client)
    (sessions / "bom.json").write_bytes(b"\xef\xbb\xbf" + orjson.dumps(session_doc("bom:1")))
    (sessions / "nested.json").write_bytes(b'{"key": "nest:1", "messages": [' + b"[" * 200 + b"]" * 200 + b', {"role": "user"}]}')
    (sessions / "no-times.json").write_bytes(b'{"key": "t:none", "messages": [1]}')
    (sessions / "only-updated.json").write_bytes(b'{"key": "t:upd", "messages": [], "updated_at": 1700000000.5}')
    (sessions / "bad-times.json").write_bytes(b'{"key": "t:bad", "messages": [], "created_at": "x", "updated_at": "later"}')
    write_atomic(sessions, "the:real:key", name="not_the_key_at_all.json")
    os.utime(sessions / "no-times.json", (1_600_000_000, 1_600_000_000))
    keys = {"bom:1", "nest:1", "t:none", "t:upd", "t:bad", "the:real:key"}
    await eventually(lambda: keys <= set(store.index.keys()), timeout=2)
    assert store.index.get("nest:1").message_count == 2
    assert store.index.get("t:none").created_at == store.index.get("t:none").updated_at == 1_600_000_000.0
    assert store.index.get("t:upd").created_at == 1700000000.5
    resp = await client.get("/api/v1/sessions/not_the_key_at_all", headers=AUTH)
    assert resp.status == 404  # the key inside the file wins over its name


async def test_symlinks_are_never_followed(client, sessions: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_bytes(orjson.dumps(session_doc("outside:secret")))
    write_atomic(sessions, "inside:1", name="real.json")
    (sessions / "out.json").symlink_to(outside)
    (sessions / "alias.json").symlink_to(sessions / "real.json")
    (sessions / "dir.json").symlink_to(tmp_path)
    (sessions / "dangling.json").symlink_to(tmp_path / "nothing-here")
    (sessions / "loop.json").symlink_to(sessions / "loop.json")
    store = store_of(client)
    links = {"out.json", "alias.json", "dir.json", "dangling.json", "loop.json"}
    await eventually(lambda: links <= set(store.index.invalid), timeout=2)
    assert all("symlink" in store.index.invalid[n].reason for n in links)
    assert list(store.index.keys()) == ["inside:1"]
    # A DELETE never reaches through a link either.
    assert (await client.delete("/api/v1/sessions/outside:secret", headers=AUTH)).status == 404
    assert outside.exists()


async def test_special_files_and_odd_names(client, sessions: Path) -> None:
    os.mkfifo(sessions / "fifo.json")  # opening it must not block the reader
    (sessions / "folder.json").mkdir()
    write_atomic(sessions, "newline", name="new\nline.json")
    store = store_of(client)
    await eventually(lambda: {"newline"} <= set(store.index.keys()), timeout=3)
    await eventually(lambda: {"fifo.json", "folder.json"} <= set(store.index.invalid), timeout=2)
    resp = await client.delete("/api/v1/sessions/newline", headers=AUTH)
    assert resp.status == 200
    assert not (sessions / "new\nline.json").exists()
    assert (sessions / "fifo.json").exists() and (sessions / "folder.json").is_dir()


def test_size_ceiling_is_reported_without_reading(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_bytes(orjson.dumps(session_doc("big", messages=200)))
    state = read_file(tmp_path, "big.json", 2048)
    assert isinstance(state, InvalidFile) and "max_file_bytes" in state.reason


def test_big_file_is_parsed_in_a_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count = write_big_session(tmp_path / "big.json", 6 * MB)
    calls = []
    real = loader.read_in_child
    monkeypatch.setattr(loader, "read_in_child", lambda *a: calls.append(a) or real(*a))
    state = read_file(tmp_path, "big.json", 256 * MB)
    assert isinstance(state, SessionRecord) and state.message_count == count and state.key == "big:1"
    assert len(calls) == 1
    # A child that dies is a reported file, not a crash.
    monkeypatch.setattr(loader.sys, "executable", shutil.which("false"))
    state = read_file(tmp_path, "big.json", 256 * MB)
    assert isinstance(state, InvalidFile) and "parse worker failed" in state.reason


NESTED_TOO_DEEPLY = "not valid JSON (nested too deeply for Python's json.loads)"


def deep_session(key: str, depth: int, pad: int = 0) -> bytes:
    """A session *depth* levels deep in all, with a *pad*-byte message beside the deep one."""
    filler = b'{"role": "user", "content": "' + b"x" * pad + b'"}, ' if pad else b""
    return b'{"key": "' + key.encode() + b'", "messages": [' + filler + b"[" * (depth - 2) + b"]" * (depth - 2) + b"]}"


async def test_a_session_nested_deeper_than_json_loads_reads_is_an_invalid_file_not_served(client, sessions: Path) -> None:
    # simdjson reads up to 1,024 levels; the agent's json.loads stops near 990.
    deep = {f"deep{depth}.json": depth for depth in (994, 1000, 1022, 1024)}
    for name, depth in deep.items():
        (sessions / name).write_bytes(deep_session(f"deep:{depth}", depth))
    (sessions / "fine.json").write_bytes(deep_session("deep:950", 950))  # json.loads reads this one
    store = store_of(client)
    await eventually(lambda: set(deep) <= set(store.index.invalid) and "deep:950" in store.index, timeout=3)
    assert all(store.index.invalid[name].reason == NESTED_TOO_DEEPLY for name in deep)
    listing = await (await client.get("/api/v1/sessions?prefix=deep:", headers=AUTH)).json()
    assert listing["sessions"] == ["deep:950"]
    for depth in deep.values():
        assert (await client.get(f"/api/v1/sessions/deep:{depth}", headers=AUTH)).status == 404
    export = await client.get("/api/v1/export?prefix=deep:", headers=AUTH)
    lines = (await export.read()).splitlines()
    # (read as a fresh caller would: pytest's own stack leaves json.loads here too little room)
    assert export.status == 200 and [json_loads(line)["key"] for line in lines] == ["deep:950"]  # type: ignore[index]


async def test_a_deep_utf16_session_that_json_loads_reads_exports_as_one_line(client, sessions: Path) -> None:
    # UTF-16 is written out again through json.loads and json.dumps, each near its depth limit.
    (sessions / "deep16.json").write_bytes(deep_session("deep16:989", 989).decode().encode("utf-16"))
    await eventually(lambda: "deep16:989" in store_of(client).index, timeout=3)
    export = await client.get("/api/v1/export?prefix=deep16:", headers=AUTH)
    (line,) = (await export.read()).splitlines()
    assert export.status == 200 and line == deep_session("deep16:989", 989)  # json.dumps writes it just so


def test_a_big_session_nested_deeper_than_json_loads_reads_is_invalid_in_the_child_too(tmp_path: Path) -> None:
    (tmp_path / "big-deep.json").write_bytes(deep_session("big:deep", 1000, pad=5 * MB))
    (tmp_path / "big-fine.json").write_bytes(deep_session("big:fine", 900, pad=5 * MB))
    state = read_file(tmp_path, "big-deep.json", 256 * MB)
    assert isinstance(state, InvalidFile) and state.reason == NESTED_TOO_DEEPLY, state
    state = read_file(tmp_path, "big-fine.json", 256 * MB)
    assert isinstance(state, SessionRecord) and state.message_count == 2


@asynccontextmanager
async def loop_stall_probe() -> AsyncIterator[list[float]]:
    """Measure the event loop's longest stall (beyond a 1 ms sleep) while the block runs."""
    worst = [0.0]
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            worst[0] = max(worst[0], time.perf_counter() - before - 0.001)

    task = asyncio.create_task(probe())
    try:
        yield worst
    finally:
        stop.set()
        await task


@pytest.mark.slow
async def test_200mb_file_neither_stalls_the_loop_nor_bloats_the_daemon(
    start_client, sessions: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if "slow" not in request.config.option.markexpr:
        pytest.skip("writes 200 MB: run with -m slow")
    client = await start_client()
    store = store_of(client)
    async with loop_stall_probe() as baseline:
        await asyncio.sleep(1)
    staged = tmp_path / "big.json"
    count = await asyncio.to_thread(write_big_session, staged, 200 * MB, "huge:1")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with loop_stall_probe() as stall:
        started = time.monotonic()
        os.rename(staged, sessions / "big.json")
        await eventually(lambda: "huge:1" in store.index, timeout=60)
        took = time.monotonic() - started
        for _ in range(20):  # the API answers meanwhile
            assert (await client.get("/api/v1/sessions", headers=AUTH)).status == 200
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print(
        f"\n200 MB file: indexed in {took:.1f}s; loop max stall {stall[0] * 1000:.1f} ms "
        f"(idle baseline {baseline[0] * 1000:.1f} ms); daemon peak RSS grew {grew_mb:.0f} MB"
    )
    assert store.index.get("huge:1").message_count == count
    assert stall[0] < max(0.25, 3 * baseline[0])
    assert grew_mb < 100


UNREADABLE_PROBE = """
import asyncio, json, sys
from sessiond.core import folder as folder_mod
from sessiond.live import store as store_mod
folder = sys.argv[1]
async def main():
    store = store_mod.SessionStore(folder, 1 << 20)
    store.folder = folder_mod.verify(folder)
    await store.scan()
    drift = await store.reconcile()
    print(json.dumps({"keys": list(store.index.keys()), "invalid": {n: b.reason for n, b in store.index.invalid.items()},
                      "drift": drift, "stale": store_mod._stale(store.folder, store.index.idents_reader())}))
asyncio.run(main())
"""


@pytest.mark.slow
def test_unreadable_file_is_reported_and_not_reread_forever(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop root's file-permission override")
    folder = tmp_path / "sessions"
    folder.mkdir()
    write_atomic(folder, "ok:1")
    locked = write_atomic(folder, "locked:1")
    locked.chmod(0)
    # Root reads everything; without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH it is an ordinary owner.
    cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", UNREADABLE_PROBE, str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[2], timeout=60)
    if proc.returncode != 0 and "setpriv" in proc.stderr:
        pytest.skip(f"cannot drop capabilities here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["keys"] == ["ok:1"]
    assert result["invalid"] == {"locked_1.json": "cannot open (EACCES)"}
    assert result["drift"] == 0 and result["stale"] == []  # reported once, not re-read on every pass


async def test_what_is_remembered_about_bad_files_is_pruned_with_the_files(client, sessions: Path) -> None:
    store = store_of(client)
    write_atomic(sessions, "contested", name="contested.json")
    for i in range(150):  # one key under ever new second names, one bad file under ever new names
        other = write_atomic(sessions, "contested", name=f"rotating-{i}.json")
        bad = sessions / f"bad-{i}.json"
        bad.write_bytes(b"{")
        os.utime(bad, (1e9, 1e9))  # an old file: reported at once, not retried as a write in progress
        await eventually(lambda bad=bad: store.index.collision_count == 1 and bad.name in store.index.invalid)
        other.unlink()
        bad.unlink()
    await eventually(lambda: store.index.collision_count == 0 and not store.index.invalid)
    write_atomic(sessions, "nudge")  # one more change, so the memos are looked at again
    await eventually(lambda: "nudge" in store.index)
    assert len(store._reported_collisions) <= 1
    assert len(store._reported_invalid) <= 64


async def test_invalid_files_are_listed_with_their_reason_size_and_time(start_client, sessions: Path) -> None:
    """GET /api/v1/invalid: what the operator fixes or deletes next, from the index, every
    name shown safely (control characters escaped by JSON; bytes that are not UTF-8 as \\xNN)."""
    (sessions / "broken.json").write_text("{not json")
    os.utime(sessions / "broken.json", (1_700_000_000, 1_700_000_000.5))
    hostile = "evil\n\x1b[31m\u202e<b>.json"
    (sessions / hostile).write_bytes(b"[]")
    fd = os.open(os.fsencode(sessions) + b"/caf\xe9.json", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"{}")
    os.close(fd)
    write_atomic(sessions, "good:1")
    client = await start_client()
    assert (await client.get("/api/v1/invalid")).status == 401
    resp = await client.get("/api/v1/invalid", headers=AUTH)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["count"], body["truncated"]) == (3, False)
    assert [f["name"] for f in body["files"]] == ["broken.json", "caf\\xe9.json", hostile]  # by name
    broken, cafe, evil = body["files"]
    assert broken["reason"].startswith("not valid JSON") and broken["name_is_utf8"] is True
    assert (broken["size"], broken["mtime"]) == (9, 1_700_000_000.5)
    assert cafe["name_is_utf8"] is False and "not valid UTF-8" in cafe["reason"]
    assert evil["reason"] == "top level is a JSON list, not an object"
    assert "good:1" not in json.dumps(body)


async def test_the_invalid_list_is_bounded_by_limit(client, sessions: Path) -> None:
    for i in range(5):
        (sessions / f"bad{i}.json").write_text("[]")
    await eventually(lambda: len(store_of(client).index.invalid) == 5)
    body = await (await client.get("/api/v1/invalid?limit=2", headers=AUTH)).json()
    assert [f["name"] for f in body["files"]] == ["bad0.json", "bad1.json"]
    assert (body["count"], body["truncated"]) == (5, True)
    for wrong in ("0", "x", "100001"):
        resp = await client.get(f"/api/v1/invalid?limit={wrong}", headers=AUTH)
        assert resp.status == 400 and (await resp.json())["parameter"] == "limit"

"""GET /api/v1/export: one file as stored, or NDJSON of a filter, through the real app."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from sessiond.web import files as export_mod
from tests.support import AUTH, eventually, session_doc, store_of, write_atomic


async def test_one_file_as_stored_with_etag(client: TestClient, sessions: Path) -> None:
    path = sessions / "pretty.json"
    stored = orjson.dumps(session_doc("user:alice", messages=3), option=orjson.OPT_INDENT_2)
    path.write_bytes(stored)
    await eventually(lambda: "user:alice" in store_of(client).index)
    resp = await client.get("/api/v1/export", params={"key": "user:alice"}, headers={**AUTH, "X-Request-ID": "exp-1"})
    assert resp.status == 200 and await resp.read() == stored
    assert resp.content_type == "application/json"
    assert resp.headers["X-Request-ID"] == "exp-1" and resp.headers["Cache-Control"] == "no-store"
    assert "pretty.json" in resp.headers["Content-Disposition"]
    etag = resp.headers["ETag"]
    again = await client.get("/api/v1/export", params={"key": "user:alice"}, headers={**AUTH, "If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag and await again.read() == b""
    head = await client.head("/api/v1/export", params={"key": "user:alice"}, headers=AUTH)
    assert head.status == 200 and head.headers["ETag"] == etag
    write_atomic(sessions, "user:alice", name="pretty.json", messages=4)
    await eventually(lambda: store_of(client).index.get("user:alice").message_count == 4)
    changed = await client.get("/api/v1/export", params={"key": "user:alice"}, headers={**AUTH, "If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag


async def test_big_file_is_streamed_in_chunks(client: TestClient, sessions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_mod, "CHUNK", 4096)
    write_atomic(sessions, "big", messages=2000)
    await eventually(lambda: "big" in store_of(client).index)
    size = (sessions / "big.json").stat().st_size
    resp = await client.get("/api/v1/export?key=big", headers=AUTH)
    body, http_chunks = b"", 0
    async for data, end_of_chunk in resp.content.iter_chunks():
        body += data
        http_chunks += end_of_chunk
    assert len(body) == size and orjson.loads(body)["key"] == "big"
    assert http_chunks >= size // 4096  # one HTTP chunk per read: never the whole file at once


async def test_path_comes_from_the_index_never_the_key(client: TestClient, sessions: Path, workspace: Path) -> None:
    (workspace / "secret.json").write_text('{"key": "secret", "messages": []}')
    for key in ("../secret", "../secret.json", "/etc/passwd", "secret"):
        resp = await client.get("/api/v1/export", params={"key": key}, headers=AUTH)
        assert resp.status == 404 and await resp.json() == {"detail": "Session not found"}


async def test_swapped_for_a_symlink_is_not_followed(client: TestClient, sessions: Path, tmp_path: Path) -> None:
    path = write_atomic(sessions, "victim")
    await eventually(lambda: "victim" in store_of(client).index)
    outside = tmp_path / "outside.json"
    outside.write_text('{"key": "victim", "messages": [], "secret": true}')
    # Swapped and asked at once, before the watch reports it: the export's own stat sees the
    # swap and re-reads the name, which the loader opens without following links.
    path.unlink()
    path.symlink_to(outside)
    resp = await client.get("/api/v1/export?key=victim", headers=AUTH)
    assert resp.status == 404
    assert b"secret" not in await resp.read()


async def test_ndjson_of_a_filter(client: TestClient, sessions: Path) -> None:
    for i in range(40):
        (sessions / f"t{i:02}.json").write_bytes(
            orjson.dumps(session_doc(f"t:{i:02}", messages=i % 3, created=1000.0 + i), option=orjson.OPT_INDENT_2)
        )
    write_atomic(sessions, "other")
    await eventually(lambda: len(store_of(client).index) == 41)
    resp = await client.get("/api/v1/export?prefix=t:&min_messages=1&sort=created_at&order=desc", headers=AUTH)
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    assert resp.headers["X-Request-ID"]
    lines = (await resp.read()).split(b"\n")
    assert lines[-1] == b""
    docs = [orjson.loads(line) for line in lines[:-1]]
    expected = [f"t:{i:02}" for i in reversed(range(40)) if i % 3]
    assert [d["key"] for d in docs] == expected
    assert docs[0]["messages"] == [{"role": "user", "content": "m0"}, {"role": "assistant", "content": "m1"}]
    everything = await client.get("/api/v1/export", headers=AUTH)
    assert len((await everything.read()).splitlines()) == 41


async def test_ndjson_skips_what_vanished_meanwhile(client: TestClient, sessions: Path) -> None:
    for key in ("a", "b", "c"):
        write_atomic(sessions, key)
    await eventually(lambda: len(store_of(client).index) == 3)
    async with store_of(client).lock:
        (sessions / "b.json").unlink()
        resp = await client.get("/api/v1/export", headers=AUTH)
        keys = [orjson.loads(line)["key"] for line in (await resp.read()).splitlines()]
    assert keys == ["a", "c"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("key=a&prefix=a", "key"),
        ("limit=3", "limit"),
        ("include=meta", "include"),
        ("sort=size", "sort"),
        ("updated_before=later", "updated_before"),
        ("key=a&key=b", "key"),
    ],
)
async def test_bad_parameters(client: TestClient, query: str, param: str) -> None:
    resp = await client.get("/api/v1/export?" + query, headers=AUTH)
    assert resp.status == 400 and (await resp.json())["parameter"] == param


async def test_client_leaving_mid_export_is_quiet(client: TestClient, sessions: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(200):
        write_atomic(sessions, f"k{i}", messages=200)
    await eventually(lambda: len(store_of(client).index) == 200)
    resp = await client.get("/api/v1/export", headers=AUTH)
    await resp.content.read(1000)
    resp.close()
    await asyncio.sleep(0.3)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_a_file_growing_while_exported_is_cut_never_read_past_its_size(
    client: TestClient, sessions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_mod, "CHUNK", 4096)
    path = write_atomic(sessions, "growing", messages=3000)
    await eventually(lambda: "growing" in store_of(client).index)
    size = path.stat().st_size
    resp = await client.get("/api/v1/export?key=growing", headers=AUTH)
    first = await resp.content.read(4096)  # the stream has begun: the file is open
    with path.open("ab") as fh:  # a writer appends in place meanwhile
        fh.write(b" " * (1 << 20))
    received = len(first)
    with pytest.raises(aiohttp.ClientPayloadError):  # cut: a changed file is not passed off as whole
        async for chunk in resp.content.iter_any():
            received += len(chunk)
    assert received <= size  # never a byte past the size it had when opened


async def test_a_deeply_nested_session_exports_whole(client: TestClient, sessions: Path) -> None:
    depth = 255
    nested = (
        b'{"key": "deep:1", "messages": ['
        + b"[" * depth
        + b"1"
        + b"]" * depth
        + b', {"role": "user", "n": NaN, "wei": 100000000000000000000000000000}]}'
    )
    (sessions / "deep.json").write_bytes(nested)
    await eventually(lambda: "deep:1" in store_of(client).index)
    one = await client.get("/api/v1/export?key=deep:1", headers=AUTH)
    assert one.status == 200 and await one.read() == nested
    many = await client.get("/api/v1/export?prefix=deep", headers=AUTH)
    assert many.status == 200
    lines = (await many.read()).splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == json.loads(nested)  # as stored, NaN and all

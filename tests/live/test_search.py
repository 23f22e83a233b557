"""Full-text search through the real app: real files, real watcher, real SQLite.

The guarantee under test: a result is only ever a session the index holds now,
with the text its file holds now.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from sessiond.app import create_app
from sessiond.live.search import SearchKeeper
from sessiond.web.appkeys import RETENTION, SEARCH, STATS, STORE, WATCHER
from tests.support import AUTH, eventually, store_of


def keeper_of(client: TestClient) -> SearchKeeper:
    keeper = client.server.app[SEARCH]  # type: ignore[union-attr]
    assert keeper is not None
    return keeper


async def complete(client: TestClient, sessions: Path | None = None) -> None:
    """Wait until the search index holds every session as it is now; with *sessions*, first
    until the store has seen every file written there (else a keeper with nothing to do yet
    is already complete: the watcher may not have reported the test's writes)."""
    if sessions is not None:
        store = store_of(client)

        def every_file_seen() -> bool:
            return all(store.index.file_state(f.name) is not None for f in sessions.glob("*.json"))

        await eventually(every_file_seen, timeout=10)
    await eventually(lambda: keeper_of(client).complete, timeout=10)


def write(folder: Path, key: str, *texts: str, **kw: Any) -> Path:
    """A session whose messages say *texts* (user, assistant, user, ...)."""
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]
    return _write(folder, key, messages, **kw)


def _write(folder: Path, key: str, messages: list[dict[str, Any]], updated: float = 1_700_000_100.0) -> Path:
    path = folder / (key.replace(":", "_") + ".json")
    tmp = path.with_suffix(".tmp")
    doc = {"key": key, "messages": messages, "summary": None, "created_at": 1_700_000_000.0, "updated_at": updated}
    tmp.write_bytes(orjson.dumps(doc))
    os.replace(tmp, path)
    return path


async def search(client: TestClient, q: str, **params: Any) -> dict[str, Any]:
    resp = await client.get("/api/v1/search", params={"q": q, **params}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def keys(client: TestClient, q: str, **params: Any) -> list[str]:
    return [r["key"] for r in (await search(client, q, **params))["results"]]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


async def test_found_by_word_phrase_prefix_diacritics_and_cjk(start_client: Any, sessions: Path, state: Path) -> None:
    write(sessions, "t:1", "Can I get a refund for my order?", "Our return policy allows it.")
    write(sessions, "t:2", "Le café était fermé", "東京都の天気")
    write(sessions, "t:3", "see src/foo_bar.py line 12", "nothing else")
    client = await start_client(state_dir=str(state))
    await complete(client, sessions)
    body = await search(client, "refund")
    assert body["complete"] is True and body["indexed"] == body["total"] == 3 and body["next_cursor"] is None
    (result,) = body["results"]
    assert result["key"] == "t:1" and result["message_count"] == 2 and result["title"] == "Can I get a refund for my order?"
    assert result["hits"] == [
        {
            "message": 0,
            "role": "user",
            "snippet": [{"text": "Can I get a "}, {"text": "refund", "match": True}, {"text": " for my order?"}],
        }
    ]
    assert await keys(client, '"return policy"') == ["t:1"]
    assert await keys(client, '"policy return"') == []
    assert await keys(client, "polic*") == ["t:1"]
    assert await keys(client, "CAFE etait") == ["t:2"]
    assert await keys(client, "京都") == ["t:2"]
    assert await keys(client, "foo_bar.py") == ["t:3"]
    assert await keys(client, "refund OR cafe") == ["t:1", "t:2"] or await keys(client, "refund OR cafe") == ["t:2", "t:1"]
    assert await keys(client, "refund -policy") == []
    assert oct(os.stat(state / "search.sqlite").st_mode & 0o777) == "0o600"


async def test_one_and_two_letter_prefixes_find_word_starts_with_filters_exclusions_and_deletes(
    start_client: Any, sessions: Path, state: Path
) -> None:
    write(sessions, "t:1", "Kaffee und Käse", "nothing else")
    write(sessions, "t:2", "a kangaroo jumps")
    write(sessions, "u:3", "karma police")
    write(sessions, "t:4", "no such word here: k9 kb")
    gone = write(sessions, "t:5", "kale salad")
    client = await start_client(state_dir=str(state))
    await complete(client, sessions)
    assert sorted(await keys(client, "ka*")) == ["t:1", "t:2", "t:5", "u:3"]
    assert sorted(await keys(client, "k*")) == ["t:1", "t:2", "t:4", "t:5", "u:3"]
    assert sorted(await keys(client, "ka*", prefix="t:")) == ["t:1", "t:2", "t:5"]
    assert sorted(await keys(client, "k* -ka*")) == ["t:4"]
    assert sorted(await keys(client, "ka* -salad -police")) == ["t:1", "t:2"]
    assert await keys(client, "ka* j*") == ["t:2"]
    (hit,) = (await search(client, "kä*", prefix="t:1"))["results"][0]["hits"]
    assert [seg["text"] for seg in hit["snippet"] if seg.get("match")] == ["Kaffee", "Käse"]
    gone.unlink()
    assert sorted(await keys(client, "ka*")) == ["t:1", "t:2", "u:3"]  # at once
    await eventually(lambda: keeper_of(client).rows == 4)
    assert sorted(await keys(client, "ka*")) == ["t:1", "t:2", "u:3"]


async def test_a_session_deleted_by_the_agent_is_never_returned_even_before_the_watch_sees_it(
    client: TestClient, sessions: Path
) -> None:
    path = write(sessions, "a:1", "the secret launch code")
    await complete(client, sessions)
    assert await keys(client, "launch") == ["a:1"]
    path.unlink()
    assert await keys(client, "launch") == []  # at once: the file is read for the snippet, and it is gone
    await eventually(lambda: keeper_of(client).rows == 0)


async def test_a_rewrite_in_place_keeping_size_and_mtime_never_shows_the_old_text(client: TestClient, sessions: Path) -> None:
    path = write(sessions, "a:1", "please refund the order")
    await complete(client, sessions)
    assert await keys(client, "refund") == ["a:1"]
    before = os.stat(path)
    data = path.read_bytes()
    with open(path, "r+b") as f:  # same length, same mtime afterwards: only the ctime tells
        f.write(data.replace(b"refund", b"rebate"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert await keys(client, "refund") == []
    await eventually(lambda: keys(client, "rebate"), timeout=5)  # the index's re-read reaches the search index
    assert await keys(client, "refund") == []


async def test_delete_batch_delete_and_retention_remove_the_text_and_restore_brings_it_back(
    start_client: Any, sessions: Path
) -> None:
    old = time.time() - 90 * 86400
    for i in range(4):
        path = write(sessions, f"s:{i}", f"shared word and marker{i}", updated=old if i == 3 else time.time())
        if i == 3:
            os.utime(path, (old, old))
    client = await start_client(trash_days=7, retention=[{"prefix": "s:", "idle_days": 30}])
    await complete(client, sessions)
    assert sorted(await keys(client, "shared")) == ["s:0", "s:1", "s:2", "s:3"]
    assert (await client.delete("/api/v1/sessions/s:0", headers=AUTH)).status == 200
    assert "s:0" not in await keys(client, "shared")
    resp = await client.post("/api/v1/sessions:batchDelete", json={"keys": ["s:1"]}, headers=AUTH)
    assert resp.status == 200
    assert sorted(await keys(client, "shared")) == ["s:2", "s:3"]
    report = await client.server.app[RETENTION].run_once()  # type: ignore[union-attr]
    assert report.deleted == {"s:": 1}
    assert await keys(client, "shared") == ["s:2"]
    await eventually(lambda: keeper_of(client).rows == 1)
    resp = await client.post("/api/v1/trash:restore", json={"keys": ["s:0"]}, headers=AUTH)
    assert resp.status == 200
    await eventually(lambda: keys(client, "marker0"), timeout=5)


async def test_a_write_is_searchable_within_a_second(client: TestClient, sessions: Path) -> None:
    await complete(client, sessions)
    write(sessions, "w:1", "freshly written words")
    started = time.monotonic()
    await eventually(lambda: keys(client, "freshly"), timeout=1)
    assert time.monotonic() - started < 1


async def test_a_restart_indexes_only_what_changed(start_client: Any, sessions: Path, state: Path) -> None:
    for i in range(5):
        write(sessions, f"r:{i}", f"word{i} common")
    first = await start_client(state_dir=str(state))
    await complete(first)
    assert keeper_of(first).files_read == 5
    await first.close()
    write(sessions, "r:1", "changed common")
    write(sessions, "r:9", "new common")
    (sessions / "r_2.json").unlink()
    second = await start_client(state_dir=str(state))
    await complete(second)
    assert keeper_of(second).files_read == 2  # r:1 and r:9; r:0, r:3, r:4 kept from the file
    assert sorted(await keys(second, "common")) == ["r:0", "r:1", "r:3", "r:4", "r:9"]
    assert await keys(second, "word1") == [] and await keys(second, "word2") == []
    assert keeper_of(second).rows == 5


async def test_the_search_starts_after_the_snapshots_first_save_and_the_overviews_first_pass(
    aiohttp_client: Any, make_settings: Any, sessions: Path, state: Path
) -> None:
    """At 1M those two take the first seconds after ready; the search's plan and build stacked on
    them made the start's longest loop stalls. The search waits for them (at most FIRST_WAIT)."""
    write(sessions, "w:1", "hello there")
    app = create_app(make_settings(state_dir=str(state)))
    async with app[STORE]._snapshot_lock:  # what a first save under way holds
        client = await aiohttp_client(app)
        await asyncio.wait_for(app[WATCHER].ready.wait(), 10)
        await asyncio.wait_for(app[STATS].first_pass_over.wait(), 10)
        await asyncio.sleep(0.5)
        assert not keeper_of(client).opened and not app[STORE].first_save_over.is_set()
    await complete(client)
    assert app[STORE].first_save_over.is_set() and await keys(client, "hello") == ["w:1"]


async def test_the_full_pass_is_read_and_parsed_in_a_worker_process_not_the_daemons(
    start_client: Any, sessions: Path, state: Path
) -> None:
    for i in range(300):  # more than one batch: the worker parses one while the writer thread writes the other
        write(sessions, f"w:{i}", f"unique{i} shared", "an answer")
    client = await start_client(state_dir=str(state))
    await complete(client)
    keeper = keeper_of(client)
    assert keeper.files_read == 300 and keeper.files_read_in_worker == 300
    assert keeper._worker.pids and os.getpid() not in keeper._worker.pids
    assert keeper.batches_written_in_worker == 2  # 256 + 44 files: the worker wrote both into the file itself
    assert keeper.rows == 300  # its counts came back with its answers
    found: list[str] = []
    cursor: dict[str, str] = {}
    while True:
        body = await search(client, "shared", limit=100, **cursor)
        found += [r["key"] for r in body["results"]]
        if body["next_cursor"] is None:
            break
        cursor = {"cursor": body["next_cursor"]}
    assert sorted(found) == sorted(f"w:{i}" for i in range(300))
    assert await keys(client, "unique123") == ["w:123"]
    # A watch batch of a few files is parsed on the writer thread: no round trip.
    write(sessions, "w:1", "rewritten1 shared")
    await eventually(lambda: keys(client, "rewritten1"))
    assert keeper.files_read == 301 and keeper.files_read_in_worker == 300
    assert await keys(client, "unique1") == []


async def test_without_a_state_directory_the_worker_parses_and_the_daemon_writes_the_index_in_memory(
    start_client: Any, sessions: Path
) -> None:
    for i in range(100):
        write(sessions, f"m:{i}", f"unique{i} shared", "an answer")
    client = await start_client()
    await complete(client)
    keeper = keeper_of(client)
    assert keeper.path is None and keeper.files_read_in_worker == 100
    assert keeper.batches_written_in_worker == 0 and keeper.rows == 100
    assert await keys(client, "unique42") == ["m:42"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"not a database at all" * 100),
        lambda p: p.write_bytes(p.read_bytes()[:4096] + b"\x00" * 8192),
        lambda p: (p.unlink(), sqlite3.connect(p).execute("CREATE TABLE other (x)").connection.commit()),
    ],
    ids=["garbage", "truncated", "foreign"],
)
async def test_a_corrupt_or_foreign_index_file_is_built_again(
    start_client: Any, sessions: Path, state: Path, damage: Any
) -> None:
    write(sessions, "c:1", "kept alive")
    first = await start_client(state_dir=str(state))
    await complete(first)
    await first.close()
    damage(state / "search.sqlite")
    second = await start_client(state_dir=str(state))
    await complete(second)
    assert keeper_of(second).rebuilt_because
    assert await keys(second, "alive") == ["c:1"]
    assert keeper_of(second).files_read == 1


HOSTILE = [
    '"',
    "(",
    "NEAR(a b)",
    "*",
    "^a",
    "body:a",
    "a OR",
    "-a",
    "x" * 10_000,
    "a\x00b",
    "%ED%A0%80",
    "{body}: x",
    "'; DROP TABLE docs; --",
]


@pytest.mark.parametrize("q", HOSTILE)
async def test_hostile_queries_get_a_result_or_a_400_with_a_detail(client: TestClient, sessions: Path, q: str) -> None:
    write(sessions, "h:1", "a b body x")
    await complete(client, sessions)
    resp = await client.get("/api/v1/search", params={"q": q}, headers=AUTH)
    assert resp.status in (200, 400)
    body = await resp.json()
    assert "results" in body if resp.status == 200 else body["detail"]


async def test_a_lone_surrogate_in_the_raw_query_string_is_a_result_or_a_400(client: TestClient) -> None:
    await complete(client)
    resp = await client.get("/api/v1/search?q=%ED%A0%80abc", headers=AUTH)
    assert resp.status in (200, 400)
    resp = await client.get("/api/v1/search?q=%00", headers=AUTH)
    assert resp.status == 400 and (await resp.json())["detail"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("", "q"),
        ("q=a&limit=0", "limit"),
        ("q=a&limit=x", "limit"),
        ("q=a&cursor=zzz", "cursor"),
        ("q=a&what=1", "what"),
        ("q=a&q=b", "q"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(client: TestClient, query: str, param: str) -> None:
    resp = await client.get("/api/v1/search?" + query, headers=AUTH)
    assert resp.status == 400 and (await resp.json())["parameter"] == param


async def test_filters_and_role_combine(client: TestClient, sessions: Path) -> None:
    write(sessions, "user:alice:1", "deploy failed", "try deploy again", updated=1_700_000_100.0)
    write(sessions, "user:bob:1", "deploy", updated=1_700_000_200.0)
    write(sessions, "bot:1", "deploy now", "ok", updated=1_700_000_300.0)
    await complete(client, sessions)
    assert sorted(await keys(client, "deploy")) == ["bot:1", "user:alice:1", "user:bob:1"]
    assert sorted(await keys(client, "deploy", prefix="user:")) == ["user:alice:1", "user:bob:1"]
    assert await keys(client, "deploy", prefix="user:", min_messages=2) == ["user:alice:1"]
    assert await keys(client, "deploy", updated_after=1_700_000_150) == ["bot:1", "user:bob:1"] or sorted(
        await keys(client, "deploy", updated_after=1_700_000_150)
    ) == ["bot:1", "user:bob:1"]
    assert await keys(client, "deploy", role="assistant") == ["user:alice:1"]
    (hit,) = (await search(client, "deploy", role="assistant"))["results"][0]["hits"]
    assert hit["message"] == 1 and hit["role"] == "assistant"


async def test_pages_follow_the_cursor_without_repeats(client: TestClient, sessions: Path) -> None:
    for i in range(7):
        write(sessions, f"p:{i}", "page me " + "again " * i, updated=1_700_000_000.0 + i)
    await complete(client, sessions)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = await search(client, "page", **params)
        seen += [r["key"] for r in body["results"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"p:{i}" for i in range(7)] and len(seen) == 7
    first = await search(client, "page", limit=3)
    resp = await client.get("/api/v1/search", params={"q": "again", "cursor": first["next_cursor"]}, headers=AUTH)
    assert resp.status == 400 and (await resp.json())["parameter"] == "cursor"  # a cursor belongs to its query


async def test_search_off_writes_nothing_and_says_so(start_client: Any, sessions: Path, state: Path) -> None:
    write(sessions, "o:1", "private words")
    client = await start_client(state_dir=str(state), search=False)
    resp = await client.get("/api/v1/search", params={"q": "private"}, headers=AUTH)
    assert resp.status == 404 and "search is turned off" in (await resp.json())["detail"]
    await client.close()
    assert not [p for p in state.iterdir() if p.name.startswith("search")]


async def test_while_building_the_answer_says_so(client: TestClient, sessions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await complete(client, sessions)
    gate = hold_writes(monkeypatch)
    write(sessions, "b:1", "building")
    await eventually(lambda: store_of(client).index.get("b:1") is not None)
    body = await search(client, "building")
    assert body["complete"] is False and body["total"] == 1 and body["indexed"] == 0 and body["results"] == []
    assert (await client.get("/api/v1/sessions/b:1", headers=AUTH)).status == 200  # the list and detail never wait
    gate.set()
    await complete(client, sessions)
    body = await search(client, "building")
    assert body["complete"] is True and body["indexed"] == 1 and [r["key"] for r in body["results"]] == ["b:1"]


async def test_a_title_in_detail_and_in_the_list_with_meta(client: TestClient, sessions: Path) -> None:
    write(sessions, "user:alice:1", "  Can I get a refund\nfor order 4711, please? " + "and more " * 20, "sure")
    await complete(client, sessions)
    plain = await (await client.get("/api/v1/sessions/user:alice:1", headers=AUTH)).json()
    assert "title" not in plain  # the seed's shape, unless asked for
    detail = await (await client.get("/api/v1/sessions/user:alice:1?include=title", headers=AUTH)).json()
    assert (
        detail["title"].startswith("Can I get a refund for order 4711, please? and more")
        and len(detail["title"]) <= 80
        and detail["title"].endswith("…")
    )
    listed = await (await client.get("/api/v1/sessions?include=meta", headers=AUTH)).json()
    assert listed["sessions"][0]["title"] == detail["title"]
    (result,) = (await search(client, "refund"))["results"]
    assert result["title"] == detail["title"]


def hold_writes(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Hold every search index write until the returned event is set (only its timing changes)."""
    gate = asyncio.Event()
    original = SearchKeeper._write_now

    async def held(self: SearchKeeper, batch: Any) -> None:
        await gate.wait()
        await original(self, batch)

    monkeypatch.setattr(SearchKeeper, "_write_now", held)
    return gate


def title_trips(keeper: SearchKeeper, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the title lookups the keeper sends to its reader thread from now on (filled as they go)."""
    trips: list[int] = []
    lookup = keeper._reader_db.titles

    def counted(names: Any) -> Any:
        trips.append(len(names))
        return lookup(names)

    monkeypatch.setattr(keeper._reader_db, "titles", counted)
    return trips


async def test_a_page_listed_again_takes_its_titles_from_memory_and_a_rewrite_shows_its_new_title(
    start_client: Any, sessions: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        write(sessions, f"p:{i}", f"first question {i}", "answer", updated=1_700_000_100.0 + i)
    client = await start_client(state_dir=str(state))  # the reader's own connection (in memory, the writer's is shared)
    await complete(client, sessions)
    keeper = keeper_of(client)
    trips = title_trips(keeper, monkeypatch)

    async def titles() -> dict[str, str]:
        body = await (await client.get("/api/v1/sessions?include=meta", headers=AUTH)).json()
        return {s["key"]: s["title"] for s in body["sessions"]}

    first = await titles()
    assert first == {f"p:{i}": f"first question {i}" for i in range(5)} and trips == [5]
    assert await titles() == first and trips == [5]  # the page's titles, asked again: no trip to the reader thread
    write(sessions, "p:3", "a new question", "answer", updated=1_700_000_200.0)
    await eventually(lambda: keys(client, "new"))
    assert (await titles())["p:3"] == "a new question" and trips == [5, 1]  # only the changed file is looked up


async def test_a_page_listed_while_its_sessions_wait_to_be_indexed_makes_one_trip_then_shows_their_titles(
    start_client: Any, sessions: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page's list, polled during a build that has not reached its sessions yet (the list is
    # in key order, the build newest first): one trip to the reader thread, not one per request.
    client = await start_client(state_dir=str(state))
    await complete(client)
    keeper = keeper_of(client)
    trips = title_trips(keeper, monkeypatch)
    gate = hold_writes(monkeypatch)
    for i in range(3):
        write(sessions, f"q:{i}", f"question {i}", "answer")
    await eventually(lambda: all(store_of(client).index.get(f"q:{i}") is not None for i in range(3)))

    async def titles() -> dict[str, str | None]:
        body = await (await client.get("/api/v1/sessions?include=meta", headers=AUTH)).json()
        return {s["key"]: s["title"] for s in body["sessions"]}

    assert await titles() == {f"q:{i}": None for i in range(3)} and trips == [3]
    assert await titles() == {f"q:{i}": None for i in range(3)} and trips == [3]
    gate.set()
    await complete(client, sessions)
    assert await titles() == {f"q:{i}": f"question {i}" for i in range(3)} and trips == [3, 3]


async def test_titles_of_sessions_the_full_pass_has_not_written_yet_make_no_trip_to_the_reader_thread(
    start_client: Any, sessions: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the index is built, a detail or the page's list asks for titles the build has not written
    # yet (most of them): the keeper knows, and the reader thread's hop back to the busy loop is saved.
    for i in range(3):
        write(sessions, f"t:{i}", f"question {i}", "answer")
    gate = hold_writes(monkeypatch)
    client = await start_client(state_dir=str(state))
    keeper = keeper_of(client)
    await eventually(lambda: keeper.opened and not keeper._planning and keeper._busy == 3)
    trips = title_trips(keeper, monkeypatch)

    async def titles() -> dict[str, str | None]:
        body = await (await client.get("/api/v1/sessions?include=meta", headers=AUTH)).json()
        return {s["key"]: s["title"] for s in body["sessions"]}

    asked: list[str] = []  # what the full pass's set of files to write was asked
    unwritten = keeper._unwritten

    class Asked:
        def __contains__(self, name: object) -> bool:
            asked.append(str(name))
            return name in unwritten

        def discard(self, name: str) -> None:
            unwritten.discard(name)

    keeper._unwritten = Asked()  # type: ignore[assignment]
    assert await titles() == {f"t:{i}": None for i in range(3)} and trips == []
    assert sorted(asked) == [f"t_{i}.json" for i in range(3)]
    # Asked again (the page polled while the build goes on): remembered until a batch writes them, so
    # not even the set is asked (a bisection over a million names each, in Python, on the loop).
    assert await titles() == {f"t:{i}": None for i in range(3)} and trips == [] and len(asked) == 3
    detail = await (await client.get("/api/v1/sessions/t:1?include=title", headers=AUTH)).json()
    assert "title" not in detail or detail["title"] is None
    assert trips == [] and len(asked) == 3
    gate.set()
    await complete(client, sessions)
    assert await titles() == {f"t:{i}": f"question {i}" for i in range(3)} and trips == [3]


async def test_contains_finds_any_part_of_a_key_in_the_list_and_in_search(client: TestClient, sessions: Path) -> None:
    for key in ("user:alice:1", "user:bob:1", "team:alice-dev", "alicorn"):
        write(sessions, key, "hello world")
    await complete(client, sessions)
    listed = await (await client.get("/api/v1/sessions?contains=alice", headers=AUTH)).json()
    assert listed == {"sessions": ["team:alice-dev", "user:alice:1"], "count": 2, "next_cursor": None}
    listed = await (await client.get("/api/v1/sessions?contains=alice&prefix=user:", headers=AUTH)).json()
    assert listed["sessions"] == ["user:alice:1"]
    assert sorted(await keys(client, "hello", contains="alice")) == ["team:alice-dev", "user:alice:1"]
    assert (await (await client.get("/api/v1/sessions?contains=ALICE", headers=AUTH)).json())["count"] == 0


async def test_api_health_says_whether_search_is_on_and_how_far_the_index_is(start_client: Any, sessions: Path) -> None:
    """The page shows its search box only when search is on, and learns that from /api/v1/health."""
    write(sessions, "h:1", "health words")
    client = await start_client()
    await complete(client)
    body = await (await client.get("/api/v1/health", headers=AUTH)).json()
    assert body["search"] == {"enabled": True, "complete": True, "indexed": 1, "total": 1}
    await client.close()
    client = await start_client(search=False)
    body = await (await client.get("/api/v1/health", headers=AUTH)).json()
    assert body["search"] == {"enabled": False}


async def test_progress_does_not_say_all_indexed_while_the_first_pass_is_planned(
    start_client: Any, sessions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(sessions, "p:1", "planned words")
    write(sessions, "p:2", "planned words")
    gate = asyncio.Event()
    original = SearchKeeper._plan

    async def held(self: SearchKeeper) -> None:
        await gate.wait()
        await original(self)

    monkeypatch.setattr(SearchKeeper, "_plan", held)
    client = await start_client()
    await eventually(lambda: keeper_of(client).opened)
    body = await search(client, "planned")
    assert body["complete"] is False and body["total"] == 2 and body["indexed"] == 0
    gate.set()
    await complete(client)
    body = await search(client, "planned")
    assert body["complete"] is True and body["indexed"] == 2 and len(body["results"]) == 2


async def test_bm25_ranks_a_window_that_holds_every_match_and_recency_a_full_one(
    client: TestClient, sessions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bm25's cost grows with every session holding the words (its IDF walks them all): a full window goes newest first."""
    write(sessions, "r:many", "refund " * 8, updated=1_700_000_000.0)  # the most about refunds, the oldest
    write(sessions, "r:one", "refund once among many other words here", updated=1_700_000_001.0)
    await eventually(lambda: store_of(client).index.get("r:one") is not None and store_of(client).index.get("r:many") is not None)
    await complete(client)
    assert await keys(client, "refund") == ["r:many", "r:one"]  # every match in the window: bm25
    monkeypatch.setattr("sessiond.live.search.WINDOW", 2)
    write(sessions, "r:new", "a refund, and more words to make it long and plain", updated=1_700_000_002.0)
    await eventually(lambda: store_of(client).index.get("r:new") is not None)
    await complete(client)
    first = await search(client, "refund", limit=10)
    assert [r["key"] for r in first["results"]] == ["r:new", "r:one"]  # a full window: newest first
    assert all(r["score"] == 0 for r in first["results"])
    rest = await search(client, "refund", cursor=first["next_cursor"])
    assert [r["key"] for r in rest["results"]] == ["r:many"]


def drained(todo: Any) -> list[str]:
    """A plan's files in the order of its list, oldest first (the full pass pops from the end)."""
    popped = [todo.pop() for _ in range(len(todo))]
    assert len(todo) == 0
    return popped[::-1]


def test_the_plan_orders_a_build_newest_hour_first_and_by_name_within_an_hour() -> None:
    import random

    from sessiond.core.index import FileVersions, SessionRecord
    from sessiond.live import search as search_mod

    rng = random.Random(7)
    records = [
        # Many ties within an hour (the order of ties counts), a time before 1970 and one far ahead.
        SessionRecord(f"k{i}", f"k{i}.json", 1, 1.0, float(rng.randrange(-3600, 50 * 3600)) + rng.random(), i)
        for i in range(3 * search_mod.PLAN_SLICE + 17)
    ]
    records[5] = SessionRecord("k5", "k5.json", 1, 1.0, 1e300, 5)
    records.sort(key=lambda r: r.name)  # the index gives its files in name order
    expected = [r.name for r in sorted(records, key=lambda r: r.updated_at // 3600)]  # stable: by name within an hour
    assert expected[-1] == "k5.json" and len({r.updated_at // 3600 for r in records}) == 52
    files = FileVersions([r.name for r in records], lambda i: records[i].updated_at, lambda i: records[i].ident)
    todo, marks = search_mod._differences(files, [])
    assert drained(todo) == expected and marks == bytearray(b"\x01") * len(records)
    todo, unwritten = search_mod._plan_of(lambda: files, lambda: [[]])
    assert drained(todo) == expected and all(name in unwritten for name in expected) and "k9.json.x" not in unwritten
    unwritten.discard("k9.json")
    assert "k9.json" not in unwritten and "k8.json" in unwritten
    # Against an index that holds some, page by page: what changed, oldest first, then what is gone.
    known = {r.name: r.ident for r in records[::2]} | {records[1].name: -1, "gone.json": 5, "a-gone.json": 6}
    pages = [list(known.items())[i : i + 1000] for i in range(0, len(known), 1000)]
    changed = [r.name for r in sorted(records[1::2], key=lambda r: r.updated_at // 3600)]
    todo, marks = search_mod._differences(files, pages)
    assert drained(todo) == [*changed, "gone.json", "a-gone.json"]
    assert [r.name for r, mark in zip(records, marks, strict=True) if mark] == [r.name for r in records[1::2]]

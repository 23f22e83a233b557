"""GET /api/v1/sessions with query parameters, through the real app."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.support import AUTH, eventually, store_of, write_atomic

DATA = [  # key, created, updated, messages
    ("telegram:1", 100.0, 500.0, 3),
    ("telegram:2", 200.0, 400.0, 0),
    ("slack:a", 300.0, 300.0, 7),
    ("cli:default", 400.0, 200.0, 2),
]


@pytest.fixture
async def filled(client: TestClient, sessions: Path) -> TestClient:
    for key, created, updated, messages in DATA:
        write_atomic(sessions, key, created=created, updated=updated, messages=messages)
    await eventually(lambda: len(store_of(client).index) == len(DATA))
    return client


async def get(client: TestClient, query: str) -> tuple[int, dict]:
    resp = await client.get("/api/v1/sessions?" + query, headers=AUTH)
    return resp.status, await resp.json()


async def test_no_parameters_is_the_cached_body_byte_for_byte(filled: TestClient) -> None:
    cached = store_of(filled).index.list_body()
    for path in ("/api/v1/sessions", "/api/v1/sessions?", "/api/v1/sessions?_=12345&foo"):
        resp = await filled.get(path, headers=AUTH)
        assert resp.status == 200 and await resp.read() == cached
    assert orjson.loads(cached) == {"sessions": sorted(k for k, *_ in DATA), "count": 4}


async def test_filters_sort_and_count(filled: TestClient) -> None:
    status, body = await get(filled, "prefix=telegram:")
    assert status == 200
    assert body == {"sessions": ["telegram:1", "telegram:2"], "count": 2, "next_cursor": None}
    _, body = await get(filled, "updated_before=450&min_messages=1&sort=updated_at&order=desc")
    assert body["sessions"] == ["slack:a", "cli:default"]
    _, body = await get(filled, "created_after=150&created_before=350")
    assert body["sessions"] == ["slack:a", "telegram:2"]
    _, body = await get(filled, "sort=message_count&max_messages=3")
    assert body["sessions"] == ["telegram:2", "cli:default", "telegram:1"]


async def test_include_meta(filled: TestClient) -> None:
    _, body = await get(filled, "prefix=slack&include=meta")
    (item,) = body["sessions"]
    assert item["key"] == "slack:a" and item["message_count"] == 7
    assert item["created_at"] == 300.0 and item["updated_at"] == 300.0 and item["size"] > 0
    assert set(item) == {"key", "message_count", "created_at", "updated_at", "size", "version", "title"}


async def test_paging_with_cursor_while_sessions_change(filled: TestClient, sessions: Path) -> None:
    status, first = await get(filled, "limit=2&sort=created_at")
    assert status == 200 and first["sessions"] == ["telegram:1", "telegram:2"] and first["count"] == 4
    # between pages: one not yet seen is deleted, one is added after the cursor, one before it
    await filled.delete("/api/v1/sessions/slack:a", headers=AUTH)
    write_atomic(sessions, "late", created=900.0)
    write_atomic(sessions, "early", created=50.0)
    await eventually(lambda: {"late", "early"} <= set(store_of(filled).index.keys()))
    _, second = await get(filled, "limit=2&sort=created_at&cursor=" + first["next_cursor"])
    assert second["sessions"] == ["cli:default", "late"] and second["next_cursor"] is None
    assert second["count"] == 5


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("sort=size", "sort"),
        ("order=sideways", "order"),
        ("created_after=yesterday", "created_after"),
        ("min_messages=-2", "min_messages"),
        ("include=everything", "include"),
        ("cursor=garbage!", "cursor"),
        ("prefix=a&prefix=b", "prefix"),
    ],
)
async def test_bad_parameters_are_400_naming_them(client: TestClient, query: str, param: str) -> None:
    status, body = await get(client, query)
    assert status == 400
    assert body["parameter"] == param and body["detail"].startswith(param + ":")


async def test_cursor_from_another_query_is_refused(filled: TestClient) -> None:
    _, first = await get(filled, "limit=1&sort=updated_at")
    status, body = await get(filled, "limit=1&sort=key&cursor=" + first["next_cursor"])
    assert status == 400 and body["parameter"] == "cursor"


async def test_list_needs_the_token_with_parameters_too(client: TestClient) -> None:
    resp = await client.get("/api/v1/sessions?prefix=a")
    assert resp.status == 401


async def test_a_forged_cursor_is_a_400_whatever_it_holds(filled: TestClient) -> None:
    _, page = await get(filled, "limit=1&sort=created_at")
    genuine = page["next_cursor"]
    body = genuine.split(".")[0] if "." in genuine else genuine
    fingerprint = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))[1]
    forged = [
        [1, fingerprint, {"not": "a time"}, "k"],  # the right fingerprint, values of the wrong types
        [1, fingerprint, 1.0, ["not", "a", "key"]],
        [1, fingerprint, None, None],
    ]
    for content in forged:
        raw = base64.urlsafe_b64encode(orjson.dumps(content)).rstrip(b"=").decode()
        for cursor in (raw, raw + "." + genuine.partition(".")[2]):
            status, answer = await get(filled, "limit=1&sort=created_at&cursor=" + cursor)
            assert status == 400 and answer["parameter"] == "cursor", (content, answer)


async def test_a_cursor_past_a_4096_character_key_pages_on(client: TestClient, sessions: Path) -> None:
    keys = ["a" * 4096, "b" * 4096, "c"]
    for i, key in enumerate(keys):
        write_atomic(sessions, key, name=f"long{i}.json")
    await eventually(lambda: len(store_of(client).index) == 3)
    seen, cursor = [], None
    while True:
        status, page = await get(client, "limit=1" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        seen += page["sessions"]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == keys

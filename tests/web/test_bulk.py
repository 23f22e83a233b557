"""POST /api/v1/sessions:batchDelete through the real app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sessiond.core.names import file_name_for as file_name
from tests.support import AUTH, eventually, immutable, store_of, write_atomic

URL = "/api/v1/sessions:batchDelete"


@pytest.fixture
async def filled(client: TestClient, sessions: Path) -> TestClient:
    for i in range(3):
        write_atomic(sessions, f"telegram:{i}", updated=100.0 + i)
    write_atomic(sessions, "slack:x", updated=50.0)
    await eventually(lambda: len(store_of(client).index) == 4)
    return client


async def post(client: TestClient, body: Any) -> tuple[int, dict]:
    resp = await client.post(URL, json=body, headers=AUTH)
    return resp.status, await resp.json()


async def test_delete_by_filter(filled: TestClient, sessions: Path) -> None:
    status, body = await post(filled, {"filter": {"prefix": "telegram:", "updated_before": 102}})
    assert status == 200
    assert body == {
        "dry_run": False,
        "matched": ["telegram:0", "telegram:1"],
        "deleted": ["telegram:0", "telegram:1"],
        "failed": [],
    }
    assert sorted(store_of(filled).index.keys()) == ["slack:x", "telegram:2"]  # known before the answer
    assert not (sessions / file_name("telegram:0")).exists()


async def test_dry_run_touches_nothing(filled: TestClient, sessions: Path) -> None:
    status, body = await post(filled, {"filter": {"prefix": "telegram:"}, "dry_run": True})
    assert status == 200 and body["dry_run"] is True
    assert body["matched"] == ["telegram:0", "telegram:1", "telegram:2"] and body["deleted"] == []
    assert len(store_of(filled).index) == 4 and len(list(sessions.glob("*.json"))) == 4


async def test_explicit_keys_report_the_missing(filled: TestClient) -> None:
    status, body = await post(filled, {"keys": ["slack:x", "nope", "slack:x"]})
    assert status == 200
    assert body["matched"] == ["slack:x"] and body["deleted"] == ["slack:x"]
    assert body["failed"] == [{"key": "nope", "reason": "Session not found"}]


async def test_max_guard_refuses_the_whole_batch(filled: TestClient) -> None:
    status, body = await post(filled, {"filter": {"min_messages": 0}, "max": 3})
    assert status == 409 and "4 sessions match" in body["detail"]
    assert len(store_of(filled).index) == 4
    status, body = await post(filled, {"filter": {"min_messages": 0}, "max": 4})
    assert status == 200 and len(body["deleted"]) == 4


async def test_failures_come_with_reasons(filled: TestClient, sessions: Path) -> None:
    store = store_of(filled)
    with immutable(sessions / file_name("telegram:2")):  # the file system refuses, even root
        status, body = await post(filled, {"keys": ["telegram:0", "nope", "telegram:2"]})
    assert status == 200
    assert body["deleted"] == ["telegram:0"]
    assert body["failed"][0] == {"key": "nope", "reason": "Session not found"}
    assert body["failed"][1]["key"] == "telegram:2"
    assert body["failed"][1]["reason"].startswith("Cannot delete: Operation not permitted")
    assert "telegram:2" in store.index and (sessions / file_name("telegram:2")).exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"filter": {}}, "filter"),
        ({"filter": {"prefix": ""}}, "prefix"),
        ({"filter": {"prefix": "", "min_messages": 1}}, "prefix"),
        ({}, "keys"),
        ({"keys": ["a"], "filter": {"prefix": "a"}}, "keys"),
        ({"keys": []}, "keys"),
        ({"keys": "a"}, "keys"),
        ({"keys": [""]}, "keys"),
        ({"filter": "telegram:"}, "filter"),
        ({"filter": {"prefx": "a"}}, "prefx"),
        ({"filter": {"updated_before": "soon"}}, "updated_before"),
        ({"keys": ["a"], "dry_run": "yes"}, "dry_run"),
        ({"keys": ["a"], "max": 0}, "max"),
        ({"keys": ["a"], "force": True}, "force"),
        ([1, 2], "body"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(filled: TestClient, body: Any, param: str) -> None:
    status, answer = await post(filled, body)
    assert status == 400, answer
    assert answer["parameter"] == param
    assert len(store_of(filled).index) == 4


async def test_not_json_and_no_token(client: TestClient) -> None:
    resp = await client.post(URL, data=b"{not json", headers=AUTH)
    assert resp.status == 400 and (await resp.json())["parameter"] == "body"
    resp = await client.post(URL, json={"keys": ["a"]})
    assert resp.status == 401
    resp = await client.get(URL, headers=AUTH)
    assert resp.status == 405


async def test_ten_thousand_keys_fit_and_more_are_refused_as_documented(client: TestClient, sessions: Path) -> None:
    keys = [f"user:{i:05d}:" + "x" * 80 for i in range(10_000)]
    status, body = await post(client, {"keys": keys, "dry_run": True})
    assert status == 200, body
    assert len(body["failed"]) == 10_000  # none exist: each is named, none is refused
    status, body = await post(client, {"keys": [*keys, "one-more"], "dry_run": True})
    assert status == 400 and body["parameter"] == "keys" and "10000" in body["detail"]
    spec = await (await client.get("/api/v1/openapi.json", headers=AUTH)).json()
    assert spec["components"]["schemas"]["BatchDelete"]["properties"]["keys"]["maxItems"] == 10_000


# -- expect: delete only what the client was shown ---------------------------------------


async def test_every_session_answer_carries_a_version_that_changes_when_the_file_is_rewritten(
    filled: TestClient, sessions: Path
) -> None:
    listed = await (await filled.get("/api/v1/sessions", params={"include": "meta"}, headers=AUTH)).json()
    version = {item["key"]: item["version"] for item in listed["sessions"]}
    detail = await (await filled.get("/api/v1/sessions/slack:x", headers=AUTH)).json()
    assert detail["version"] == version["slack:x"]
    export = await filled.get("/api/v1/export", params={"key": "slack:x"}, headers=AUTH)
    assert export.headers["ETag"] == f'"{version["slack:x"]}"'  # the file's ETag, unquoted
    status, body = await post(filled, {"filter": {"prefix": "slack:"}, "dry_run": True})
    assert status == 200 and body["versions"] == {"slack:x": version["slack:x"]}
    store = store_of(filled)
    before = store.index.get("slack:x")
    write_atomic(sessions, "slack:x", updated=50.0)  # the same metadata, a new file
    await eventually(lambda: store.index.get("slack:x") is not before)
    detail = await (await filled.get("/api/v1/sessions/slack:x", headers=AUTH)).json()
    assert detail["version"] != version["slack:x"]


async def test_batch_delete_with_expect_spares_a_session_rewritten_since_it_was_shown(filled: TestClient, sessions: Path) -> None:
    status, shown = await post(filled, {"filter": {"prefix": "telegram:"}, "dry_run": True})
    assert status == 200 and shown["matched"] == ["telegram:0", "telegram:1", "telegram:2"]
    store = store_of(filled)
    before = store.index.get("telegram:1")
    write_atomic(sessions, "telegram:1", messages=7)  # the agent writes on after the preview
    await eventually(lambda: store.index.get("telegram:1") is not before)
    status, body = await post(filled, {"keys": shown["matched"], "expect": shown["versions"]})
    assert status == 200, body
    assert body["deleted"] == ["telegram:0", "telegram:2"]
    assert body["failed"] == [{"key": "telegram:1", "reason": "changed since it was shown; not deleted"}]
    assert (sessions / file_name("telegram:1")).exists() and "telegram:1" in store.index


async def test_batch_delete_with_expect_spares_a_rewrite_the_index_has_not_seen_yet(filled: TestClient, sessions: Path) -> None:
    status, shown = await post(filled, {"keys": ["telegram:0"], "dry_run": True})
    store = store_of(filled)
    async with store.lock:  # the agent's rename lands before the index hears of it
        write_atomic(sessions, "telegram:0", messages=9)
    status, body = await post(filled, {"keys": ["telegram:0"], "expect": shown["versions"]})
    assert status == 200, body
    assert body["deleted"] == [] and body["failed"][0]["reason"] == "changed since it was shown; not deleted"
    assert (sessions / file_name("telegram:0")).exists()


async def test_batch_delete_with_expect_reports_a_session_deleted_since_it_was_shown(filled: TestClient) -> None:
    status, shown = await post(filled, {"keys": ["slack:x", "telegram:0"], "dry_run": True})
    await filled.delete("/api/v1/sessions/slack:x", headers=AUTH)  # another client
    status, body = await post(filled, {"keys": shown["matched"], "expect": shown["versions"]})
    assert status == 200 and body["deleted"] == ["telegram:0"]
    assert body["failed"] == [{"key": "slack:x", "reason": "Session not found"}]


@pytest.mark.parametrize(
    "body",
    [
        {"keys": ["a"], "expect": ["v"]},
        {"keys": ["a"], "expect": {"a": 3}},
        {"keys": ["a"], "expect": {"b": "v"}},
        {"filter": {"prefix": "a"}, "expect": {"a": "v"}},
    ],
)
async def test_bad_expect_is_400_naming_it(filled: TestClient, body: Any) -> None:
    status, answer = await post(filled, body)
    assert status == 400 and answer["parameter"] == "expect", answer

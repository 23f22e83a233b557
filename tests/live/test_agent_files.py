"""Files as the agent writes them: what `json.loads` makes of a file is what the API answers.

grip-ai saves with `json.dumps` (defaults, or `ensure_ascii=False` and compact
separators), to `<name>.tmp` renamed over `<name>.json`, where the name is
`re.sub(r"[^\\w\\-.]", "_", key)`. Python reads back integers beyond 64 bits,
NaN and Infinity, and keeps the last of repeated members; so does sessiond.
The differential test writes hostile sessions that way and compares every
answer of a real daemon with `json.loads` of every file.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import AUTH, Daemon, eventually, store_of


def agent_name(key: str) -> str:
    """The agent's own naming rule (grip/session/manager.py), written out here on purpose."""
    return re.sub(r"[^\w\-.]", "_", key) + ".json"


def agent_save(folder: Path, doc: dict[str, Any], compact: bool = True) -> Path:
    """Save as grip-ai does: json.dumps, a temp file, a rename."""
    path = folder / agent_name(doc["key"])
    tmp = path.with_suffix(".tmp")
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")) if compact else json.dumps(doc)
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(path)
    return path


async def detail(client: TestClient, key: str) -> tuple[int, bytes]:
    resp = await client.get("/api/v1/sessions/" + quote(key, safe=""), headers=AUTH)
    return resp.status, await resp.read()


# -- what the agent writes that a strict JSON parser refuses --------------------------


async def test_integers_beyond_64_bits_and_nan_in_messages_are_served(client: TestClient, sessions: Path) -> None:
    wei = {"role": "assistant", "tool_calls": [{"id": "c1", "function_name": "send", "arguments": {"wei": 10**30}}]}
    agent_save(
        sessions,
        {"key": "wallet:1", "messages": [wei, {"role": "tool", "content": -(2**70)}], "created_at": 1.5, "updated_at": 2.5},
    )
    agent_save(sessions, {"key": "odd:floats", "messages": [{"score": math.nan}, {"bound": math.inf}, {"low": -math.inf}]})
    for key, count in (("wallet:1", 2), ("odd:floats", 3)):
        status, body = await detail(client, key)
        assert status == 200, body
        assert json.loads(body)["message_count"] == count
    listing = await (await client.get("/api/v1/sessions", headers=AUTH)).json()
    assert listing["sessions"] == ["odd:floats", "wallet:1"]


async def test_repeated_members_keep_the_last_as_python_does(client: TestClient, sessions: Path) -> None:
    (sessions / "dup.json").write_bytes(
        b'{"key": "first", "messages": [], "created_at": 1, "key": "last", "messages": [1, 2], "created_at": 7}'
    )
    await eventually(lambda: "dup.json" in store_of(client).index.idents_reader()())
    status, body = await detail(client, "last")
    assert status == 200 and json.loads(body)["message_count"] == 2 and json.loads(body)["created_at"] == 7
    assert (await detail(client, "first"))[0] == 404


@pytest.mark.parametrize(
    "stamp", [b"1e400", b"-1e400", b"18446744073709551616", b"NaN", b"Infinity", b'"soon"', b"true", b"null"]
)
async def test_timestamps_python_reads_but_no_api_can_echo_fall_back(client: TestClient, sessions: Path, stamp: bytes) -> None:
    (sessions / "t.json").write_bytes(b'{"key": "t", "messages": [], "created_at": ' + stamp + b', "updated_at": 1700000000.25}')
    status, body = await detail(client, "t")
    assert status == 200, body
    assert json.loads(body)["created_at"] == 1700000000.25  # created_at falls back to updated_at


async def test_integer_timestamps_come_back_as_stored(client: TestClient, sessions: Path) -> None:
    agent_save(sessions, {"key": "int:stamps", "messages": [], "created_at": 1700000000, "updated_at": 1700000100})
    status, body = await detail(client, "int:stamps")
    assert status == 200
    assert b'"created_at":1700000000,' in body and b'"updated_at":1700000100,' in body
    meta = await (await client.get("/api/v1/sessions?include=meta", headers=AUTH)).read()
    assert b'"created_at":1700000000,' in meta


async def test_a_key_starting_with_a_dot_is_a_session_like_any_other(client: TestClient, sessions: Path) -> None:
    path = agent_save(sessions, {"key": ".notes", "messages": [{"role": "user", "content": "hi"}]})
    assert path.name == ".notes.json"
    status, body = await detail(client, ".notes")
    assert status == 200 and json.loads(body)["message_count"] == 1
    await eventually(lambda: ".notes" in store_of(client).index)
    listing = await (await client.get("/api/v1/sessions", headers=AUTH)).json()
    assert listing["sessions"] == [".notes"]
    assert (await client.delete("/api/v1/sessions/.notes", headers=AUTH)).status == 200
    assert not path.exists()


async def test_a_key_with_a_newline_can_be_fetched_and_deleted(client: TestClient, sessions: Path) -> None:
    path = agent_save(sessions, {"key": "line\nbreak", "messages": []})
    assert path.name == "line_break.json"
    assert (await detail(client, "line\nbreak"))[0] == 200
    resp = await client.delete("/api/v1/sessions/line%0Abreak", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["key"] == "line\nbreak"
    assert not path.exists()


# -- read-your-writes, with the real daemon -------------------------------------------


@pytest.mark.slow
def test_saved_then_asked_at_once_is_found_every_time(workspace: Path) -> None:
    folder = workspace / "sessions"
    with Daemon(workspace, env={"SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}) as d:
        d.wait_ready()
        missed: list[tuple[str, int, bytes]] = []
        for i in range(100):
            agent_save(folder, {"key": f"fresh:{i}", "messages": [{"role": "user", "content": "q"}] * (i % 5)})
            status, body = d.get(f"/api/v1/sessions/fresh:{i}")
            if status != 200 or json.loads(body)["message_count"] != i % 5:
                missed.append((f"GET fresh:{i}", status, body))
            path = agent_save(folder, {"key": f"gone:{i}", "messages": []})
            status, _, body = d.request("DELETE", f"/api/v1/sessions/gone:{i}")
            if status != 200 or path.exists():
                missed.append((f"DELETE gone:{i}", status, body))
            agent_save(folder, {"key": f"out:{i}", "messages": [{"role": "user", "content": "q"}] * 2})
            status, body = d.get(f"/api/v1/export?key=out:{i}")
            if status != 200 or json.loads(body)["key"] != f"out:{i}":
                missed.append((f"export out:{i}", status, body))
            path = agent_save(folder, {"key": f"bulk:{i}", "messages": []})
            status, _, body = d.request("POST", "/api/v1/sessions:batchDelete", json.dumps({"keys": [f"bulk:{i}"]}).encode())
            if status != 200 or path.exists():
                missed.append((f"batchDelete bulk:{i}", status, body))
        assert missed == []
        assert d.stop() == 0


async def test_a_detail_right_after_the_agent_overwrites_a_session_has_the_new_count_every_time(
    client: TestClient, sessions: Path
) -> None:
    agent_save(sessions, {"key": "chat:1", "messages": [], "created_at": 1.0, "updated_at": 1.0})
    await eventually(lambda: "chat:1" in store_of(client).index)
    stale: list[tuple[int, int, bytes]] = []
    for i in range(1, 201):
        doc = {"key": "chat:1", "messages": [{"role": "user", "content": "q"}] * i, "created_at": 1.0, "updated_at": 1.0 + i}
        agent_save(sessions, doc)
        status, body = await detail(client, "chat:1")
        if status != 200 or json.loads(body)["message_count"] != i or json.loads(body)["updated_at"] != 1.0 + i:
            stale.append((i, status, body))
    assert stale == []


async def test_details_during_an_in_place_write_do_not_use_up_its_retries(client: TestClient, sessions: Path) -> None:
    path = agent_save(sessions, {"key": "slow:1", "messages": [{"role": "user", "content": "q"}]})
    await eventually(lambda: "slow:1" in store_of(client).index)
    whole = json.dumps({"key": "slow:1", "messages": [{"role": "user", "content": "q"}] * 3}).encode()
    with path.open("r+b") as fh:  # another writer, in place, in two chunks
        fh.truncate(0)
        fh.write(whole[:20])
        fh.flush()
        statuses = [(await detail(client, "slow:1"))[0] for _ in range(20)]  # asked while half-written
        fh.write(whole[20:])
    assert statuses == [200] * 20  # the session it was, until the writer is done
    await eventually(lambda: (r := store_of(client).index.get("slow:1")) is not None and r.message_count == 3)


async def test_a_detail_right_after_the_agent_deletes_a_session_is_404_every_time(client: TestClient, sessions: Path) -> None:
    answered: list[tuple[int, int]] = []
    for i in range(200):
        path = agent_save(sessions, {"key": f"short:{i}", "messages": []})
        await eventually(lambda i=i: f"short:{i}" in store_of(client).index)  # type: ignore[misc]
        path.unlink()  # grip's delete: the file goes, the cache entry with it
        status, _ = await detail(client, f"short:{i}")
        resp = await client.delete("/api/v1/sessions/" + quote(f"short:{i}", safe=""), headers=AUTH)
        export = await client.get("/api/v1/export", params={"key": f"short:{i}"}, headers=AUTH)
        if (status, resp.status, export.status) != (404, 404, 404):
            answered.append((i, status))
    assert answered == []


# -- the differential test --------------------------------------------------------------

_TEXT = st.text(alphabet=st.sampled_from("ab:/. _-%?#@\n\té中😀\\\"'"), min_size=1, max_size=12)
_KEYS = st.one_of(_TEXT, st.sampled_from([".notes", "..", "user:alice", "a/b", "x y", "ünï:cödé", "line\nbreak"]))
_NUMBERS = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2**63, 2**64 - 1, 2**64, -(2**63) - 1, 1e308, 5e-324, -0.0]),
)
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBERS, st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)
_STAMPS = st.one_of(_NUMBERS, st.sampled_from([1700000000, 1700000000.5, "soon", True, None]), st.just(...))
_SESSIONS = st.fixed_dictionaries(
    {
        "key": _KEYS,
        "messages": st.lists(st.dictionaries(st.sampled_from(["role", "content", "tool_calls"]), _VALUES), max_size=4),
        "summary": st.one_of(st.none(), st.text(max_size=10)),
        "created_at": _STAMPS,
        "updated_at": _STAMPS,
    }
)


def _stamp(value: object) -> int | float | None:
    # The contract: numbers are echoed as stored; what no API could echo falls back.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else None
    return value if math.isfinite(value) else None


def expected_from_disk(folder: Path) -> dict[str, dict[str, Any]]:
    """key -> what the API must answer, from json.loads of every file (newest updated_at wins a key)."""
    best: dict[str, tuple[tuple[float, str], dict[str, Any]]] = {}
    for name in os.listdir(folder):
        if not name.endswith(".json"):
            continue
        raw = (folder / name).read_bytes()
        doc = json.loads(raw)
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("key"), str)
            or not doc["key"]
            or not isinstance(doc.get("messages"), list)
        ):
            continue
        mtime = (folder / name).stat().st_mtime_ns / 1e9
        created, updated = _stamp(doc.get("created_at")), _stamp(doc.get("updated_at"))
        created = created if created is not None else (updated if updated is not None else mtime)
        updated = updated if updated is not None else max(created, mtime)
        answer = {"key": doc["key"], "message_count": len(doc["messages"]), "created_at": created, "updated_at": updated}
        rank = (updated, name)
        if doc["key"] not in best or rank > best[doc["key"]][0]:
            best[doc["key"]] = (rank, answer)
    return {key: answer for key, (_, answer) in best.items()}


def same_json(a: object, b: object) -> bool:
    """Equal, with integers and floats told apart (1700000000 is not 1700000000.0)."""
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def agent_daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    workspace = tmp_path_factory.mktemp("agent") / "workspace"
    (workspace / "sessions").mkdir(parents=True)
    with Daemon(workspace, env={"SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}) as d:
        d.wait_ready()
        yield d, workspace / "sessions"


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(st.tuples(_SESSIONS, st.booleans()), min_size=1, max_size=6))
def test_the_api_answers_what_json_loads_reads_from_every_file(
    agent_daemon: Any, batch: list[tuple[dict[str, Any], bool]]
) -> None:
    d, folder = agent_daemon
    for drawn, compact in batch:
        doc = {k: v for k, v in drawn.items() if v is not ...}  # ... leaves the member out
        agent_save(folder, doc, compact)
        # Asked at once, as a client of the agent would: the session is there, as json.loads reads it.
        status, body = d.get("/api/v1/sessions/" + quote(doc["key"], safe=""))
        assert status == 200, (doc["key"], body)
    # Then, once the watcher has caught up with the last rewrite (a few ms), every
    # answer is what json.loads reads from the files: zero differences.
    expected = expected_from_disk(folder)
    deadline = time.monotonic() + 3
    while (differences := api_differences(d, expected)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert differences == []


def api_differences(d: Daemon, expected: dict[str, dict[str, Any]]) -> list[tuple[str, str, Any, Any]]:
    """Every (key, field, answered, expected) that differs, the list included."""
    found = []
    listing = json.loads(d.get("/api/v1/sessions")[1])["sessions"]
    if listing != sorted(expected):
        found.append(("", "list", listing, sorted(expected)))
    for key, want in expected.items():
        status, body = d.get("/api/v1/sessions/" + quote(key, safe=""))
        if status != 200:
            found.append((key, "status", status, 200))
            continue
        got = json.loads(body)
        found.extend((key, field, got[field], want[field]) for field in want if not same_json(got[field], want[field]))
    return found

"""parse_session and read_state: bytes and files in, records or reasons out."""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiond.core.index import InvalidFile, SessionRecord
from sessiond.core.loader import InvalidSession, parse_session
from sessiond.core.names import is_session_name
from tests.support import read_file

GOOD = {
    "key": "user:alice:x",
    "messages": [{"role": "user", "content": "hi"}] * 3,
    "summary": None,
    "created_at": 1.5,
    "updated_at": 2.5,
}


def test_parse_good() -> None:
    parsed = parse_session(orjson.dumps(GOOD))
    assert parsed == ("user:alice:x", 3, 1.5, 2.5)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"   \n", "empty file"),
        (b'{"key": "a", "messages": [', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "JSON list"),
        (b"null", "JSON null"),
        (b'"text"', "JSON str"),
        (b'{"messages": []}', "no string 'key'"),
        (b'{"key": "", "messages": []}', "no string 'key'"),
        (b'{"key": 5, "messages": []}', "no string 'key'"),
        (b'{"key": "a", "messages": {}}', "'messages' is not a list"),
        (b'{"key": "a"}', "'messages' is not a list"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
    ],
)
def test_parse_rejects_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidSession, match=reason.replace("(", r"\(")):
        parse_session(data)


def test_parse_odd_timestamps_become_none() -> None:
    parsed = parse_session(b'{"key": "a", "messages": [], "created_at": "yesterday", "updated_at": true}')
    assert parsed.created_at is None and parsed.updated_at is None


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a.json", True),
        ("user_alice_x.json", True),
        ("a.tmp", False),
        (".notes.json", True),
        ("a.json.tmp", False),
        ("a.JSON", False),
        ("notes.txt", False),
    ],
)
def test_session_names(name: str, ok: bool) -> None:
    assert is_session_name(name) is ok


def test_read_state_good_and_missing_timestamps_fall_back_to_mtime(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b'{"key": "a", "messages": [1, 2]}')
    os.utime(tmp_path / "a.json", (1000, 1234.5))
    state = read_file(tmp_path, "a.json", 1 << 20)
    assert isinstance(state, SessionRecord)
    assert (state.key, state.message_count, state.created_at, state.updated_at) == ("a", 2, 1234.5, 1234.5)
    assert state.stat.size == (tmp_path / "a.json").stat().st_size


def test_read_state_only_updated_at_given(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b'{"key": "a", "messages": [], "updated_at": 50}')
    state = read_file(tmp_path, "a.json", 1 << 20)
    assert isinstance(state, SessionRecord) and state.created_at == 50.0


def test_read_state_gone_is_none(tmp_path: Path) -> None:
    assert read_file(tmp_path, "nope.json", 1 << 20) is None


def test_read_state_of_a_removed_file_whose_name_is_not_utf8_is_none(tmp_path: Path) -> None:
    """Else the index lists it as an invalid file for ever (the watch never reports such names)."""
    name = os.fsdecode(b"caf\xe9.json")
    (tmp_path / name).write_bytes(b"{}")
    state = read_file(tmp_path, name, 1 << 20)
    assert isinstance(state, InvalidFile) and "not valid UTF-8" in state.reason and state.stat.size == 2
    (tmp_path / name).unlink()
    assert read_file(tmp_path, name, 1 << 20) is None


def test_read_state_symlink_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_bytes(orjson.dumps(GOOD))
    folder = tmp_path / "sessions"
    folder.mkdir()
    (folder / "link.json").symlink_to(outside)
    state = read_file(folder, "link.json", 1 << 20)
    assert isinstance(state, InvalidFile) and "symlink" in state.reason


def test_read_state_directory_and_fifo_are_not_sessions(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    os.mkfifo(tmp_path / "fifo.json")
    for name in ("dir.json", "fifo.json"):
        state = read_file(tmp_path, name, 1 << 20)
        assert isinstance(state, InvalidFile) and "regular" in state.reason


def test_read_state_size_ceiling(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_bytes(orjson.dumps({**GOOD, "pad": "x" * 5000}))
    state = read_file(tmp_path, "big.json", 4096)
    assert isinstance(state, InvalidFile) and "max_file_bytes" in state.reason


def test_read_state_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "locked.json"
    path.write_bytes(orjson.dumps(GOOD))
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: permissions do not stop reads")
    state = read_file(tmp_path, "locked.json", 1 << 20)
    assert isinstance(state, InvalidFile) and "cannot open" in state.reason


# -- one rule: what json.loads reads ----------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=6),
    st.integers(min_value=-(2**90), max_value=2**90),
    st.floats(allow_nan=True, allow_infinity=True),
)
_ANY = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
)
_MEMBER_NAMES = st.sampled_from(["key", "messages", "created_at", "updated_at", "summary", "other"])


@st.composite
def hostile_documents(draw: st.DrawFn) -> bytes:
    """Bytes as a writer might leave them: members in any order, repeated, odd values, cut short."""
    members = draw(
        st.lists(
            st.tuples(_MEMBER_NAMES, st.one_of(_ANY, st.text(min_size=1, max_size=5), st.lists(_ANY, max_size=3))), max_size=7
        )
    )
    body = b"{" + b",".join(json.dumps(name).encode() + b":" + json.dumps(value).encode() for name, value in members) + b"}"
    if draw(st.booleans()):
        body = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b" \n\t"])) + body + draw(st.sampled_from([b"", b" ", b"\n"]))
    if draw(st.integers(0, 9)) == 0:
        body = body[: draw(st.integers(0, len(body)))]
    return body


def reference(data: bytes) -> tuple[str, int, object, object] | None:
    """What a session is, straight from json.loads and the contract's fallbacks."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    key, messages = doc.get("key"), doc.get("messages")
    if not isinstance(key, str) or not key or len(key) > 4096 or not isinstance(messages, list):
        return None

    def stamp(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(value, int):
            return value if -(2**63) <= value < 2**64 else None
        return value if math.isfinite(value) else None

    return key, len(messages), stamp(doc.get("created_at")), stamp(doc.get("updated_at"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_documents())
def test_parse_session_agrees_with_json_loads_on_hostile_bytes(data: bytes) -> None:
    want = reference(data)
    try:
        got = parse_session(data)
    except InvalidSession:
        assert want is None, data
        return
    assert want is not None, data
    assert got.key == want[0] and got.message_count == want[1]
    for mine, theirs in ((got.created_at, want[2]), (got.updated_at, want[3])):
        assert type(mine) is type(theirs) and mine == theirs, (data, mine, theirs)


def nested(depth: int, key: str = "deep:1", *, utf16: bool = False, nan: bool = False, objects: bool = False) -> bytes:
    """A session *depth* levels deep in all (the top object and 'messages' count as two)."""
    opening, closing = (b'{"a": ', b"}") if objects else (b"[", b"]")
    inner = opening * (depth - 2) + (b"NaN" if nan else b"1") + closing * (depth - 2)
    data = b'{"key": "' + key.encode() + b'", "messages": [' + inner + b"]}"
    return data.decode().encode("utf-16") if utf16 else data


def json_loads_reads(data: bytes) -> bool:
    """Whether json.loads reads *data* in a thread of its own (the stack a fresh caller has)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            json.loads(data)
            result.append(True)
        except RecursionError:
            result.append(False)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    return result[0]


def test_a_session_nested_deeper_than_json_loads_reads_is_invalid_at_every_depth() -> None:
    # simdjson reads up to 1,024 levels; json.loads stops near 990 (the recursion limit,
    # less the stack in use). Each depth around the edge, by each path to the parser.
    for depth in range(880, 1030):
        for variant in ({}, {"objects": True}, {"utf16": True}, {"nan": True}):
            data = nested(depth, **variant)  # type: ignore[arg-type]
            want = json_loads_reads(data)
            try:
                got = parse_session(data)
            except InvalidSession as exc:
                assert not want, (depth, variant, exc)
                assert str(exc) == "not valid JSON (nested too deeply for Python's json.loads)"
            else:
                assert want and got.message_count == 1, (depth, variant)
    assert json_loads_reads(nested(900)) and not json_loads_reads(nested(1022))  # both answers seen


def test_a_long_file_that_would_close_the_parsers_padding_is_still_not_json() -> None:
    # Deep files are parsed inside extra levels of nesting; bytes that close them and open
    # more ("…],[…") make one document of the padding, never of the file itself.
    session = b'{"key": "a", "messages": [' + b" " * 3000 + b"]}"
    for data in (session + b"],[1", session + b"]] , [[", b"1],[" + session, session + b"],[" + session):
        with pytest.raises(InvalidSession, match="not valid JSON"):
            parse_session(data)
    assert parse_session(b"\xef\xbb\xbf" + session + b"\n").key == "a"  # a BOM before the padding

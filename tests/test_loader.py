"""parse_session and read_state: bytes and files in, records or reasons out."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from sessiond.index import InvalidFile, SessionRecord
from sessiond.loader import InvalidSession, is_session_name, parse_session

from .conftest import read_file

GOOD = {"key": "user:alice:x", "messages": [{"role": "user", "content": "hi"}] * 3, "summary": None, "created_at": 1.5, "updated_at": 2.5}


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
    [("a.json", True), ("user_alice_x.json", True), ("a.tmp", False), (".notes.json", True), ("a.json.tmp", False), ("a.JSON", False), ("notes.txt", False)],
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

"""`sessionctl` against the real app over real HTTP (the client blocks, so it runs in a thread)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sessiond import __version__
from sessiond import client as sessionctl
from sessiond.web.appkeys import SEARCH
from tests.support import TOKEN, Daemon, eventually, store_of, write_atomic

DAY = 86400.0


async def run(client: TestClient, *argv: str) -> int:
    url = str(client.make_url("")).rstrip("/")
    return await asyncio.get_running_loop().run_in_executor(None, sessionctl.main, ["--url", url, *argv])


@pytest.fixture
async def aged(client: TestClient, sessions: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("SESSIOND_TOKEN", TOKEN)
    now = time.time()
    for key, age in [("telegram:old", 40), ("telegram:new", 1), ("slack:old", 40)]:
        write_atomic(sessions, key, created=now - age * DAY, updated=now - age * DAY, messages=3)
    await eventually(lambda: len(store_of(client).index) == 3)
    return client


async def test_ls_filters_and_long(aged: TestClient, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.setattr(sessionctl, "PAGE", 1)  # walk the cursor
    assert await run(aged, "ls", "--prefix", "telegram:", "--older-than", "30d") == 0
    assert capsys.readouterr().out == "telegram:old\n"
    assert await run(aged, "ls", "--sort", "updated_at", "--desc", "-l") == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [line[0] for line in lines] == ["telegram:new", "telegram:old", "slack:old"]  # ties: by key, descending too
    assert all(line[1] == "3" and int(line[3]) > 0 for line in lines)


async def test_rm_dry_run_then_for_real(aged: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(aged, "rm", "--dry-run", "--older-than", "30d") == 0
    assert capsys.readouterr().out == "would delete slack:old\nwould delete telegram:old\n"
    assert len(store_of(aged).index) == 3
    assert await run(aged, "rm", "--older-than", "30d", "--max", "1") == 2
    assert "more than max (1)" in capsys.readouterr().err
    assert await run(aged, "rm", "--yes", "telegram:new", "nope") == 1
    captured = capsys.readouterr()
    assert captured.out == "deleted telegram:new\n" and "failed nope: Session not found" in captured.err


async def test_restore_and_errors(
    start_client: Any, sessions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_client(trash_days=1)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.delenv("SESSIOND_TOKEN", raising=False)
    write_atomic(sessions, "k")
    await eventually(lambda: "k" in store_of(client).index)
    assert await run(client, "--token-file", str(token_file), "rm", "k") == 0  # the trash is on: no question
    assert await run(client, "--token-file", str(token_file), "restore", "k") == 0
    assert capsys.readouterr().out == "deleted k\nrestored k\n"
    assert "k" in store_of(client).index
    assert await run(client, "ls") == 2
    assert "no token" in capsys.readouterr().err
    monkeypatch.setenv("SESSIOND_TOKEN", "wrong-token-0123456789")
    assert await run(client, "ls") == 2
    assert "401: Authentication required" in capsys.readouterr().err
    assert await run(client, "rm") == 2  # neither keys nor a filter


def test_durations_and_unreachable(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert sessionctl.duration("30d") == 30 * DAY and sessionctl.duration("1.5h") == 5400
    with pytest.raises(SystemExit):
        sessionctl.main(["ls", "--older-than", "soon"])
    monkeypatch.setenv("SESSIOND_TOKEN", TOKEN)
    assert sessionctl.main(["--url", "http://127.0.0.1:9", "ls"]) == 2
    assert "cannot reach" in capsys.readouterr().err


class Terminal:
    """stdin as a terminal where someone types *answer*."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        return self.answer + "\n"


async def test_a_permanent_delete_needs_yes_or_a_typed_y(
    aged: TestClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a terminal (a script, CI): refused without --yes; nothing is gone.
    assert await run(aged, "rm", "telegram:old") == 2
    assert "for good (the trash is off) without --yes" in capsys.readouterr().err
    assert "telegram:old" in store_of(aged).index
    # At a terminal: a question; anything but y keeps the session.
    monkeypatch.setattr("sys.stdin", Terminal("n"))
    assert await run(aged, "rm", "--prefix", "telegram:", "--older-than", "30d") == 1
    captured = capsys.readouterr()
    assert "Delete 1 session(s) for good?" in captured.out and "nothing deleted" in captured.err
    assert "telegram:old" in store_of(aged).index
    monkeypatch.setattr("sys.stdin", Terminal("y"))
    assert await run(aged, "rm", "--prefix", "telegram:", "--older-than", "30d") == 0
    assert capsys.readouterr().out.endswith("deleted telegram:old\n")
    assert "telegram:old" not in store_of(aged).index


async def test_nothing_matched_is_said(aged: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(aged, "ls", "--prefix", "nobody:") == 0
    assert capsys.readouterr() == ("", "no sessions matched\n")
    assert await run(aged, "rm", "--prefix", "nobody:") == 0
    assert capsys.readouterr() == ("", "no sessions matched; nothing deleted\n")


async def test_json_output_show_export_and_health(aged: TestClient, sessions: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(aged, "-o", "json", "ls", "--prefix", "telegram:") == 0
    items = json.loads(capsys.readouterr().out)
    assert [item["key"] for item in items] == ["telegram:new", "telegram:old"] and items[0]["message_count"] == 3
    assert await run(aged, "-o", "json", "show", "telegram:old") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["key"] == "telegram:old" and shown["message_count"] == 3
    assert await run(aged, "show", "telegram:old", "nope") == 1
    captured = capsys.readouterr()
    assert "key\ttelegram:old\nmessages\t3\n" in captured.out and "nope: 404: Session not found" in captured.err
    assert await run(aged, "-o", "json", "rm", "--dry-run", "--prefix", "slack:") == 0
    assert json.loads(capsys.readouterr().out)["matched"] == ["slack:old"]
    assert await run(aged, "-o", "json", "health") == 0
    health = json.loads(capsys.readouterr().out)
    assert health["status"] == "ok" and health["sessions"] == 3


async def test_export_writes_the_file_as_stored(
    aged: TestClient, sessions: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert await run(aged, "export", "slack:old") == 0
    assert capfdbinary.readouterr().out == (sessions / "slack_old.json").read_bytes()
    assert await run(aged, "export", "--prefix", "telegram:") == 0
    lines = capfdbinary.readouterr().out.decode().splitlines()
    assert sorted(json.loads(line)["key"] for line in lines) == ["telegram:new", "telegram:old"]


async def test_export_markdown_prints_the_conversation_to_read(
    aged: TestClient, sessions: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert await run(aged, "export", "--markdown", "slack:old") == 0
    text = capfdbinary.readouterr().out.decode()
    assert text.startswith("# Conversation slack\\:old\n") and "## Summary" in text and "## 1\\. user" in text
    assert await run(aged, "export", "--markdown", "--prefix", "telegram:") == 2  # one session only
    assert b"--markdown exports one session" in capfdbinary.readouterr().err


@pytest.mark.slow
def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "sessiond.client", "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == f"sessionctl {__version__}"


@pytest.mark.slow
def test_over_the_unix_socket(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped deployment listens on a unix socket only; sessionctl reaches it there."""
    write_atomic(workspace / "sessions", "user:alice:x")
    sock = tmp_path / "s.sock"
    monkeypatch.setenv("SESSIOND_TOKEN", TOKEN)
    with Daemon(workspace, "--unix", str(sock), "--host", "") as d:
        deadline = time.monotonic() + 15
        while sessionctl.main(["--unix", str(sock), "health"]) != 0:  # ready: indexed
            assert time.monotonic() < deadline and d.proc.poll() is None, d.output()
            time.sleep(0.1)
        capsys.readouterr()
        assert sessionctl.main(["--unix", str(sock), "ls"]) == 0
        assert capsys.readouterr().out == "user:alice:x\n"
        assert sessionctl.main(["--unix", str(sock), "show", "user:alice:x"]) == 0
        assert "key\tuser:alice:x" in capsys.readouterr().out
        assert d.stop() == 0
    assert sessionctl.main(["--unix", str(sock), "ls"]) == 2
    assert f"cannot reach unix:{sock}" in capsys.readouterr().err


async def test_retention_shows_the_rules_the_runs_and_what_would_go(
    start_client: Any, sessions: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIOND_TOKEN", TOKEN)
    now = time.time()
    for key, age in [("telegram:old", 40), ("telegram:new", 1)]:
        path = write_atomic(sessions, key, created=now - age * DAY, updated=now - age * DAY)
        os.utime(path, (now - age * DAY, now - age * DAY))
    client = await start_client(retention=[{"prefix": "telegram:", "idle_days": 30}], retention_dry_run=True)
    await eventually(lambda: len(store_of(client).index) == 2)
    assert await run(client, "retention") == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "telegram:            idle 30 days" in out
    assert "would now delete 1" in out and "telegram:old" in out
    assert await run(client, "-o", "json", "retention") == 0
    assert json.loads(capsys.readouterr().out)["preview"]["total"] == 1


def sessionctl_cli(daemon: Daemon, *argv: str) -> subprocess.CompletedProcess[bytes]:
    """The real `sessionctl` command line, in its own process, against a real daemon."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    env["SESSIOND_TOKEN"] = TOKEN
    command = [sys.executable, "-m", "sessiond.client", "--url", daemon.url, *argv]
    return subprocess.run(command, env=env, capture_output=True, timeout=30)


@pytest.mark.slow
def test_invalid_lists_each_bad_file_with_its_reason_and_never_prints_raw_control_characters(workspace: Path) -> None:
    sessions = workspace / "sessions"
    (sessions / "broken.json").write_text("{not json")
    (sessions / "evil\n\x1b[2J\u202e.json").write_text("[]")
    fd = os.open(os.fsencode(sessions) + b"/caf\xe9.json", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    write_atomic(sessions, "good:1")
    with Daemon(workspace, env={"SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}) as daemon:
        daemon.wait_ready()
        result = sessionctl_cli(daemon, "invalid")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.decode().splitlines()
        assert len(lines) == 3 and all(line.count("\t") == 3 for line in lines)
        assert [line.split("\t")[0] for line in lines] == ["broken.json", "caf\\xe9.json", "evil\\n\\x1b[2J\\u202e.json"]
        assert lines[0].split("\t")[1] == "9" and lines[0].split("\t")[3].startswith("not valid JSON")
        assert "not valid UTF-8" in lines[1] and "top level is a JSON list" in lines[2]
        assert b"\x1b" not in result.stdout and "\u202e".encode() not in result.stdout
        assert result.stderr.decode() == "3 invalid files\n"
        as_json = json.loads(sessionctl_cli(daemon, "-o", "json", "invalid").stdout)
        assert as_json["count"] == 3 and as_json["files"][1]["name_is_utf8"] is False
        (sessions / "broken.json").unlink()
        (sessions / "evil\n\x1b[2J\u202e.json").unlink()
        os.unlink(os.fsencode(sessions) + b"/caf\xe9.json")
        deadline = time.monotonic() + 10
        while json.loads(daemon.get("/api/v1/invalid")[1])["count"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        empty = sessionctl_cli(daemon, "invalid")
        assert (empty.returncode, empty.stdout, empty.stderr) == (0, b"", b"no invalid files\n")


@pytest.mark.slow
def test_trash_lists_the_trash_and_shows_a_trashed_session_before_restoring_it(workspace: Path) -> None:
    sessions = workspace / "sessions"
    path = write_atomic(sessions, "tg:a\x1b[2J", messages=2)
    original = path.read_bytes()
    write_atomic(sessions, "tg:b", messages=1)
    with Daemon(workspace, env={"SESSIOND_TRASH_DAYS": "7"}) as daemon:
        daemon.wait_ready()
        empty = sessionctl_cli(daemon, "trash")
        assert (empty.returncode, empty.stdout, empty.stderr) == (0, b"", b"the trash is empty\n")
        assert sessionctl_cli(daemon, "rm", "tg:a\x1b[2J", "tg:b").returncode == 0
        listed = sessionctl_cli(daemon, "trash")
        assert listed.returncode == 0, listed.stderr
        rows = [line.split("\t") for line in listed.stdout.decode().splitlines()]
        assert sorted(row[1] for row in rows) == ["tg:a\\x1b[2J", "tg:b"] and b"\x1b" not in listed.stdout
        entry_id = next(row[0] for row in rows if row[1].startswith("tg:a"))
        assert all(len(row) == 5 for row in rows)  # id, key, deleted, messages, bytes
        shown = sessionctl_cli(daemon, "trash", "show", entry_id)
        assert (shown.returncode, shown.stdout) == (0, original)
        assert json.loads(sessionctl_cli(daemon, "-o", "json", "trash").stdout)["count"] == 2
        missing = sessionctl_cli(daemon, "trash", "show", "0" * 24)
        assert missing.returncode == 2 and missing.stderr == b"sessionctl: 404: Not in the trash\n"
        assert sessionctl_cli(daemon, "restore", "tg:b").returncode == 0  # listed, shown, then restored
        assert [line.split("\t")[1] for line in sessionctl_cli(daemon, "trash").stdout.decode().splitlines()] == ["tg:a\\x1b[2J"]


@pytest.mark.slow
def test_every_listing_prints_hostile_keys_escaped_never_raw(workspace: Path) -> None:
    # A key is whatever the agent wrote: an escape sequence or a direction override in it
    # must not drive the operator's terminal from ls, show, rm or restore either.
    hostile = "tg:a\x1b[2J\u202e\n"
    write_atomic(workspace / "sessions", hostile, messages=2)
    with Daemon(
        workspace, env={"SESSIOND_TRASH_DAYS": "7", "SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}
    ) as daemon:
        daemon.wait_ready()
        runs = [
            sessionctl_cli(daemon, "ls"),
            sessionctl_cli(daemon, "ls", "-l"),
            sessionctl_cli(daemon, "show", hostile),
            sessionctl_cli(daemon, "rm", "--dry-run", "--prefix", "tg:"),
            sessionctl_cli(daemon, "rm", hostile),
            sessionctl_cli(daemon, "show", hostile),
            sessionctl_cli(daemon, "restore", hostile),
        ]
        for result in runs:
            for stream in (result.stdout, result.stderr):
                assert b"\x1b" not in stream and "\u202e".encode() not in stream, result.args
        assert runs[0].stdout == b"tg:a\\x1b[2J\\u202e\\n\n"
        assert b"deleted tg:a\\x1b[2J\\u202e\\n" in runs[4].stdout
        assert b"restored tg:a\\x1b[2J\\u202e\\n" in runs[6].stdout


async def test_search_prints_keys_titles_and_marked_snippets(
    client: TestClient, sessions: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIOND_TOKEN", TOKEN)
    doc = {
        "key": "t:1",
        "messages": [{"role": "user", "content": "where is my refund\x1b[31m?"}],
        "created_at": 1.0,
        "updated_at": 2.0,
    }
    (sessions / "t_1.json").write_text(json.dumps(doc))
    await eventually(lambda: client.server.app[SEARCH].complete and "t:1" in store_of(client).index)  # type: ignore[union-attr]
    assert await run(client, "search", "refund") == 0
    out = capsys.readouterr().out
    assert out.startswith("t:1\t") and out.splitlines()[0].endswith("where is my refund\\x1b[31m?")
    assert "#0 user: where is my [refund]\\x1b[31m?" in out  # escapes never reach the terminal
    assert await run(client, "search", "nothing") == 0
    assert "no sessions matched" in capsys.readouterr().err
    assert await run(client, "search", "*") == 2
    assert "holds no word" in capsys.readouterr().err

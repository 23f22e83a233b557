"""`sessionctl` against the real app over real HTTP (the client blocks, so it runs in a thread)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sessiond import client as sessionctl

from .conftest import TOKEN, eventually, store_of, write_atomic

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
    assert await run(aged, "rm", "telegram:new", "nope") == 1
    captured = capsys.readouterr()
    assert captured.out == "deleted telegram:new\n" and "failed nope: Session not found" in captured.err


async def test_restore_and_errors(start_client: Any, sessions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    client = await start_client(trash_days=1)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.delenv("SESSIOND_TOKEN", raising=False)
    write_atomic(sessions, "k")
    await eventually(lambda: "k" in store_of(client).index)
    assert await run(client, "--token-file", str(token_file), "rm", "k") == 0
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

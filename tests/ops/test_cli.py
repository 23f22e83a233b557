"""The real `sessiond` process: start, serve, stop; bad settings; the demo set-up."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import tomllib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sessiond import demo
from tests.support import REPO, TOKEN, Daemon, demo_session, free_port


@pytest.mark.slow
def test_starts_serves_and_stops_cleanly(workspace: Path) -> None:
    demo.write_session(workspace / "sessions", demo_session("cli:default", 2, 1_700_000_000))
    with Daemon(workspace) as d:
        d.wait_ready()
        status, body = d.get("/api/v1/sessions")
        assert status == 200 and json.loads(body) == {"sessions": ["cli:default"], "count": 1}
        assert d.stop() == 0
        out = d.output()
    assert f"listening on http://127.0.0.1:{d.port}" in out
    assert "ready: serving 1 sessions" in out
    assert TOKEN not in out
    assert "GET /api/v1/sessions 200" in out  # the access log line


@pytest.mark.slow
def test_creates_missing_sessions_folder(tmp_path: Path) -> None:
    ws = tmp_path / "fresh"
    ws.mkdir()
    with Daemon(ws) as d:
        d.wait_ready()
        assert (ws / "sessions").is_dir()
        assert d.stop() == 0


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    return subprocess.run(
        [sys.executable, "-m", "sessiond", *args], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


def test_bad_setting_one_clear_line_and_nonzero_exit(tmp_path: Path) -> None:
    result = run_cli("--workspace", str(tmp_path), "--port", "99999", env={"SESSIOND_TOKEN": TOKEN})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sessiond: port:"), result.stderr
    result = run_cli("--workspace", str(tmp_path), env={})
    assert result.returncode == 2 and "SESSIOND_TOKEN" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_port_in_use_is_a_clear_error(workspace: Path) -> None:
    with Daemon(workspace) as first:
        first.wait_ready()
        result = run_cli("--workspace", str(workspace), "--port", str(first.port), env={"SESSIOND_TOKEN": TOKEN})
        assert result.returncode == 1
        assert "cannot listen on" in result.stderr and "Traceback" not in result.stderr
        assert first.stop() == 0


def test_demo_prepares_workspace_and_private_token(tmp_path: Path) -> None:
    workspace, token_path, created = demo.prepare(tmp_path / "run")
    assert created
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert len(list((workspace / "sessions").glob("*.json"))) >= len(demo.DEMO_KEYS)
    token = token_path.read_text()
    again = demo.prepare(tmp_path / "run")
    assert again[2] is False and token_path.read_text() == token  # printed once, kept after


def test_the_make_run_workspace_shows_every_feature_of_the_page(tmp_path: Path) -> None:
    started = time.monotonic()
    workspace, token_path, _ = demo.prepare(tmp_path / "run")
    assert time.monotonic() - started < 2  # make run stays quick
    keys: Counter[str] = Counter()
    invalid, days, channels = [], set(), set()
    summaries = tool_calls = arguments = long_contents = 0
    for path in (workspace / "sessions").glob("*.json"):
        try:
            session = json.loads(path.read_bytes())
        except ValueError:
            invalid.append(path.name)
            continue
        keys[session["key"]] += 1
        channels.add(session["key"].split(":", 1)[0])
        days.add(datetime.fromtimestamp(session["updated_at"], UTC).date())
        summaries += bool(session.get("summary"))
        for message in session["messages"]:
            calls = message.get("tool_calls") or []
            tool_calls += len(calls)
            arguments += sum(bool(json.loads(call["function"]["arguments"])) for call in calls)
            content = message.get("content") or ""
            if len(content.encode()) >= 4096 and "```" in content and not content.isascii():
                long_contents += 1
    assert len(keys) >= 200
    assert len(days) >= 30
    assert len(channels) >= 3
    assert summaries and tool_calls and arguments and long_contents
    assert len(invalid) == 1
    assert [key for key, files in keys.items() if files > 1] == [demo.COLLISION_KEY]
    assert set(demo.DEMO_KEYS) <= set(keys)
    settings = tomllib.loads((tmp_path / "run" / "sessiond.toml").read_text())
    assert settings["trash_days"] > 0 and settings["retention"]
    # and the daemon reads it as it is
    check = [sys.executable, "-m", "sessiond", "check-config", "--config", str(tmp_path / "run" / "sessiond.toml")]
    result = subprocess.run(
        [*check, "--workspace", str(workspace), "--token-file", str(token_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# The search's plan made slow (as a loaded machine makes it): the build's "complete" line would
# come after the banner.
_SLOW_SEARCH_PLAN = """
import time
import sessiond.live.search as target

_real = target._plan_of


def _slow(*args):
    time.sleep(2)
    return _real(*args)


target._plan_of = _slow
"""


@pytest.mark.slow
@pytest.mark.parametrize("slow_search", [False, True], ids=["as it is", "a slow search build"])
def test_a_second_make_run_prints_the_token_and_the_page_url_last(tmp_path: Path, slow_search: bool) -> None:
    run_dir = tmp_path / "run"
    demo.prepare(run_dir)  # the first make run
    token = (run_dir / "token").read_text().strip()
    port = free_port()
    log = tmp_path / "make-run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIOND_", "NOTIFY_SOCKET", "LISTEN_", "MAKE"))}
    if slow_search:
        hooks = tmp_path / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(_SLOW_SEARCH_PLAN)
        env["PYTHONPATH"] = str(hooks)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "-C", str(REPO), "run", f"RUNDIR={run_dir}", f"PORT={port}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "Web page:" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        time.sleep(3 if slow_search else 1)  # whatever the daemon prints of its own accord by then
        lines = log.read_text().splitlines()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    assert token in lines[-2], lines[-5:]
    assert lines[-1].startswith(f"Web page: http://127.0.0.1:{port}/ui/"), lines[-5:]


@pytest.mark.slow
def test_malformed_requests_do_not_flood_the_log(workspace: Path) -> None:
    import socket as socket_mod

    with Daemon(workspace) as d:
        d.wait_ready()
        for _ in range(20):
            with socket_mod.create_connection(("127.0.0.1", d.port)) as conn:
                conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nBad\x00Header: y\r\n\r\n")
                conn.recv(4096)
        assert d.get("/health", token=None)[0] == 200
        assert d.stop() == 0
        out = d.output()
    assert "Traceback" not in out
    assert out.count("malformed HTTP requests refused") == 1

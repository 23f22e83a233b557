"""The real `sessiond` process: start, serve, stop; bad settings; the demo set-up."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sessiond import demo
from tests.support import TOKEN, Daemon


@pytest.mark.slow
def test_starts_serves_and_stops_cleanly(workspace: Path) -> None:
    demo.write_session(workspace / "sessions", demo.demo_session("cli:default", 2, 1_700_000_000))
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
    assert len(list((workspace / "sessions").glob("*.json"))) == len(demo.DEMO_KEYS)
    token = token_path.read_text()
    again = demo.prepare(tmp_path / "run")
    assert again[2] is False and token_path.read_text() == token  # printed once, kept after


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

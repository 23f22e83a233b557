"""The daemon as systemd runs it: a real NOTIFY_SOCKET, socket activation, SIGHUP, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sessiond import cli, config
from sessiond.demo import write_session
from tests.support import TOKEN, Daemon, NotifySocket, demo_session, free_port, write_atomic

# Each test starts the real daemon as a process: `make test-quick` leaves them out.
pytestmark = pytest.mark.slow


@pytest.fixture
def notify(tmp_path: Path):
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.close()


def test_ready_status_watchdog_stopping(workspace: Path, notify: NotifySocket) -> None:
    for i in range(3):
        write_session(workspace / "sessions", demo_session(f"s:{i}", 1, 1_700_000_000))
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"}
    with Daemon(workspace, env=env) as d:
        notify.wait_for("READY=1")
        # READY means listening and indexed: the very next request is answered.
        status, body = d.get("/api/v1/sessions")
        assert status == 200 and json.loads(body)["count"] == 3
        ready = next(m for m in notify.messages if "READY=1" in m)
        assert "STATUS=serving 3 sessions" in ready
        assert any(m.startswith("STATUS=indexing") for m in notify.messages[: notify.messages.index(ready)])
        notify.messages.clear()
        notify.wait_for("WATCHDOG=1", timeout=2)
        d.proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert d.stop() == 0


def test_without_notify_socket_all_is_silent(workspace: Path) -> None:
    with Daemon(workspace) as d:
        d.wait_ready()
        assert d.stop() == 0
        assert "notify" not in d.output().lower()


def test_sighup_reloads_config_and_keeps_old_on_error(workspace: Path, notify: NotifySocket, tmp_path: Path) -> None:
    cfg = tmp_path / "sessiond.toml"
    new_token = "rotated-token-0123456789"
    cfg.write_text(f'token = "{TOKEN}"\nrate_limit_per_ip = 0\n')
    env = {"NOTIFY_SOCKET": str(notify.path), "SESSIOND_TOKEN": None}
    with Daemon(workspace, "--config", str(cfg), env=env) as d:
        notify.wait_for("READY=1")
        write_session(workspace / "sessions", demo_session("after:start", 1, 1_700_000_000))
        cfg.write_text(f'token = "{new_token}"\nrate_limit_per_ip = 0\n')
        notify.messages.clear()
        d.proc.send_signal(signal.SIGHUP)
        seen = notify.wait_for("READY=1")
        reloading = next(m for m in seen if "RELOADING=1" in m)
        assert any(line.startswith("MONOTONIC_USEC=") and int(line.split("=")[1]) > 0 for line in reloading.splitlines())
        assert d.get("/api/v1/sessions", token=TOKEN)[0] == 401
        status, body = d.get("/api/v1/sessions", token=new_token)
        assert status == 200 and "after:start" in json.loads(body)["sessions"]
        # a broken config is refused; the running one stays
        cfg.write_text(f'token = "{new_token}"\nrate_limit_per_ip = -5\n')
        notify.messages.clear()
        d.proc.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1")
        assert d.get("/api/v1/sessions", token=new_token)[0] == 200
        assert d.stop() == 0
        assert "reload refused, keeping the running configuration: rate_limit_per_ip:" in d.output()


def test_socket_activation_serves_on_passed_fd(workspace: Path, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    unused = free_port()  # what it would bind without activation
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    env.update({"SESSIOND_TOKEN": TOKEN, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"})
    fd = listener.fileno()
    cmd = ["sh", "-c", f'LISTEN_PID=$$ exec "{sys.executable}" -m sessiond --workspace "{workspace}" --port {unused}']
    log = (tmp_path / "out.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3), stdout=log, stderr=log)
    listener.close()  # only the child holds it now
    try:
        url = f"http://127.0.0.1:{port}/health"
        deadline = time.monotonic() + 15
        while True:
            try:
                import urllib.request

                with urllib.request.urlopen(url, timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "out.log").read_text()
                time.sleep(0.05)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", unused), timeout=1).close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert f"systemd socket http://127.0.0.1:{port}" in (tmp_path / "out.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def test_listen_pid_of_another_process_is_ignored(workspace: Path) -> None:
    with Daemon(workspace, env={"LISTEN_FDS": "1", "LISTEN_PID": "1"}) as d:
        d.wait_ready()  # bound its own port
        assert d.stop() == 0


def test_unix_socket_listener_and_mode(workspace: Path, tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    with Daemon(workspace, "--unix", str(sock), "--unix-mode", "600") as d:
        d.wait_ready()
        assert oct(sock.stat().st_mode & 0o777) == "0o600"

        async def over_unix() -> int:
            async with (
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as s,
                s.get("http://sessiond/api/v1/sessions", headers={"Authorization": f"Bearer {TOKEN}"}) as r,
            ):
                return r.status

        assert asyncio.run(over_unix()) == 200
        assert d.stop() == 0


async def test_graceful_stop_finishes_in_flight_requests(workspace: Path) -> None:
    settings = config.validate(
        {"workspace": str(workspace), "token": TOKEN, "port": free_port(), "shutdown_timeout": 5, "debounce_ms": 10}, env={}
    )
    daemon = cli.Daemon(settings, {})
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(0.5)
        return web.Response(text="done")

    daemon.app.router.add_get("/slow", slow)
    serving = asyncio.create_task(daemon.serve())
    await asyncio.wait_for(daemon.watcher.ready.wait(), 10)
    async with aiohttp.ClientSession() as session:
        request = asyncio.create_task(
            session.get(f"http://127.0.0.1:{settings.port}/slow", headers={"Authorization": f"Bearer {TOKEN}"})
        )
        await started.wait()
        daemon.stop.set()
        resp = await request
        assert resp.status == 200 and await resp.text() == "done"
    await asyncio.wait_for(serving, 10)
    assert not daemon.watcher.alive


def test_a_client_that_connected_just_before_the_stop_gets_its_answer(workspace: Path) -> None:
    """Connected, then slow to send its request (a busy client, a restart under load):
    the stop waits for a first request on a connection that young, instead of closing
    it as idle (which the client sees as a reset). A connection idle for long is not
    waited for."""
    import signal as signals
    import socket

    from tests.support import Daemon

    with Daemon(workspace) as d:
        d.wait_ready()
        idle = socket.create_connection(("127.0.0.1", d.port), timeout=5)  # the idle kind
        time.sleep(2.5)
        late = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        time.sleep(0.1)  # accepted by the daemon
        started = time.monotonic()
        d.proc.send_signal(signals.SIGTERM)
        time.sleep(0.6)  # well past the old fixed grace of 0.25 s
        late.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        reply = late.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert d.proc.wait(10) == 0
        assert time.monotonic() - started < 4  # the idle connection held nothing up
        late.close()
        idle.close()


def test_restarts_on_a_held_socket_under_load_reset_no_connection(workspace: Path, tmp_path: Path) -> None:
    """What systemd does on `systemctl restart` with the shipped socket unit: one listening
    unix socket held across daemons, clients connecting throughout. Every request gets an
    answer (the list, or 503 while starting). On Python 3.11, a connection asyncio had
    accepted but not yet set up when the server closed was dropped unseen and its client
    reset (e2e: 1 in ~20,000; here 2-6 in 8-12 restarts before the fix)."""
    import http.client
    import threading

    for i in range(20):
        write_atomic(workspace / "sessions", f"load:{i:02d}")
    path = str(tmp_path / "api.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1024)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    env.update(
        {"SESSIOND_TOKEN": TOKEN, "SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}
        | {"SESSIOND_ACCESS_LOG": "0", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "sessiond.socket"}
    )
    cmd = ["sh", "-c", f'LISTEN_PID=$$ exec "{sys.executable}" -m sessiond --workspace "{workspace}"']
    log = (tmp_path / "out.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        fd = listener.fileno()
        return subprocess.Popen(cmd, env=env, pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3), stdout=log, stderr=log)

    class Unix(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(30)
            self.sock.connect(path)

    outcomes: dict[str, int] = {}
    wrong: list[str] = []
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            conn = Unix("sessiond", timeout=30)
            try:
                conn.request("GET", "/api/v1/sessions", headers={"Authorization": f"Bearer {TOKEN}"})
                reply = conn.getresponse()
                body = json.loads(reply.read())
                outcome = str(reply.status)
                if not (reply.status == 200 and body["count"] == 20) and not (
                    reply.status == 503 and body["detail"].startswith("Service unavailable: starting")
                ):
                    wrong.append(f"{reply.status} {body}")
            except OSError as exc:
                outcome = type(exc).__name__
                wrong.append(outcome)
            finally:
                conn.close()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    daemon = start()
    clients = [threading.Thread(target=client) for _ in range(4)]
    try:
        time.sleep(1.5)
        for thread in clients:
            thread.start()
        for _ in range(10):
            time.sleep(1.0)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(15) == 0
            daemon = start()
        time.sleep(1.5)
    finally:
        done.set()
        for thread in clients:
            thread.join(35)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
        listener.close()
        log.close()
    assert outcomes.get("200", 0) > 100, outcomes
    assert wrong == [], (outcomes, wrong[:5])


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["console script", "python -m"])
@pytest.mark.parametrize("after", [0.2, 0.4])
def test_a_sigterm_while_the_daemon_is_still_starting_is_a_clean_stop(workspace: Path, entry: str, after: float) -> None:
    """systemd may stop a unit it has just started: that is a stop like any other (exit 0),
    not a death by signal, however long the imports take on a loaded machine. (Before the
    interpreter runs the entry point, some 50 ms, nothing of ours can take the signal.)"""
    write_atomic(workspace / "sessions", "a:1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")} | {"SESSIOND_TOKEN": TOKEN}
    command = [str(Path(sys.executable).parent / "sessiond")] if entry == "console script" else [sys.executable, "-m", "sessiond"]
    proc = subprocess.Popen(
        [*command, "--workspace", str(workspace), "--port", str(free_port())],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(after)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]

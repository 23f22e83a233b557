"""Start, probe, pin and stop the servers under test, each its own process."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOKEN = "benchtoken-not-a-secret"  # sessiond refuses tokens under 16 characters
SESSIOND_ENV = {
    "SESSIOND_TOKEN": TOKEN,
    # Both limits on (the contract's default path, measured), set far above what wrk sends.
    "SESSIOND_RATE_LIMIT_PER_IP": "1000000",
    "SESSIOND_RATE_LIMIT_PER_TOKEN": "1000000",
    "SESSIOND_ACCESS_LOG": "0",
    "SESSIOND_LOG_LEVEL": "WARNING",
}


class ServerFailed(RuntimeError):
    """A server exited or never became ready; the message ends with its log."""


@dataclass
class Server:
    """A running server process and what was learnt while starting it."""

    name: str
    process: subprocess.Popen
    port: int
    log_path: Path
    spawned_at: float
    listening_seconds: float | None = None
    ready_seconds: float | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(extra: dict[str, str]) -> dict[str, str]:
    """This environment without any sessiond setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SESSIOND_") and k not in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def spawn(name: str, module_args: list[str], log_dir: Path, env: dict[str, str]) -> Server:
    """Start ``python -m <module_args>`` on a free port (``{port}`` is filled in)."""
    port = free_port()
    argv = [sys.executable, "-m", *(a.replace("{port}", str(port)) for a in module_args)]
    log_path = log_dir / f"{name}-{port}.log"
    with open(log_path, "wb") as log:
        spawned_at = time.perf_counter()
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=_environment(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Server(name, process, port, log_path, spawned_at)


def _health_status(port: int) -> int | None:
    """The status of ``GET /health``, or None while nothing listens."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def wait_ready(server: Server, timeout: float) -> float:
    """Poll ``/health`` until 200; return seconds from spawn to ready.

    The poll interval grows with the wait (1% of it, 5-100 ms), so the
    resolution stays near 1% without flooding a daemon busy with its scan.
    """
    deadline = server.spawned_at + timeout
    while time.perf_counter() < deadline:
        check_alive(server)
        status = _health_status(server.port)
        now = time.perf_counter() - server.spawned_at
        if status is not None and server.listening_seconds is None:
            server.listening_seconds = now
        if status == 200:
            server.ready_seconds = now
            return now
        time.sleep(min(0.1, max(0.005, now / 100)))
    raise ServerFailed(_failure(server, f"not ready after {timeout:.0f} s"))


def check_alive(server: Server) -> None:
    """Raise ServerFailed, with its exit status and log, if the server has exited."""
    code = server.process.poll()
    if code is not None:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
        raise ServerFailed(_failure(server, how))


def _failure(server: Server, what: str) -> str:
    tail = server.log_path.read_text(errors="replace")[-3000:]
    return f"{server.name} {what}; log {server.log_path}:\n{tail}"


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return pids


def _status_kib(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid``, the VmRSS of its child processes, and the sum, in MB."""
    rss = _status_kib(pid, "VmRSS") / 1024
    children = sum(_status_kib(c, "VmRSS") for c in process_tree(pid)[1:]) / 1024
    return {
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(_status_kib(pid, "VmHWM") / 1024, 1),
        "children_rss_mb": round(children, 1),
        "total_rss_mb": round(rss + children, 1),
    }


def pin(pid: int, cpus: str) -> None:
    """Pin every thread of ``pid`` and of its descendants to ``cpus``."""
    for member in process_tree(pid):
        subprocess.run(
            ["taskset", "-a", "-p", "-c", cpus, str(member)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def stop(server: Server, timeout: float = 30.0) -> float:
    """SIGTERM the server, wait for it (SIGKILL after ``timeout``); return seconds."""
    started = time.perf_counter()
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return time.perf_counter() - started


class Fleet:
    """The servers of one scenario; leaving the ``with`` block stops them all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[Server] = []

    def start(self, name: str, module_args: list[str], env: dict[str, str], timeout: float) -> Server:
        """Spawn a server and wait until ``/health`` answers 200."""
        server = spawn(name, module_args, self.log_dir, env)
        self.running.append(server)
        wait_ready(server, timeout)
        return server

    def stop(self, server: Server) -> float:
        """Stop one server; return the seconds it took."""
        self.running.remove(server)
        return stop(server)

    def pids(self) -> list[int]:
        """The process ids of the running servers."""
        return [server.process.pid for server in self.running]

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for server in reversed(self.running):
            stop(server)
        self.running.clear()

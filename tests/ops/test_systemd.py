"""sessiond.ops.systemd against a real notify socket and real passed sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessiond.ops.systemd import SystemdNotifier, listen_fds, listen_fds_with_names, run_watchdog


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd, and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        yield sock, str(path)


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on sock, without blocking."""
    received = []
    sock.setblocking(False)
    try:
        while True:
            received.append(sock.recv(4096))
    except BlockingIOError:
        return received
    finally:
        sock.settimeout(2)


# -- the notify protocol ----------------------------------------------------


def test_messages_arrive_as_exact_datagrams(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    try:
        assert notifier.status("indexing 41,000/100,000")
        assert sock.recv(4096) == b"STATUS=indexing 41,000/100,000"
        assert notifier.ready("serving 100,000 sessions")
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving 100,000 sessions"
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        assert notifier.notify("A=1", "B=2")
        assert sock.recv(4096) == b"A=1\nB=2"
    finally:
        notifier.close()
    assert drain(sock) == []


def test_status_stays_one_line(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.status("bad config:\nport must be a number")
    assert sock.recv(4096) == b"STATUS=bad config: port must be a number"
    notifier.close()


def test_reloading_carries_the_monotonic_clock(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.close()
    first, second = sock.recv(4096).split(b"\n")
    assert first == b"RELOADING=1"
    name, _, value = second.partition(b"=")
    assert name == b"MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket_name() -> None:
    name = f"sessiond-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("up")
        notifier.close()
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"


def test_socket_is_reopened_after_close(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.watchdog()
    notifier.close()
    notifier.close()  # idempotent
    assert notifier.watchdog()
    notifier.close()
    assert drain(sock) == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_failed_send_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.enabled
    with caplog.at_level(logging.DEBUG, logger="sessiond.ops.systemd"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
    notifier.close()
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2
    # One warning per outage; the repeats (watchdog pings) drop to debug.
    assert [r.levelno for r in failures] == [logging.WARNING, logging.DEBUG]
    assert "READY=1" in failures[0].getMessage()


def test_send_recovers_after_a_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "notify"
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    with caplog.at_level(logging.INFO, logger="sessiond.ops.systemd"):
        assert notifier.watchdog() is False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            assert notifier.watchdog() is True
            assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.close()
    assert any("works again" in r.getMessage() for r in caplog.records)


class Hung(BaseException):
    """Raised by the alarm below; not an OSError, so notify() cannot swallow it."""


def test_full_receive_queue_is_not_fatal(notify_socket: tuple[socket.socket, str]) -> None:
    _, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})

    def hung(signum: int, frame: object) -> None:
        raise Hung

    # Nobody reads: the non-blocking socket must give up, never hang the loop.
    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 5)
    try:
        results = [notifier.watchdog() for _ in range(5000)]
    except Hung:
        pytest.fail("notify() blocked on a full socket")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        notifier.close()
    assert results[0] is True
    assert results[-1] is False


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"WATCHDOG_USEC": "30000000"}])
def test_without_notify_socket_everything_is_silent(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier(env)
    with caplog.at_level(logging.DEBUG, logger="sessiond.ops.systemd"):
        assert not notifier.enabled
        assert notifier.ready("x") is False
        assert notifier.status("x") is False
        assert notifier.reloading() is False
        assert notifier.stopping() is False
        assert notifier.watchdog() is False
        assert notifier.watchdog_interval() is None
        notifier.close()
    assert caplog.records == []


def test_unsupported_address_disables_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sessiond.ops.systemd"):
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert "NOTIFY_SOCKET" in caplog.text


def test_default_env_is_the_process_environment(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = SystemdNotifier()
    assert notifier.stopping()
    notifier.close()
    assert sock.recv(4096) == b"STOPPING=1"


# -- the watchdog -----------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "20000"}, 0.01),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<self>"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<other>"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "abc"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_PID": "<self>"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(extra: dict[str, str], expected: float | None, tmp_path: Path) -> None:
    pids = {"<self>": str(os.getpid()), "<other>": str(os.getpid() + 1)}
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify")}
    env.update({k: pids.get(v, v) for k, v in extra.items()})
    assert SystemdNotifier(env).watchdog_interval() == expected


def test_watchdog_interval_needs_a_notify_socket() -> None:
    assert SystemdNotifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() is None


async def receive_all(sock: socket.socket, into: list[tuple[float, bytes]]) -> None:
    """Record every datagram with its arrival time, as systemd would see them."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    while True:
        data = await loop.sock_recv(sock, 4096)
        into.append((loop.time(), data))


async def test_run_watchdog_pings_only_while_healthy(
    notify_socket: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    sock, path = notify_socket
    loop = asyncio.get_running_loop()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})  # ping every 10 ms
    received: list[tuple[float, bytes]] = []
    healthy = True
    reader = asyncio.create_task(receive_all(sock, received))
    task = asyncio.create_task(run_watchdog(notifier, lambda: healthy))
    try:
        start = loop.time()
        await asyncio.sleep(0.3)
        healthy = False
        went_bad = loop.time()
        await asyncio.sleep(0.3)
        healthy = True
        came_back = loop.time()
        await asyncio.sleep(0.3)
        end = loop.time()
    finally:
        task.cancel()
        reader.cancel()
        for t in (task, reader):
            with pytest.raises(asyncio.CancelledError):
                await t
        notifier.close()

    def pings(since: float, until: float) -> int:
        return sum(1 for at, _ in received if since <= at < until)

    assert {data for _, data in received} == {b"WATCHDOG=1"}
    # ~30 per 0.3 s window; loose bounds for slow CI, but more than the
    # kernel's 10-datagram queue, so they really are periodic.
    assert 12 <= pings(start, went_bad) <= 45
    assert pings(went_bad + 0.05, came_back) == 0  # 0.05: an in-flight iteration may finish
    assert 12 <= pings(came_back, end) <= 45
    assert "unhealthy" in caplog.text
    assert "healthy again" in caplog.text
    assert "failed" not in caplog.text


async def test_run_watchdog_treats_a_raising_check_as_unhealthy(
    notify_socket: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})

    def broken() -> bool:
        raise RuntimeError("watcher state unreadable")

    task = asyncio.create_task(run_watchdog(notifier, broken))
    await asyncio.sleep(0.1)
    assert not task.done()  # the task survives a broken check
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.close()
    assert drain(sock) == []
    assert "watcher state unreadable" in caplog.text


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WATCHDOG_USEC": "20000"},  # no notify socket
        {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "20000", "WATCHDOG_PID": "1"},
    ],
)
async def test_run_watchdog_returns_without_an_interval(env: dict[str, str]) -> None:
    await asyncio.wait_for(run_watchdog(SystemdNotifier(env), lambda: True), timeout=1)


# -- socket activation ------------------------------------------------------

# The child plays the daemon. It first moves the descriptors it was given onto
# 3, 4, ... (what systemd does between fork and exec), then claims them.
PRELUDE = """
import fcntl, json, os, socket, sys
sys.path.insert(0, sys.argv[1])
from sessiond.ops.systemd import listen_fds_with_names
high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 100) for fd in sys.argv[2:]]
for fd in sys.argv[2:]:
    os.close(int(fd))
for offset, fd in enumerate(high):
    os.dup2(fd, 3 + offset)  # inheritable, as systemd passes them
    os.close(fd)
env = dict(os.environ)
env["LISTEN_PID"] = str(os.getpid())  # systemd sets it after fork, for the exec'd pid
"""

# Report what was claimed, then prove each socket works by answering one
# connection on it with its name.
SERVE = """
pairs = listen_fds_with_names(env)
info = [
    {"fd": s.fileno(), "name": n, "family": s.family.name, "type": s.type.name,
     "blocking": s.getblocking(), "inheritable": s.get_inheritable()}
    for s, n in pairs
]
print(json.dumps({"sockets": info, "left": sorted(k for k in env if k.startswith("LISTEN_"))}), flush=True)
for sock, name in pairs:
    sock.setblocking(True)
    conn, _ = sock.accept()
    with conn:
        conn.sendall(name.encode() + b" " + conn.recv(100))
    sock.close()
"""

REPO = str(Path(__file__).resolve().parents[2])


def _spawn(code: str, passed: list[int], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + code, REPO, *map(str, passed)],
        env={**os.environ, **env},
        pass_fds=passed,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ask(family: socket.AddressFamily, address: str | tuple[str, int], text: bytes) -> bytes:
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(address)
        client.sendall(text)
        return client.recv(100)


def test_listen_fds_in_a_child_gets_working_sockets(tmp_path: Path) -> None:
    unix_path = str(tmp_path / "api.sock")
    with socket.create_server(("127.0.0.1", 0)) as tcp, socket.socket(socket.AF_UNIX) as unix:
        unix.bind(unix_path)
        unix.listen()
        child = _spawn(SERVE, [tcp.fileno(), unix.fileno()], {"LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:unix"})
        with child:
            try:
                assert child.stdout is not None
                report = json.loads(child.stdout.readline() or "null")
                replies = [
                    _ask(socket.AF_INET, tcp.getsockname(), b"ping"),
                    _ask(socket.AF_UNIX, unix_path, b"ping"),
                ]
                assert child.wait(timeout=10) == 0
            finally:
                child.kill()
    assert report["sockets"] == [
        {"fd": 3, "name": "http", "family": "AF_INET", "type": "SOCK_STREAM", "blocking": False, "inheritable": False},
        {"fd": 4, "name": "unix", "family": "AF_UNIX", "type": "SOCK_STREAM", "blocking": False, "inheritable": False},
    ]
    assert report["left"] == []  # unset, so the scan pool or other children do not claim them
    assert replies == [b"http ping", b"unix ping"]


def test_listen_fds_names_fall_back_to_unknown() -> None:
    with socket.create_server(("127.0.0.1", 0)) as tcp:
        # Two names for one fd: the names are ignored, as sd_listen_fds_with_names does.
        child = _spawn(SERVE, [tcp.fileno()], {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"})
        with child:
            try:
                assert child.stdout is not None
                report = json.loads(child.stdout.readline() or "null")
                assert _ask(socket.AF_INET, tcp.getsockname(), b"hi") == b"unknown hi"
                assert child.wait(timeout=10) == 0
            finally:
                child.kill()
    assert [s["name"] for s in report["sockets"]] == ["unknown"]


def test_listen_fds_rejects_a_descriptor_that_is_not_a_socket(tmp_path: Path) -> None:
    code = """
try:
    listen_fds_with_names(env)
except ValueError as exc:
    print(exc)
"""
    fd = os.open(tmp_path / "plain", os.O_CREAT | os.O_RDWR)
    try:
        child = _spawn(code, [fd], {"LISTEN_FDS": "1"})
        out, err = child.communicate(timeout=10)
    finally:
        os.close(fd)
    assert (err, child.returncode) == ("", 0)
    assert out.startswith("LISTEN_FDS: fd 3 is not a usable socket (")


SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")


@pytest.mark.slow
@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate not installed (Debian: systemd)")
def test_listen_fds_under_systemd_socket_activate(tmp_path: Path) -> None:
    """systemd's own implementation of the protocol sets the variables and passes the sockets."""
    assert SOCKET_ACTIVATE is not None
    code = """
import os, sys
sys.path.insert(0, sys.argv[1])
from sessiond.ops.systemd import listen_fds_with_names
pairs = listen_fds_with_names()
left = [k for k in os.environ if k.startswith("LISTEN_")]
for sock, name in pairs:
    sock.setblocking(True)
    conn, _ = sock.accept()
    with conn:
        conn.sendall(f"{name} fd={sock.fileno()} {sock.family.name} left={left} ".encode() + conn.recv(100))
"""
    first, second = tmp_path / "a.sock", tmp_path / "b.sock"
    command = [SOCKET_ACTIVATE, f"--listen={first}", f"--listen={second}", "--fdname=api:admin"]
    command += [sys.executable, "-c", code, REPO]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as activator:
        try:
            deadline = time.monotonic() + 10
            while not (first.exists() and second.exists()):
                assert activator.poll() is None, activator.stderr.read() if activator.stderr else ""
                assert time.monotonic() < deadline, "systemd-socket-activate did not listen"
                time.sleep(0.01)
            # The first connection makes systemd-socket-activate exec the child.
            replies = [_ask(socket.AF_UNIX, str(first), b"one"), _ask(socket.AF_UNIX, str(second), b"two")]
            assert activator.wait(timeout=10) == 0
        finally:
            activator.kill()
    assert replies == [b"api fd=3 AF_UNIX left=[] one", b"admin fd=4 AF_UNIX left=[] two"]


def test_listen_fds_for_another_pid_is_ignored_and_unset() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b", "OTHER": "x"}
    assert listen_fds(env) == []
    assert env == {"OTHER": "x"}


def test_listen_fds_can_leave_the_environment_alone() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}
    assert listen_fds(env, unset=False) == []
    assert env == {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LISTEN_FDS": "1"},  # no LISTEN_PID: not for us
        {"LISTEN_PID": "<self>", "LISTEN_FDS": "0"},
        {"LISTEN_PID": "<self>", "LISTEN_FDS": "many"},
        {"LISTEN_PID": "pid", "LISTEN_FDS": "1"},
    ],
)
def test_listen_fds_without_usable_variables(env: dict[str, str]) -> None:
    env = {k: str(os.getpid()) if v == "<self>" else v for k, v in env.items()}
    assert listen_fds_with_names(env) == []
    assert not any(k.startswith("LISTEN_") for k in env)

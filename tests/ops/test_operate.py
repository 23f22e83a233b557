"""What an operator meets: journald priorities, JSON logs, check-config, reload refusals,
the scrape listener, one-line errors, progress. Real daemon processes throughout."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from sessiond import config
from sessiond.demo import write_session
from sessiond.ops.logs import priority
from sessiond.ops.systemd import SystemdNotifier
from sessiond.server import ScanProgress
from tests.support import TOKEN, Daemon, NotifySocket, as_nobody, demo_session, free_port

REPO = Path(__file__).resolve().parents[2]


def run_sessiond(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIOND_", "NOTIFY_SOCKET", "JOURNAL_STREAM"))}
    return subprocess.run(
        [sys.executable, "-m", "sessiond", *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=30
    )


@pytest.fixture
def notify(tmp_path: Path):
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.close()


# -- 1. journald priorities -------------------------------------------------


def journal_env(log_path: Path) -> dict[str, str]:
    """JOURNAL_STREAM naming *log_path*, as systemd names the stream it connects."""
    st = log_path.stat()
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


@pytest.mark.slow
def test_under_journald_every_line_carries_its_priority(workspace: Path) -> None:
    (workspace / "sessions" / "broken.json").write_text("{not json")
    write_session(workspace / "sessions", demo_session("ok:1", 1, 1_700_000_000))
    port = free_port()
    log_path = workspace.parent / "journal.log"
    log_path.touch()
    env = {**journal_env(log_path), "SESSIOND_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIOND_", "NOTIFY_SOCKET", "JOURNAL_STREAM"))}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sessiond", "--workspace", str(workspace), "--port", str(port)],
            env={**base, **env},
            stderr=log,
            stdout=log,
        )
        try:
            deadline = time.monotonic() + 15
            while "ready: serving" not in log_path.read_text():
                assert time.monotonic() < deadline and proc.poll() is None, log_path.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    lines = log_path.read_text().splitlines()
    assert lines and all(line[:3] in ("<6>", "<4>", "<3>", "<7>") for line in lines), lines
    warning = next(line for line in lines if "broken.json" in line)
    assert warning.startswith("<4>WARNING ")
    assert any(line.startswith("<6>INFO sessiond: ready: serving 1 sessions") for line in lines)


def test_traceback_lines_all_keep_the_error_priority() -> None:
    from sessiond.ops.logs import make_formatter

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("sessiond", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info())
    text = make_formatter("text", journal=True).format(record)
    assert len(text.splitlines()) > 3
    assert all(line.startswith("<3>") for line in text.splitlines())
    assert [priority(level) for level in (5, 10, 20, 25, 30, 40, 50)] == [7, 7, 6, 6, 4, 3, 2]


@pytest.mark.slow
def test_not_the_journal_means_no_prefix(workspace: Path) -> None:
    # JOURNAL_STREAM inherited from a parent but naming another stream: plain lines.
    with Daemon(workspace, env={"JOURNAL_STREAM": "1:1"}) as d:
        d.wait_ready()
        assert d.stop() == 0
    assert not any(line.startswith("<") for line in d.output().splitlines())


# -- 9. JSON log lines ------------------------------------------------------


@pytest.mark.slow
def test_json_log_format_is_one_object_per_line(workspace: Path) -> None:
    (workspace / "sessions" / "broken.json").write_text("[]")
    with Daemon(workspace, "--log-format", "json") as d:
        d.wait_ready()
        assert d.get("/api/v1/sessions")[0] == 200
        assert d.stop() == 0
    entries = [json.loads(line) for line in d.output().splitlines()]
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["level"] == "warning" and "broken.json" in e["message"] for e in entries)
    assert any(e["logger"] == "sessiond.access" and e["message"].startswith("GET /api/v1/sessions 200") for e in entries)
    assert TOKEN not in d.output()


# Every character str.splitlines() breaks at, but \n (which the access log never holds raw).
LINE_BREAKS = "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def hostile_requests(port: int) -> list[str]:
    """Requests whose path and headers carry every line break, each trying to forge a record."""
    paths = ["/x%E2%80%A8<3>FORGED%E2%80%A8", "/y%C2%85<3>FORGED%E2%80%A9", "/z%0B%0C%1C%1D%1E%0D<3>FORGED"]
    for path in paths:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
                # A trusted proxy's X-Forwarded-For: an IPv6 scope id may hold any text.
                + "X-Forwarded-For: fe80::1%\u2028<3>FORGED\x85\r\n".encode()
                + "X-Request-ID: a\u2028<3>FORGED\r\nUser-Agent: \u2029<3>FORGED\r\n\r\n".encode()
            )
            assert conn.recv(100).startswith(b"HTTP/1.1 404")
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_under_journald_a_hostile_path_or_header_stays_one_line_of_one_record(workspace: Path, log_format: str) -> None:
    # A file name is the other thing outside parties write into the log.
    (workspace / "sessions" / "bad\u2028<3>FORGED\x85.json").write_text("{not json")
    port = free_port()
    log_path = workspace.parent / f"sessiond-{port}.log"  # the file Daemon writes to: its inode is the stream
    log_path.touch()
    env = {**journal_env(log_path), "SESSIOND_LOG_FORMAT": log_format, "SESSIOND_TRUSTED_PROXIES": "127.0.0.1"}
    with Daemon(workspace, env=env, port=port) as d:
        d.wait_ready()
        paths = hostile_requests(port)
        assert d.stop() == 0
    lines = d.output().split("\n")[:-1]
    assert all(line[:3] in ("<6>", "<4>", "<3>", "<7>") for line in lines), lines
    assert not any(ch in line for line in lines for ch in LINE_BREAKS), lines
    assert not any(line[3:].startswith("<3>FORGED") for line in lines), lines
    assert sum("FORGED" in line for line in lines) == len(paths) + 1, lines
    if log_format == "json":
        entries = [json.loads(line[3:]) for line in lines]
        access = [e["message"] for e in entries if e["logger"] == "sessiond.access" and "FORGED" in e["message"]]
        assert [m.split(" ")[1] for m in access] == [
            "/x\u2028<3>FORGED\u2028",
            "/y\x85<3>FORGED\u2029",
            "/z\v\f\x1c\x1d\x1e\r<3>FORGED",
        ]
        assert all("client=fe80::1%\u2028<3>FORGED " in m for m in access), access
        assert any("FORGED" in e["message"] and e["logger"] == "sessiond.live.store" for e in entries)


def test_a_record_with_line_breaks_in_its_traceback_is_still_its_own_lines_only() -> None:
    from sessiond.ops.logs import make_formatter

    try:
        raise ValueError("bad\u2028<3>FORGED\x85<3>FORGED\r<3>FORGED")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "m\u2029<3>%s", ("FORGED\x1e",), sys.exc_info())
    for log_format in ("json", "text"):
        for journal in (True, False):
            text = make_formatter(log_format, journal=journal).format(record)
            assert not any(ch in text for ch in LINE_BREAKS), (log_format, journal, text)
            if log_format == "json":
                (line,) = text.split("\n")
                entry = json.loads(line[3:] if journal else line)
                assert entry["message"] == "m\u2029<3>FORGED\x1e" and "FORGED\x85<3>FORGED\r" in entry["traceback"]
            elif journal:
                assert all(line.startswith("<3>") for line in text.split("\n"))


def test_a_long_first_scan_logs_its_progress() -> None:
    now = [100.0]
    sent: list[str] = []

    class Recorder(SystemdNotifier):
        def notify(self, *lines: str) -> bool:
            sent.extend(lines)
            return True

    progress = ScanProgress(Recorder({}), every=5.0, clock=lambda: now[0])
    logger = logging.getLogger("sessiond")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        for step in range(1, 13):  # 12 chunks, one a second
            now[0] += 1.0
            progress(step * 1000, 12_000)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert [r.getMessage() for r in records] == ["indexing: 5000 of 12000 files read", "indexing: 10000 of 12000 files read"]
    assert sent[-1] == "STATUS=indexing 12,000/12,000"


# -- 6. check-config and one-line errors -------------------------------------


def test_check_config_prints_the_effective_settings_never_the_token(workspace: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'token_file = "{token_file}"\nrate_limit_per_ip = 7\n')
    result = run_sessiond("check-config", "--config", str(cfg), "--workspace", str(workspace), env={"SESSIOND_PORT": "9999"})
    assert result.returncode == 0, result.stderr
    assert "rate_limit_per_ip = 7" in result.stdout and "port = 9999" in result.stdout
    assert f"# token: from token_file {token_file} (hidden)" in result.stdout
    assert TOKEN not in result.stdout + result.stderr
    assert result.stderr == "sessiond: configuration ok\n"
    quiet = run_sessiond("check-config", "--quiet", "--config", str(cfg), "--workspace", str(workspace))
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


def test_check_config_fails_with_the_daemons_one_line_errors(workspace: Path, tmp_path: Path) -> None:
    result = run_sessiond(
        "check-config", "--workspace", str(workspace), env={"SESSIOND_TOKEN": TOKEN, "SESSIOND_RATE_LIMIT_PER_IP": "-1"}
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["sessiond: rate_limit_per_ip: -1 is not a whole number from 0 to 1000000"]


def test_check_config_prints_toml_the_daemon_reads_back_unchanged(workspace: Path, tmp_path: Path) -> None:
    """Its output, parsed with tomllib and given back as --config, is accepted and loads the
    same settings: retention rules as tables (not a Python tuple), the socket mode in octal."""
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        f'unix = "{tmp_path}/api \\"quoted\\"\\n.sock"\n'
        "unix_mode = 0o640\n"
        'trusted_proxies = ["10.0.0.0/8", "::1"]\n'
        f'state_dir = "{state}"\n'
        "force_polling = true\n"
        "events_keepalive = 0.01\n"
        "[[retention]]\n"
        'prefix = "tg:vip:\\t"\n'
        "idle_days = 365\n"
        "[[retention]]\n"
        'prefix = ""\n'
        "keep_at_most = 3\n"
    )
    env = {"SESSIOND_TOKEN": TOKEN}
    first = run_sessiond("check-config", "--config", str(cfg), "--workspace", str(workspace), env=env)
    assert first.returncode == 0, first.stderr
    printed = tomllib.loads(first.stdout)
    assert printed["unix_mode"] == 0o640 and "unix_mode = 0o640" in first.stdout
    assert printed["retention"] == [
        {"prefix": "tg:vip:\t", "idle_days": 365.0},
        {"prefix": "", "keep_at_most": 3},
    ]
    again = tmp_path / "again.toml"
    again.write_text(first.stdout)
    second = run_sessiond("check-config", "--config", str(again), env=env)
    assert second.returncode == 0, second.stderr
    assert tomllib.loads(second.stdout) == printed
    loaded = [config.load({"config": str(cfg), "workspace": str(workspace)}, env), config.load({"config": str(again)}, env)]
    assert loaded[0].workspace == workspace.resolve()
    assert dataclasses.replace(loaded[0], config_file=None) == dataclasses.replace(loaded[1], config_file=None)


def test_modes_are_octal_in_help_and_errors(workspace: Path, tmp_path: Path) -> None:
    assert "unix socket permissions, octal (default 0o660)" in run_sessiond("--help").stdout
    cfg = tmp_path / "s.toml"
    cfg.write_text("unix_mode = 0o1000\n")
    result = run_sessiond("check-config", "--config", str(cfg), "--workspace", str(workspace), env={"SESSIOND_TOKEN": TOKEN})
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["sessiond: unix_mode: 0o1000 is not a permission mode from 0o000 to 0o777"]


@pytest.mark.slow
def test_check_config_checks_access_with_the_users_own_rights(open_workspace: Path) -> None:
    """As the service user (here nobody, through setpriv): a sessions folder it cannot
    change, a socket folder it cannot write, each named on its own line."""
    workspace = open_workspace / "workspace"  # sessions/ is root's, mode 755
    locked = open_workspace / "locked"
    locked.mkdir(mode=0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIOND_", "NOTIFY_SOCKET", "JOURNAL_STREAM"))}
    command = [*as_nobody(), sys.executable, "-m", "sessiond", "check-config", "--workspace", str(workspace)]
    refused = subprocess.run(
        [*command, "--unix", str(locked / "api.sock")],
        env={**base, "SESSIOND_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"sessiond: workspace: {workspace / 'sessions'} is not readable and writable by this user; "
        "give the service user read/write access (the shared group, mode 2770)",
        f"sessiond: unix: cannot create a socket in {locked}; fix --unix or the folder's permissions",
    ]
    (workspace / "sessions").chmod(0o777)
    fine = subprocess.run(command, env={**base, "SESSIOND_TOKEN": TOKEN}, capture_output=True, text=True, timeout=30)
    assert fine.returncode == 0, fine.stderr


def test_check_config_tells_systemd_when_it_refuses(workspace: Path, notify: NotifySocket) -> None:
    """As ExecReload=, a refusal lands in `systemctl status`."""
    env = {"SESSIOND_TOKEN": TOKEN, "SESSIOND_LOG_LEVEL": "loud", "NOTIFY_SOCKET": str(notify.path)}
    result = run_sessiond("check-config", "--quiet", "--workspace", str(workspace), env=env)
    assert result.returncode == 2
    notify.sock.settimeout(5)
    status = notify.sock.recv(4096).decode()
    assert status.startswith("STATUS=reload refused (log_level: 'loud' is not one of")
    assert status.endswith("still serving with the previous configuration")


@pytest.mark.slow
def test_a_misspelled_variable_is_warned_about(workspace: Path) -> None:
    result = run_sessiond(
        "check-config", "--workspace", str(workspace), env={"SESSIOND_TOKEN": TOKEN, "SESSIOND_RATE_LIMIT_PER_PI": "5"}
    )
    assert result.returncode == 0
    assert (
        "SESSIOND_RATE_LIMIT_PER_PI: not a sessiond setting, ignored; did you mean SESSIOND_RATE_LIMIT_PER_IP?" in result.stderr
    )
    with Daemon(workspace, env={"SESSIOND_ACESS_LOG": "0", "SESSIOND_URL": "http://x"}) as d:
        d.wait_ready()
        assert d.stop() == 0
    out = d.output()
    assert "WARNING sessiond: SESSIOND_ACESS_LOG: not a sessiond setting, ignored; did you mean SESSIOND_ACCESS_LOG?" in out
    assert "SESSIOND_URL" not in out  # sessionctl's variable is expected beside the daemon's


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["--port", "abc"], {}, "sessiond: argument --port: 'abc' is not a whole number; see --help"),
        (
            ["--access-log", "maybe"],
            {},
            "sessiond: argument --access-log: 'maybe' is not a switch (0/1, true/false, yes/no, on/off); see --help",
        ),
        ([], {"SESSIOND_PORT": "abc"}, "sessiond: SESSIOND_PORT: 'abc' is not a whole number"),
        (
            [],
            {"SESSIOND_TOKEN_FILE": "EMPTY"},
            "sessiond: token_file: EMPTY is empty; write the token (16+ printable ASCII characters) into it",
        ),
        (
            [],
            {"SESSIOND_TOKEN_FILE": "/nonexistent/token"},
            "sessiond: token_file: cannot read /nonexistent/token (No such file or directory); fix the path or its permissions",
        ),
        ([], {"SESSIOND_LOG_FORMAT": "xml"}, "sessiond: log_format: 'xml' is not one of text, json"),
    ],
)
def test_bad_settings_are_one_line(workspace: Path, tmp_path: Path, args: list[str], env: dict[str, str], line: str) -> None:
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    env = {k: v.replace("EMPTY", str(empty)) for k, v in env.items()}
    if "SESSIOND_TOKEN_FILE" not in env:
        env["SESSIOND_TOKEN"] = TOKEN
    result = run_sessiond("--workspace", str(workspace), *args, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line.replace("EMPTY", str(empty))]


def test_help_names_every_setting_and_its_variable() -> None:
    result = run_sessiond("--help")
    assert result.returncode == 0
    for setting in config.SETTINGS:
        assert f"  {setting.name} / {config.env_name(setting.name)}" in result.stdout
    assert "rate_limit_max_clients / SESSIOND_RATE_LIMIT_MAX_CLIENTS" in result.stdout  # file/env only
    assert "sessiond check-config" in result.stdout


@pytest.mark.slow
def test_port_zero_logs_the_port_bound(workspace: Path) -> None:
    with Daemon(workspace, "--port", "0") as d:
        deadline = time.monotonic() + 15
        while "listening on" not in d.output():
            assert time.monotonic() < deadline and d.proc.poll() is None, d.output()
            time.sleep(0.05)
        line = next(line for line in d.output().splitlines() if "listening on" in line)
        port = int(line.rsplit(":", 1)[1])
        assert port != 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=5) as resp:
            assert resp.status == 200
        assert d.stop() == 0


# -- 4. a refused reload is visible ---------------------------------------------


@pytest.mark.slow
def test_a_refused_reload_says_so_in_the_status_line(workspace: Path, notify: NotifySocket, tmp_path: Path) -> None:
    cfg = tmp_path / "sessiond.toml"
    cfg.write_text(f'token = "{TOKEN}"\n')
    env = {"NOTIFY_SOCKET": str(notify.path), "SESSIOND_TOKEN": None}
    with Daemon(workspace, "--config", str(cfg), env=env) as d:
        notify.wait_for("READY=1")
        cfg.write_text(f'token = "{TOKEN}"\nrate_limit_per_ip = -5\n')
        notify.messages.clear()
        d.proc.send_signal(signal.SIGHUP)
        ready = next(m for m in notify.wait_for("READY=1") if "READY=1" in m)
        assert (
            "STATUS=reload refused (rate_limit_per_ip: -5 is not a whole number from 0 to 1000000); "
            "serving 0 sessions with the previous configuration" in ready.splitlines()
        )
        # trash_days only applies at start: a reload that changes it says so.
        cfg.write_text(f'token = "{TOKEN}"\ntrash_days = 3\n')
        notify.messages.clear()
        d.proc.send_signal(signal.SIGHUP)
        ready = next(m for m in notify.wait_for("READY=1") if "READY=1" in m)
        assert "STATUS=serving 0 sessions; restart to apply trash_days" in ready.splitlines()
        assert d.stop() == 0
    out = d.output()
    refused_at = out.index("reload refused, keeping the running configuration")
    assert "ERROR sessiond: reload refused" in out
    assert "reloaded: serving" not in out[refused_at : out.index("changed settings need a restart")]
    assert "changed settings need a restart to apply: trash_days" in out


def test_every_setting_is_either_live_or_named_on_reload() -> None:
    from sessiond.web.runtime import LIVE, RESTART_ONLY

    names = {setting.name for setting in config.SETTINGS} - {"token_file"}
    assert names <= LIVE | set(RESTART_ONLY)
    assert "trash_days" in RESTART_ONLY


# -- 5. the scrape listener ----------------------------------------------------


@pytest.mark.slow
def test_scrape_socket_serves_metrics_without_a_token(workspace: Path, tmp_path: Path) -> None:
    """systemd passes the API socket and the one named "metrics" (sessiond-metrics.socket)."""
    api, scrape = socket.socket(), socket.socket()
    for sock in (api, scrape):
        sock.bind(("127.0.0.1", 0))
        sock.listen()
    api_port, scrape_port = api.getsockname()[1], scrape.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    env.update({"SESSIOND_TOKEN": TOKEN, "LISTEN_FDS": "2", "LISTEN_FDNAMES": "sessiond.socket:metrics"})
    fds = (api.fileno(), scrape.fileno())

    def pass_fds() -> None:
        os.dup2(fds[0], 3)
        os.dup2(fds[1], 4)

    cmd = ["sh", "-c", f'LISTEN_PID=$$ exec "{sys.executable}" -m sessiond --workspace "{workspace}" --port {free_port()}']
    log = (tmp_path / "out.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, pass_fds=(3, 4), preexec_fn=pass_fds, stdout=log, stderr=log)
    api.close()
    scrape.close()

    def get(port: int, path: str) -> tuple[int, str, dict[str, str]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if get(api_port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "out.log").read_text()
            time.sleep(0.05)
        status, text, headers = get(scrape_port, "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert 'sessiond_build_info{python="' in text and "sessiond_process_resident_memory_bytes" in text
        assert "sessiond_sessions 0.0" in text
        status, text, _ = get(scrape_port, "/api/v1/sessions")  # the API is not on this socket
        assert status == 404 and json.loads(text) == {"detail": "Not Found"}
        assert get(api_port, "/metrics")[0] == 401  # nor do scrapes skip the token on the API socket
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        out = (tmp_path / "out.log").read_text()
        assert f"metrics on systemd socket http://127.0.0.1:{scrape_port}" in out
        assert f"listening on systemd socket http://127.0.0.1:{api_port}" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


# -- 9. the licence ------------------------------------------------------------


def test_the_license_file_matches_setup_cfg() -> None:
    assert "license = MIT" in (REPO / "setup.cfg").read_text().splitlines()
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


# -- 6. a bad file says what is wrong -----------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"key": "a", "messages": [] "x": 1}', "not valid JSON (Expecting ',' delimiter at line 1 column 29)"),
        (b'{"key": "a",\n "messages": [', "not valid JSON (Expecting value at line 2 column 15)"),
        (b'{"key": "caf\xe9"}', "not valid JSON (not UTF-8 at byte 12)"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON (nested too deeply for Python's json.loads)"),
    ],
)
def test_a_bad_file_is_logged_with_where_and_why(data: bytes, reason: str) -> None:
    from sessiond.core.loader import InvalidSession, parse_session

    with pytest.raises(InvalidSession) as info:
        parse_session(data)
    assert str(info.value) == reason
    assert "TAPE_ERROR" not in str(info.value)


# -- the audit trail's own journal identifier ------------------------------------


def test_audit_records_reach_journald_under_their_own_identifier(tmp_path: Path) -> None:
    """A real datagram socket stands in for /run/systemd/journal/socket."""
    from sessiond.core.audit import Actor, AuditTrail
    from sessiond.ops.logs import JournalAuditHandler

    journald = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journald.bind(str(tmp_path / "journal.sock"))
    journald.settimeout(5)
    fallback = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (closed below)
    handler = JournalAuditHandler(fallback, str(tmp_path / "journal.sock"))
    audit = logging.getLogger("sessiond.audit")
    audit.addHandler(handler)
    audit.setLevel(logging.INFO)
    try:
        AuditTrail(None, 0).write(Actor("support", "10.0.0.1", "rid-1"), "delete", "deleted", "evil\n\x1b[31m", "evil.json")
        fields = dict(line.split("=", 1) for line in journald.recv(65536).decode().splitlines())
    finally:
        audit.removeHandler(handler)
        handler.close()
        fallback.stream.close()
        journald.close()
    assert fields["SYSLOG_IDENTIFIER"] == "sessiond-audit" and fields["SESSIOND_AUDIT"] == "1" and fields["PRIORITY"] == "6"
    record = json.loads(fields["MESSAGE"])
    assert (record["actor"], record["key"], record["client"]) == ("support", "evil\n\x1b[31m", "10.0.0.1")


def test_an_audit_record_journald_cannot_take_goes_to_stderr_instead(tmp_path: Path) -> None:
    import io

    from sessiond.ops.logs import JournalAuditHandler

    out = io.StringIO()
    fallback = logging.StreamHandler(out)
    handler = JournalAuditHandler(fallback, str(tmp_path / "no-journald-here"))
    handler.handle(logging.makeLogRecord({"name": "sessiond.audit", "msg": '{"id":"1"}', "levelno": logging.INFO}))
    handler.close()
    assert out.getvalue() == '{"id":"1"}\n'


def test_a_quiet_log_level_never_drops_an_audit_record() -> None:
    from sessiond.ops.logs import apply_logging

    try:
        apply_logging("ERROR", "text", access_log=False)
        assert logging.getLogger("sessiond.audit").isEnabledFor(logging.INFO)
        assert not logging.getLogger("sessiond.store").isEnabledFor(logging.INFO)
    finally:
        apply_logging("INFO", "text", access_log=True)

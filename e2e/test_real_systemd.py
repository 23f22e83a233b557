"""The shipped units under a real systemd 252, journald, nginx and Prometheus.

One Debian 12 container (systemd as PID 1, private network) for the whole module;
the tests run in file order, each one operating the service as an operator would.
Only time is shortened where the real value would just make the test wait
(Prometheus's scrape interval, the watchdog timeout, in drop-ins).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .container import Container
from .root import build
from .wheels import wheelhouse

REPO = Path(__file__).resolve().parents[1]
GUIDE = (REPO / "docs" / "operations.md").read_text()  # the install steps, followed literally
SRC = "/usr/local/src/sessiond"
SESSIONS = "/var/lib/sessiond/workspace/sessions"
API = "http://127.0.0.1/api/v1"  # the shipped nginx site, in the container


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (debootstrap, systemd-nspawn, nsenter)"
    for tool in ("debootstrap", "systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install debootstrap systemd-container util-linux)"
    return None


pytestmark = pytest.mark.skipif(why_not() is not None, reason=why_not() or "")


def guide_block(after: str, lang: str = "sh") -> str:
    """The first ```lang block after the heading or text *after* in docs/operations.md."""
    start = GUIDE.index(after)
    match = re.compile(rf"```{lang}\n(.*?)```", re.S).search(GUIDE, start)
    assert match, f"no {lang} block after {after!r}"
    return match.group(1)


def source_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return [name for name in out.splitlines() if (REPO / name).is_file()]


@pytest.fixture(scope="module")
def box() -> Iterator[Container]:
    started = time.monotonic()
    root = build()
    wheels = wheelhouse(REPO)
    prepared = time.monotonic()
    c = Container(root, {wheels: "/wheels"}, keep=bool(os.environ.get("SESSIOND_E2E_KEEP")))
    try:
        for name in source_files():  # the checkout, as an operator would have it
            target = c.root / SRC.lstrip("/") / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
        print(f"\ne2e: root and wheels ready in {prepared - started:.1f} s, booted in {time.monotonic() - prepared:.1f} s")
        yield c
    finally:
        c.stop()


def token(box: Container) -> str:
    return box.sh("cat /etc/sessiond/token").stdout.strip()


def curl(box: Container, path: str, tok: str | None = None, method: str = "GET", url: str = API) -> tuple[int, str]:
    auth = f"-H {shlex.quote('Authorization: Bearer ' + tok)} " if tok else ""
    out = box.sh(f"curl -s -X {method} {auth}-w '\\n%{{http_code}}' {shlex.quote(url + path)}").stdout
    body, _, status = out.rpartition("\n")
    return int(status), body


def wait_for(check, timeout: float = 30, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def journal(box: Container, *args: str) -> str:
    return box.sh("journalctl --no-pager -o cat -u sessiond " + " ".join(args)).stdout


def agent_writes(box: Container, key: str, body: str | None = None) -> None:
    """The agent saves a session its way: <name>.tmp, renamed over <name>.json, umask 0027."""
    doc = body or json.dumps(
        {
            "key": key,
            "messages": [{"role": "user", "content": "hi"}],
            "summary": None,
            "created_at": 1_764_000_000.0,
            "updated_at": 1_764_000_100.0,
        }
    )
    name = re.sub(r"[^\w\-.]", "_", key)
    box.sh(
        f"umask 0027 && printf %s {shlex.quote(doc)} > {SESSIONS}/{name}.tmp && mv {SESSIONS}/{name}.tmp {SESSIONS}/{name}.json",
        user="agent",
    )


def set_config(box: Container, **values: str) -> None:
    """Set keys in /etc/sessiond/sessiond.toml (replacing a line, or appending one); the first call saves it."""
    box.sh("test -e /root/good.toml || cp -p /etc/sessiond/sessiond.toml /root/good.toml")
    for name, value in values.items():
        line = f"{name} = {value}"
        box.sh(
            f"grep -q '^{name} = ' /etc/sessiond/sessiond.toml && sed -i {shlex.quote(f's|^{name} = .*|{line}|')} "
            f"/etc/sessiond/sessiond.toml || echo {shlex.quote(line)} >> /etc/sessiond/sessiond.toml"
        )


def restore_config(box: Container) -> None:
    box.sh("mv /root/good.toml /etc/sessiond/sessiond.toml")


# -- install ---------------------------------------------------------------------


def test_the_readme_install_steps_bring_the_service_up(box: Container) -> None:
    box.sh("useradd --create-home --shell /bin/sh agent")
    install = guide_block("### Install").replace("/path/to/sessiond", SRC).replace("AGENT", "agent")
    box.sh(f"set -ex\ncd {SRC}\n{install}", env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheels"}, timeout=300)
    state = box.show("sessiond.service", "ActiveState", "SubState", "StatusText", "Type", "NRestarts")
    assert state == {
        "ActiveState": "active",
        "SubState": "running",
        "StatusText": "serving 0 sessions",
        "Type": "notify",
        "NRestarts": "0",
    }
    # The notification arrived because the daemon was listening and indexed: READY.
    assert "ready: serving 0 sessions" in journal(box)


def test_the_shipped_nginx_site_serves_the_api(box: Container) -> None:
    nginx = guide_block("## Behind nginx")
    box.sh(f"set -ex\ncd {SRC}\n{nginx}")
    # `systemctl reload nginx` returns before the new workers answer.
    wait_for(lambda: curl(box, "/sessions", token(box))[0] != 404, what="nginx reloaded")
    assert curl(box, "/sessions", token(box)) == (200, '{"sessions":[],"count":0}')
    status, body = curl(box, "/sessions", "wrong-token-0123456789")
    assert status == 401 and json.loads(body) == {"detail": "Authentication required"}
    assert curl(box, "/health", url="http://127.0.0.1") == (200, '{"status":"ok","sessions":0}')


def test_the_agent_writes_and_sessiond_deletes_through_the_group(box: Container) -> None:
    agent_writes(box, "user:alice:plans")
    tok = token(box)
    wait_for(lambda: curl(box, "/sessions", tok)[1] == '{"sessions":["user:alice:plans"],"count":1}', what="indexed")
    status, body = curl(box, "/sessions/user:alice:plans", tok)
    assert status == 200 and json.loads(body)["message_count"] == 1
    assert curl(box, "/sessions/user:alice:plans", tok, method="DELETE") == (200, '{"deleted":true,"key":"user:alice:plans"}')
    assert box.sh(f"ls -A {SESSIONS}").stdout == ""
    assert curl(box, "/sessions/user:alice:plans", tok)[0] == 404


# -- 1. journald priorities -------------------------------------------------------


def test_journalctl_priority_filters_find_sessiond_warnings(box: Container) -> None:
    box.sh(f"umask 0027 && printf '{{not json' > {SESSIONS}/broken.json", user="agent")
    wait_for(lambda: "broken.json" in journal(box, "-p", "warning"), what="warning in the journal")
    assert "broken.json" not in journal(box, "-p", "err")
    warnings = journal(box, "-p", "warning")
    assert "ready: serving" not in warnings  # info stays info
    assert "ready: serving" in journal(box, "-p", "info")
    box.sh(f"rm {SESSIONS}/broken.json")


# -- 5. Prometheus ------------------------------------------------------------------


def test_prometheus_scrapes_the_metrics_socket(box: Container) -> None:
    job = guide_block("**Scraping.**", "yaml")
    box.write("/etc/prometheus/prometheus.yml", "global:\n  scrape_interval: 1s\n" + job)
    box.sh("systemctl restart prometheus")

    def target() -> dict[str, object] | None:
        out = box.sh("curl -s http://127.0.0.1:9090/api/v1/targets", check=False).stdout
        try:
            targets = json.loads(out)["data"]["activeTargets"]
        except (ValueError, KeyError):
            return None
        up = [t for t in targets if t["labels"]["job"] == "sessiond" and t["health"] == "up"]
        return up[0] if up else None

    found = wait_for(target, timeout=60, what="Prometheus target up")
    assert found["scrapeUrl"] == "http://127.0.0.1:9477/metrics"

    def query(expr: str) -> list[dict[str, object]]:
        out = box.sh(f"curl -s --data-urlencode {shlex.quote('query=' + expr)} http://127.0.0.1:9090/api/v1/query").stdout
        return list(json.loads(out)["data"]["result"])

    build_info = wait_for(lambda: query("sessiond_build_info"), what="build_info scraped")
    assert build_info[0]["metric"]["version"] and build_info[0]["metric"]["python"].startswith("3.11")
    rss = wait_for(lambda: query("sessiond_process_resident_memory_bytes"), what="process metrics scraped")
    assert float(rss[0]["value"][1]) > 10e6  # type: ignore[index]
    # The scrape needed no token, and the API still does; nginx does not proxy /metrics.
    assert curl(box, "/metrics", url="http://127.0.0.1")[0] == 404


# -- 2. token rotation by reload --------------------------------------------------------


def test_reload_applies_a_rotated_token(box: Container) -> None:
    old = token(box)
    new = "rotated-" + old[:24]
    box.sh(f"printf '%s\\n' {shlex.quote(new)} > /etc/sessiond/token")
    box.sh("systemctl reload sessiond")
    wait_for(lambda: box.show("sessiond", "StatusText")["StatusText"].startswith("serving"), what="reloaded")
    assert curl(box, "/sessions", old)[0] == 401
    assert curl(box, "/sessions", new)[0] == 200


def test_named_tokens_rotate_and_go_on_reload_and_every_deletion_is_audited(box: Container) -> None:
    box.sh(guide_block("A read-only token for the web page"))  # the guide's steps, literally
    wait_for(lambda: box.show("sessiond", "StatusText")["StatusText"].startswith("serving"), what="reloaded")
    admin, support = token(box), box.sh("cat /etc/sessiond/tokens/support").stdout.strip()
    agent_writes(box, "user:bob:1")
    wait_for(lambda: curl(box, "/sessions", support)[1] == '{"sessions":["user:bob:1"],"count":1}', what="indexed")
    status, body = curl(box, "/sessions/user:bob:1", support, method="DELETE")
    assert status == 403 and json.loads(body) == {"detail": "The token 'support' may not delete sessions"}
    assert json.loads(curl(box, "/whoami", support)[1]) == {"name": "support", "scope": "read"}

    # Rotation: the new secret works from the reload on, the old one stops.
    box.sh("python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > /etc/sessiond/tokens/support")
    rotated = box.sh("cat /etc/sessiond/tokens/support").stdout.strip()
    box.sh("systemctl reload sessiond")
    assert curl(box, "/sessions", support)[0] == 401 and curl(box, "/sessions", rotated)[0] == 200

    # A hostile name is refused like a bad config: the reload fails visibly, the running set stays.
    box.sh("cp -p /etc/sessiond/tokens.toml /root/tokens.toml")
    box.sh(
        """printf '[[token]]\\nname = "x\\\\nINFO forged"\\nscope = "admin"\\nfile = "/etc/sessiond/token"\\n' >> /etc/sessiond/tokens.toml"""
    )
    assert box.sh("systemctl reload sessiond", check=False).returncode != 0
    assert "tokens_file: " in box.sh("systemctl status --no-pager --lines=20 sessiond", check=False).stdout
    assert curl(box, "/sessions", rotated)[0] == 200
    assert "INFO forged" not in journal(box)
    box.sh("mv /root/tokens.toml /etc/sessiond/tokens.toml && systemctl reload sessiond")

    # The delete, by the admin token, through nginx: its record is in the journal and the state directory.
    assert curl(box, "/sessions/user:bob:1", admin, method="DELETE")[0] == 200
    records = [
        json.loads(line) for line in box.sh("journalctl --no-pager -o cat SYSLOG_IDENTIFIER=sessiond-audit").stdout.splitlines()
    ]
    shown = [(r["actor"], r["key"], r["outcome"]) for r in records]
    assert shown[-2:] == [("support", "user:bob:1", "refused"), ("admin", "user:bob:1", "deleted")]
    assert records[-1]["client"] == "127.0.0.1" and records[-1]["file"] == "user_bob_1.json"
    stored = box.sh("tail -n 1 /var/lib/sessiond/state/audit.jsonl").stdout
    assert json.loads(stored)["id"] == records[-1]["id"]
    page = json.loads(curl(box, "/audit?prefix=user:bob:", admin)[1])
    assert [r["outcome"] for r in page["records"]] == ["deleted", "refused"]

    # Removal: the token stops working at the reload.
    box.sh("true > /etc/sessiond/tokens.toml && systemctl reload sessiond")
    assert curl(box, "/sessions", rotated)[0] == 401 and curl(box, "/sessions", admin)[0] == 200


# -- 4. a refused reload is visible --------------------------------------------------------


def test_a_broken_config_is_refused_visibly(box: Container) -> None:
    pid = box.show("sessiond", "MainPID")["MainPID"]
    set_config(box, rate_limit_per_ip="-5")
    try:
        reload = box.sh("systemctl reload sessiond", check=False)
    finally:
        restore_config(box)
    assert reload.returncode != 0
    status = box.sh("systemctl status --no-pager --lines=20 sessiond", check=False).stdout
    assert "reload refused (rate_limit_per_ip: -5 is not a whole number from 0 to 1000000); still serving" in status
    errors = journal(box, "-p", "err")
    assert "sessiond: rate_limit_per_ip: -5 is not a whole number from 0 to 1000000" in errors
    state = box.show("sessiond", "ActiveState", "MainPID")
    assert state == {"ActiveState": "active", "MainPID": pid}
    assert curl(box, "/sessions", token(box))[0] == 200
    # Fixed: the next reload is a reload again, and says so.
    box.sh("systemctl reload sessiond")
    wait_for(lambda: box.show("sessiond", "StatusText")["StatusText"] == "serving 0 sessions", what="status back")


def test_check_config_as_the_service_user(box: Container) -> None:
    check = "runuser -u sessiond -- /opt/sessiond/bin/sessiond check-config --config /etc/sessiond/sessiond.toml"
    ok = box.sh(check)
    assert 'workspace = "/var/lib/sessiond/workspace"' in ok.stdout and token(box) not in ok.stdout
    box.sh("chmod 0000 /etc/sessiond/token")
    try:
        bad = box.sh(check, check=False)
    finally:
        box.sh("chmod 0400 /etc/sessiond/token")
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == "sessiond: token_file: cannot read /etc/sessiond/token (Permission denied); fix the path or its permissions"
    )


# -- restart under load ------------------------------------------------------------------

LOAD = r"""
import http.client, json, socket, sys, threading, time
TOKEN, SECONDS, EXPECTED = sys.argv[1], float(sys.argv[2]), sys.argv[3]
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.settimeout(30)
        self.sock.connect("/run/sessiond/sessiond.sock")
counts, wrong, lock = {}, [], threading.Lock()
def worker():
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        c = Unix("sessiond", timeout=30)
        try:
            c.request("GET", "/api/v1/sessions", headers={"Authorization": "Bearer " + TOKEN})
            r = c.getresponse(); body = r.read().decode(); outcome = str(r.status)
            starting = r.status == 503 and r.getheader("Retry-After") and json.loads(body)["detail"].startswith("Service unavailable: starting")
            if not (r.status == 200 and body == EXPECTED) and not starting:
                wrong.append(f"{r.status} {body[:200]}")
        except OSError as exc:
            outcome = type(exc).__name__
            wrong.append(outcome)
        finally:
            c.close()
        with lock:
            counts[outcome] = counts.get(outcome, 0) + 1
threads = [threading.Thread(target=worker) for _ in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps({"counts": counts, "wrong": wrong[:20]}))
"""


def test_restart_under_load_refuses_nothing_and_answers_right(box: Container) -> None:
    """No refused connection and no wrong answer: the whole list, or a 503 with Retry-After while starting."""
    tok = token(box)
    for i in range(50):
        agent_writes(box, f"load:{i:02d}")
    expected = json.dumps({"sessions": [f"load:{i:02d}" for i in range(50)], "count": 50}, separators=(",", ":"))
    wait_for(lambda: curl(box, "/sessions", tok)[1] == expected, what="50 sessions indexed")
    # The load goes straight to the socket (nginx's edge limit would answer 429s);
    # sessiond's own limits are turned off for it and restored afterwards.
    set_config(box, rate_limit_per_ip="0", rate_limit_per_token="0")
    box.sh("systemctl reload sessiond")
    box.write("/root/load.py", LOAD)
    load = box.popen(f"python3 /root/load.py {shlex.quote(tok)} 12 {shlex.quote(expected)}")
    time.sleep(2)
    pids = {box.show("sessiond", "MainPID")["MainPID"]}
    for _ in range(2):
        box.sh("systemctl restart sessiond")
        pids.add(box.show("sessiond", "MainPID")["MainPID"])
        time.sleep(2)
    out, err = load.communicate(timeout=60)
    assert load.returncode == 0, err
    result = json.loads(out)
    assert len(pids) == 3  # really restarted twice
    assert result["wrong"] == [], result
    assert result["counts"].get("200", 0) > 100, result
    restore_config(box)
    box.sh("systemctl reload sessiond")


# -- watchdog ------------------------------------------------------------------------------


def test_a_hung_daemon_is_killed_by_the_watchdog(box: Container) -> None:
    # The shipped 30 s, shortened so the test does not wait for it.
    box.write("/etc/systemd/system/sessiond.service.d/watchdog.conf", "[Service]\nWatchdogSec=4s\n")
    box.sh("systemctl daemon-reload && systemctl restart sessiond")
    before = box.show("sessiond", "MainPID", "NRestarts")
    since = box.sh("date +%s").stdout.strip()
    box.sh(f"kill -STOP {before['MainPID']}")  # hung: no watchdog pings
    wait_for(
        lambda: "Watchdog timeout" in box.sh(f"journalctl --no-pager -o cat --since=@{since} -u sessiond").stdout,
        timeout=30,
        what="watchdog timeout",
    )
    box.sh(f"kill -CONT {before['MainPID']}", check=False)  # lets the pending SIGABRT reach faulthandler
    after = wait_for(
        lambda: (
            (s := box.show("sessiond", "MainPID", "NRestarts", "ActiveState"))["ActiveState"] == "active"
            and s["MainPID"] not in ("0", before["MainPID"])
            and s
        ),
        timeout=60,
        what="restarted",
    )
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    errors = box.sh(f"journalctl --no-pager -o cat --since=@{since} -u sessiond -p err").stdout
    assert "Fatal Python error: Aborted" in errors and "File " in errors, errors
    box.sh("rm -r /etc/systemd/system/sessiond.service.d && systemctl daemon-reload && systemctl restart sessiond")


# -- 3. a config error is final --------------------------------------------------------------


def test_a_bad_config_fails_instead_of_restarting_forever(box: Container) -> None:
    set_config(box, port='"eighty"')
    since = box.sh("date +%s").stdout.strip()
    try:
        assert box.sh("systemctl restart sessiond", check=False).returncode != 0

        def starts() -> int:
            log = box.sh(f"journalctl --no-pager -o cat --since=@{since} -u sessiond").stdout
            return log.count("Failed to start sessiond.service")

        # Restart= never retries exit 2. Connections to the sockets (Prometheus scrapes
        # every second here) start it again until the start limit; then the sockets
        # fail too and nothing starts it any more.
        wait_for(
            lambda: box.show("sessiond.socket", "ActiveState")["ActiveState"] == "failed", timeout=30, what="start limit hit"
        )
        attempts = starts()
        time.sleep(4)
        assert starts() == attempts <= 5
        state = box.show("sessiond", "ActiveState", "ExecMainStatus", "NRestarts")
        assert state == {"ActiveState": "failed", "ExecMainStatus": "2", "NRestarts": "0"}
        # One line per start that ran (the last "Failed to start" is the limit's refusal).
        errors = box.sh(f"journalctl --no-pager -o cat --since=@{since} -u sessiond -p err").stdout
        assert 1 <= errors.count("sessiond: port: 'eighty' is not a whole number from 0 to 65535") <= attempts, errors
        assert "Traceback" not in errors
    finally:
        restore_config(box)
        box.sh(
            "systemctl reset-failed sessiond.service sessiond.socket sessiond-metrics.socket && "
            "systemctl start sessiond.socket sessiond-metrics.socket sessiond.service"
        )
    assert box.show("sessiond", "ActiveState")["ActiveState"] == "active"


# -- clean stop ------------------------------------------------------------------------------


def test_a_clean_stop_exits_0_and_keeps_the_snapshot(box: Container) -> None:
    since = box.sh("date +%s").stdout.strip()
    agent_writes(box, "last:words")  # a change the stop must keep (an unchanged index is not written again)
    tok = token(box)
    wait_for(lambda: curl(box, "/sessions/last:words", tok)[0] == 200, what="indexed")
    box.sh("systemctl stop sessiond.socket sessiond-metrics.socket sessiond.service")
    state = box.show("sessiond", "ActiveState", "Result", "ExecMainStatus")
    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    snapshot = box.sh("stat -c %Y /var/lib/sessiond/state/index.snapshot").stdout.strip()
    assert int(snapshot) >= int(since)
    log = box.sh(f"journalctl --no-pager -o cat --since=@{since} -u sessiond").stdout
    assert "stopping" in log and "Traceback" not in log


# -- several agents on one host: sessiond@a and sessiond@b ---------------------------------

AGENTS = "http://127.0.0.1/agents"  # the shipped agents site, in the container


def agent_token(box: Container, name: str) -> str:
    return box.sh(f"cat /etc/sessiond/{name}.token").stdout.strip()


def agent_writes_to(box: Container, name: str, key: str) -> None:
    """The agent saves a session into agent *name*'s workspace (temp file, then rename)."""
    doc = json.dumps(
        {"key": key, "messages": [{"role": "user", "content": "hi"}], "summary": None, "created_at": 1.0, "updated_at": 2.0}
    )
    folder = f"/var/lib/sessiond/{name}/workspace/sessions"
    file = re.sub(r"[^\w\-.]", "_", key)
    box.sh(
        f"umask 0027 && printf %s {shlex.quote(doc)} > {folder}/{file}.tmp && mv {folder}/{file}.tmp {folder}/{file}.json",
        user="agent",
    )


def test_two_agents_each_serve_their_own_workspace(box: Container) -> None:
    host = guide_block("**Units, once per host**")
    box.sh(f"set -ex\ncd {SRC}\n{host}")
    each = guide_block("**Each agent**")
    for name in ("a", "b"):
        box.sh(f"set -ex\ncd {SRC}\n" + each.replace("NAME", name).replace("AGENT", "agent"))
    for name in ("a", "b"):
        state = box.show(f"sessiond@{name}.service", "ActiveState", "StatusText", "Type", "NRestarts")
        assert state == {"ActiveState": "active", "StatusText": "serving 0 sessions", "Type": "notify", "NRestarts": "0"}
    box.sh(f"set -ex\ncd {SRC}\n{guide_block('config/nginx/sessiond-agents.conf` routes')}")
    tokens = {name: agent_token(box, name) for name in ("a", "b")}
    assert tokens["a"] != tokens["b"]
    wait_for(lambda: curl(box, "/a/api/v1/sessions", tokens["a"], url=AGENTS)[0] == 200, what="nginx reloaded")
    agent_writes_to(box, "a", "only:in:a")
    agent_writes_to(box, "b", "only:in:b")
    for name in ("a", "b"):
        expected = f'{{"sessions":["only:in:{name}"],"count":1}}'
        wait_for(lambda n=name, e=expected: curl(box, f"/{n}/api/v1/sessions", tokens[n], url=AGENTS)[1] == e, what="indexed")
        assert curl(box, f"/{name}/health", url=AGENTS) == (200, '{"status":"ok","sessions":1}')
        # Each instance's own paths, named by the instance.
        assert box.sh(f"stat -c %U /var/lib/sessiond/{name}/state").stdout.strip() == "sessiond"
        assert box.sh(f"test -S /run/sessiond/{name}.sock && test -S /run/sessiond/{name}.metrics.sock").returncode == 0
    assert curl(box, "/b/api/v1/sessions", tokens["a"], url=AGENTS)[0] == 401  # a's token does not open b
    status, body = curl(box, "/a/ui", url=AGENTS)
    assert status == 308
    status, body = curl(box, "/a/ui/", url=AGENTS)
    assert status == 200 and 'src="v/' in body


def test_prometheus_scrapes_each_agent_with_an_instance_label(box: Container) -> None:
    job = guide_block("its `instance` label the", "yaml")
    box.write("/etc/prometheus/prometheus.yml", "global:\n  scrape_interval: 1s\n" + job)
    box.sh("systemctl restart prometheus")

    def query(expr: str) -> dict[str, str]:
        url = "http://127.0.0.1:9090/api/v1/query"  # not listening yet for a moment after the restart
        out = box.sh(f"curl -s --data-urlencode {shlex.quote('query=' + expr)} {url}", check=False).stdout
        try:
            result = json.loads(out)["data"]["result"]
        except (ValueError, KeyError):
            return {}
        return {r["metric"]["instance"]: r["value"][1] for r in result}

    agent_writes_to(box, "b", "second:in:b")
    assert wait_for(
        lambda: (found := query("sessiond_sessions")) == {"a": "1", "b": "2"} and found, timeout=60, what="both scraped"
    )
    assert query("up == 1") == {"a": "1", "b": "1"}  # both targets up, named by their instance label


def test_reloading_one_agent_leaves_the_other_alone(box: Container) -> None:
    def snapshot(name: str) -> dict[str, str]:
        state = box.show(f"sessiond@{name}", "MainPID", "NRestarts", "ActiveState", "StatusText", "ExecMainStartTimestamp")
        state["sessions"] = curl(box, f"/{name}/api/v1/sessions", agent_token(box, name), url=AGENTS)[1]
        return state

    b_before = snapshot("b")
    a_pid = box.show("sessiond@a", "MainPID")["MainPID"]
    old = agent_token(box, "a")
    new = "rotated-" + old[:24]
    since = box.sh("date +%s").stdout.strip()
    box.sh(f"printf '%s\\n' {shlex.quote(new)} > /etc/sessiond/a.token")
    box.sh("systemctl reload sessiond@a")
    wait_for(lambda: curl(box, "/a/api/v1/sessions", new, url=AGENTS)[0] == 200, what="a reloaded")
    assert curl(box, "/a/api/v1/sessions", old, url=AGENTS)[0] == 401
    assert box.show("sessiond@a", "MainPID")["MainPID"] == a_pid  # a reload, not a restart
    assert snapshot("b") == b_before
    assert curl(box, "/b/api/v1/sessions", agent_token(box, "b"), url=AGENTS)[0] == 200
    b_log = box.sh(f"journalctl --no-pager -o cat --since=@{since} -u sessiond@b").stdout
    assert "reload" not in b_log.lower(), b_log
    a_log = box.sh(f"journalctl --no-pager -o cat --since=@{since} -u sessiond@a").stdout
    assert "reload" in a_log.lower(), a_log

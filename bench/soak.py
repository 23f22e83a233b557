"""Soak: minutes of file churn plus API load against a real sessiond process.

    python -m bench.soak --minutes 10             # churn + list/detail/query/export/SSE/metrics + stalled clients
    python -m bench.soak --minutes 10 --traced    # the same, with tracemalloc diffs in the workspace

Every --sample seconds it prints the daemon's RSS, open file descriptors,
threads and event-loop tasks, the requests answered and failed, and the
reconcile drift counter. Every --check seconds the churn pauses and the API is
compared with the disk (read here with the stdlib json module); the pause ends
after at most 2 s, the promise of the issue. Exits 1 on any 5xx or connection
error, any disagreement between API and disk, or growth of RSS, descriptors or
tasks between the first and the last third of the run. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

TOKEN = "soak-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def session_bytes(key: str, messages: int, stamp: float) -> bytes:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " * 20} for i in range(messages)]
    return json.dumps({"key": key, "messages": msgs, "summary": None, "created_at": stamp - 100, "updated_at": stamp}).encode()


def disk_model(folder: Path) -> dict[str, int]:
    """key -> message count of every valid session file (independent of sessiond's loader)."""
    best: dict[str, tuple[tuple[float, str], int]] = {}
    for name in os.listdir(folder):
        path = folder / name
        if not name.endswith(".json") or path.is_symlink():
            continue
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("key"), str) and doc["key"] and isinstance(doc.get("messages"), list):
            rank = (float(doc.get("updated_at") or 0), name)
            if doc["key"] not in best or rank > best[doc["key"]][0]:
                best[doc["key"]] = (rank, len(doc["messages"]))
    return {key: count for key, (_, count) in best.items()}


class Api:
    """One keep-alive connection to the daemon."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method: str, path: str, auth: bool = True) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
        try:
            self.conn.request(method, path, headers=headers)
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            return 0, b""


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workspace = Path(tempfile.mkdtemp(prefix="sessiond-soak-"))
        self.folder = self.workspace / "sessions"
        self.folder.mkdir()
        self.keys = [f"soak:{i}" for i in range(args.sessions)]
        for key in self.keys:
            (self.folder / (key.replace(":", "_") + ".json")).write_bytes(session_bytes(key, 3, time.time()))
        self.port = free_port()
        self.stop = threading.Event()
        self.running = threading.Event()  # cleared while a drift check holds the churn still
        self.running.set()
        self.lock = threading.Lock()
        self.requests = self.failures = self.churn_ops = self.checks = self.drift_seen = self.cut_exports = 0
        self.samples: list[dict[str, float]] = []
        self.proc: subprocess.Popen[bytes] | None = None

    # -- the daemon --------------------------------------------------------------

    def start_daemon(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
        env.update(
            SESSIOND_TOKEN=TOKEN,
            SESSIOND_RATE_LIMIT_PER_IP="0",
            SESSIOND_RATE_LIMIT_PER_TOKEN="0",
            SESSIOND_ACCESS_LOG="0",
            SESSIOND_LOG_LEVEL="WARNING",
            SESSIOND_RECONCILE_INTERVAL="60",
        )
        module = "bench.traced" if self.args.traced else "sessiond"
        if self.args.traced:
            env.update(TRACED_OUT=str(self.workspace / "traced.txt"), TRACED_EVERY=str(self.args.sample * 6))
        cmd = [sys.executable, "-m", module, "--workspace", str(self.workspace), "--port", str(self.port)]
        self.log = (self.workspace / "sessiond.log").open("wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        api, deadline = Api(self.port), time.monotonic() + 30
        while api.call("GET", "/health", auth=False)[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"sessiond did not become ready; see {self.log.name}")
            time.sleep(0.1)

    def proc_figures(self) -> dict[str, float]:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {
            "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "fds": len(os.listdir(f"/proc/{self.proc.pid}/fd")),
            "threads": int(fields["Threads"]),
        }

    def metric(self, api: Api, *names: str) -> dict[str, float]:
        _, body = api.call("GET", "/metrics")
        out = {}
        for line in body.decode().splitlines():
            name, _, value = line.partition(" ")
            if name in names:
                out[name] = float(value)
        return out

    # -- load --------------------------------------------------------------------

    def churn(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            self.running.wait()
            key = rng.choice(self.keys)
            path = self.folder / (key.replace(":", "_") + ".json")
            roll = rng.random()
            if roll < 0.55:  # the agent: tmp file renamed over the session
                tmp = path.with_name(path.name + f".{seed}.tmp")
                tmp.write_bytes(session_bytes(key, rng.randrange(1, 40), time.time()))
                os.replace(tmp, path)
            elif roll < 0.7:  # an editor or restore writing in place, in chunks
                data = session_bytes(key, rng.randrange(1, 40), time.time())
                with path.open("wb") as fh:
                    fh.write(data[: len(data) // 2])
                    fh.flush()
                    fh.write(data[len(data) // 2 :])
            elif roll < 0.8:
                path.unlink(missing_ok=True)
            elif roll < 0.85:  # garbage, fixed a little later by the next write of that key
                path.write_bytes(b'{"key": "broken')
            else:
                stray = self.folder / f"stray-{seed}.tmp"
                stray.write_bytes(b"{")
                stray.unlink()
            with self.lock:
                self.churn_ops += 1
            time.sleep(1 / self.args.churn_rate)

    def clients(self, seed: int) -> None:
        rng, api = random.Random(seed), Api(self.port)
        while not self.stop.is_set():
            self.running.wait()
            roll = rng.random()
            if roll < 0.2:
                status, _ = api.call("GET", "/api/v1/sessions")
            elif roll < 0.3:
                status, _ = api.call(
                    "GET", f"/api/v1/sessions?prefix=soak:{rng.randrange(10)}&sort=updated_at&limit=50&include=meta"
                )
            elif roll < 0.75:
                status, _ = api.call("GET", "/api/v1/sessions/" + quote(rng.choice(self.keys), safe=""))
            elif roll < 0.8:
                status, _ = api.call("DELETE", "/api/v1/sessions/" + quote(rng.choice(self.keys), safe=""))
            elif roll < 0.86:
                prefix = "soak:" if rng.random() < 0.3 else f"soak:{rng.randrange(10)}"  # all of them, or a tenth
                status, _ = api.call("GET", f"/api/v1/export?prefix={prefix}")  # NDJSON
            elif roll < 0.92:
                status, _ = api.call("GET", "/api/v1/export?key=" + quote(rng.choice(self.keys), safe=""))
                if status == 0:  # cut on purpose: the churn rewrote the file in place while it was sent
                    with self.lock:
                        self.cut_exports += 1
                    status = 200
                status = 200 if status == 404 else status  # churn deletes sessions
            elif roll < 0.97:
                status, _ = api.call("GET", "/metrics")
            else:
                status, _ = api.call("GET", "/api/v1/sessions/..%2F..%2Fetc%2Fpasswd")
            with self.lock:
                self.requests += 1
                self.failures += status == 0 or status >= 500

    def feeds(self, seed: int) -> None:
        """A change-feed reader that reads everything, and reconnects now and then."""
        rng = random.Random(seed)
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)  # pings come every 15 s
                conn.request("GET", "/api/v1/events", headers={"Authorization": f"Bearer {TOKEN}"})
                resp = conn.getresponse()
                until = time.monotonic() + rng.uniform(5, 30)
                while time.monotonic() < until and not self.stop.is_set() and resp.fp is not None:
                    resp.fp.readline()
                conn.close()
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.failures += 1
            with self.lock:
                self.requests += 1

    def stalled(self, seed: int) -> None:
        """Clients that ask for a feed or an export and never read: the daemon must drop them."""
        rng = random.Random(seed)
        while not self.stop.is_set():
            target = rng.choice(["/api/v1/events", "/api/v1/export?prefix=soak:"])
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(f"GET {target} HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
                self.stop.wait(rng.uniform(20, 60))
                sock.close()
            except OSError:
                pass  # a hostile client's fate is not the daemon's failure

    # -- checks ------------------------------------------------------------------

    def check_drift(self, api: Api) -> int:
        """Pause the churn, then count keys on which API and disk still disagree after 2 s."""
        self.running.clear()
        time.sleep(0.2)  # let in-progress operations finish
        try:
            deadline = time.monotonic() + 2.0
            while True:
                expected = disk_model(self.folder)
                _, body = api.call("GET", "/api/v1/sessions")
                answered = set(json.loads(body)["sessions"]) if body else set()
                wrong = len(answered ^ set(expected))
                if not wrong:
                    for key in rng_sample(sorted(expected), 50):
                        status, body = api.call("GET", "/api/v1/sessions/" + quote(key, safe=""))
                        wrong += status != 200 or json.loads(body)["message_count"] != expected[key]
                if not wrong or time.monotonic() > deadline:
                    if wrong and self.args.explain:
                        self.explain(api, expected, answered)
                    return wrong
                time.sleep(0.05)
        finally:
            self.checks += 1
            self.running.set()

    def explain(self, api: Api, expected: dict[str, int], answered: set[str]) -> None:
        """Print what the disk and the API say of a few keys they disagree on."""
        for key in sorted(answered ^ set(expected))[:5]:
            path = self.folder / (key.replace(":", "_") + ".json")
            status, body = api.call("GET", "/api/v1/sessions/" + quote(key, safe=""))
            on_disk = path.read_bytes()[:60] if path.exists() else None
            print(f"  disagree {key}: disk {expected.get(key)} {on_disk!r}; api {status} {body[:80]!r}", flush=True)

    def run(self) -> int:
        self.start_daemon()
        threads = [threading.Thread(target=self.churn, args=(i,), daemon=True) for i in range(self.args.writers)]
        threads += [threading.Thread(target=self.clients, args=(100 + i,), daemon=True) for i in range(self.args.clients)]
        threads += [threading.Thread(target=self.feeds, args=(200 + i,), daemon=True) for i in range(self.args.feeds)]
        threads += [threading.Thread(target=self.stalled, args=(300 + i,), daemon=True) for i in range(self.args.stalled)]
        for t in threads:
            t.start()
        api = Api(self.port)
        started = time.monotonic()
        end = started + self.args.minutes * 60
        next_check = started + self.args.check
        print(
            f"{'t_s':>6} {'rss_mb':>7} {'fds':>4} {'thr':>4} {'tasks':>5} {'sessions':>8} {'requests':>9} {'errors':>6} {'churn':>7} {'reconc':>6} {'drift_ctr':>9} {'drift_chk':>9}"
        )
        while time.monotonic() < end:
            time.sleep(self.args.sample)
            drift_now = None
            if time.monotonic() >= next_check:
                drift_now = self.check_drift(api)
                self.drift_seen += drift_now
                next_check = time.monotonic() + self.args.check
            m = self.metric(
                api, "sessiond_asyncio_tasks", "sessiond_sessions", "sessiond_reconciles_total", "sessiond_reconcile_drift_total"
            )
            sample = {"t": time.monotonic() - started, **self.proc_figures(), "tasks": m.get("sessiond_asyncio_tasks", -1)}
            self.samples.append(sample)
            print(
                f"{sample['t']:6.0f} {sample['rss_mb']:7.1f} {sample['fds']:4.0f} {sample['threads']:4.0f} {sample['tasks']:5.0f} "
                f"{m.get('sessiond_sessions', -1):8.0f} {self.requests:9d} {self.failures:6d} {self.churn_ops:7d} "
                f"{m.get('sessiond_reconciles_total', -1):6.0f} {m.get('sessiond_reconcile_drift_total', -1):9.0f} "
                f"{'-' if drift_now is None else drift_now:>9}",
                flush=True,
            )
        self.stop.set()
        self.running.set()
        final_drift = self.check_drift(api)
        return self.verdict(final_drift)

    def verdict(self, final_drift: int) -> int:
        third = max(len(self.samples) // 3, 1)
        first, last = self.samples[:third], self.samples[-third:]
        growth = {
            k: statistics.median(s[k] for s in last) - statistics.median(s[k] for s in first) for k in ("rss_mb", "fds", "tasks")
        }
        base_rss = statistics.median(s["rss_mb"] for s in first)
        problems = []
        if self.failures:
            problems.append(f"{self.failures} requests failed (5xx or connection error)")
        if self.drift_seen or final_drift:
            problems.append(f"API and disk disagreed after 2 s: {self.drift_seen} during the run, {final_drift} at the end")
        if growth["rss_mb"] > max(5.0, 0.10 * base_rss):
            problems.append(f"RSS grew {growth['rss_mb']:.1f} MB")
        if growth["fds"] > 5 or growth["tasks"] > 10:
            problems.append(f"descriptors grew {growth['fds']:.0f}, tasks grew {growth['tasks']:.0f}")
        cut = sum(
            "cut: the file changed while it was sent" in line for line in (self.workspace / "sessiond.log").open(errors="replace")
        )
        if self.cut_exports > cut:
            problems.append(f"{self.cut_exports} single-file exports broke off, the daemon cut only {cut} on purpose")
        print(
            json.dumps(
                {
                    "requests": self.requests,
                    "errors": self.failures,
                    "cut_exports": self.cut_exports,
                    "churn_ops": self.churn_ops,
                    "drift_checks": self.checks,
                    "drift_seen": self.drift_seen,
                    "final_drift": final_drift,
                    "growth_first_to_last_third": growth,
                }
            )
        )
        print("FAIL: " + "; ".join(problems) if problems else "PASS")
        return 1 if problems else 0

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        print(f"workspace and daemon log kept in {self.workspace}")


def rng_sample(items: list[str], n: int) -> list[str]:
    return random.sample(items, min(n, len(items)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5)
    p.add_argument("--sessions", type=int, default=500, help="session keys in play")
    p.add_argument("--writers", type=int, default=2, help="churn threads")
    p.add_argument("--churn-rate", dest="churn_rate", type=float, default=100, help="file operations/s per writer")
    p.add_argument("--clients", type=int, default=4, help="API client threads")
    p.add_argument("--sample", type=float, default=10, help="seconds between samples")
    p.add_argument("--check", type=float, default=30, help="seconds between drift checks")
    p.add_argument("--feeds", type=int, default=2, help="change-feed readers")
    p.add_argument("--stalled", type=int, default=3, help="clients that stop reading a feed or an export")
    p.add_argument("--explain", action="store_true", help="print a few keys API and disk disagree on")
    p.add_argument("--traced", action="store_true", help="run the daemon under tracemalloc (bench/traced.py)")
    soak = Soak(p.parse_args())
    try:
        return soak.run()
    finally:
        soak.close()


if __name__ == "__main__":
    sys.exit(main())

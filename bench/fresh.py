"""What a detail's freshness stat costs: the same daemon with and without it, side by side.

Since issue 21 a detail, an export or a DELETE stats the session's file and re-reads
it first when it differs from the index (``SessionStore.current``). This script
starts two daemons on one workspace of --sessions files: ``stat`` as shipped, and
``index`` with ``current`` swapped for the index-only lookup detail used before
(``index.get`` or, on a miss, ``find``). Client processes drive one detail path
over keep-alive connections for --seconds per round, alternating the two daemons
round by round; the figure is the median round of each and their ratio. No files
change meanwhile, so the stat is all the difference. Beside it, in one process, the
lookup alone (µs per call), which does not depend on the client; and the list's
window: from the agent's rename of a new session to the list naming it.

    python -m bench.fresh                     # 2,000 sessions, 5 rounds of 3 s
    python -m bench.fresh --rounds 7 --seconds 5 --clients 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import servers

TOKEN = "bench-fresh-token-0123456789"
# The daemon as shipped, or with the detail's stat taken out (the lookup it replaced).
LAUNCH = """
import sys
from sessiond.live.store import SessionStore
if sys.argv[1] == "index":
    async def current(self, key):
        return self.index.get(key) or await self.find(key)
    SessionStore.current = current
from sessiond.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def write_workspace(root: Path, count: int) -> Path:
    """*count* sessions of 20 messages, saved as the agent saves them (temp file, rename)."""
    folder = root / "sessions"
    folder.mkdir(parents=True)
    now = time.time()
    for i in range(count):
        doc = {
            "key": f"telegram:{i}",
            "messages": [{"role": "user" if j % 2 == 0 else "assistant", "content": f"message {j} " * 8} for j in range(20)],
            "summary": None,
            "created_at": now - 3600,
            "updated_at": now,
        }
        tmp = folder / f"telegram_{i}.tmp"
        tmp.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        tmp.rename(folder / f"telegram_{i}.json")
    return root


def start(mode: str, workspace: Path, log_dir: Path) -> servers.Server:
    port = servers.free_port()
    argv = [sys.executable, "-c", LAUNCH, mode, "--workspace", str(workspace), "--port", str(port)]
    env = servers.environment(
        {
            "SESSIOND_TOKEN": TOKEN,
            "SESSIOND_RATE_LIMIT_PER_IP": "0",
            "SESSIOND_RATE_LIMIT_PER_TOKEN": "0",
            "SESSIOND_ACCESS_LOG": "0",
        }
    )
    with open(log_dir / f"{mode}.log", "wb") as log:
        process = servers.subprocess.Popen(argv, cwd=servers.REPO, env=env, stdout=log, stderr=servers.subprocess.STDOUT)
    server = servers.Server(mode, process, port, log_dir / f"{mode}.log", time.perf_counter())
    servers.wait_ready(server, 60)
    return server


def _client(port: int, path: str, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"detail answered {resp.status}")
        done += 1
    out.put(done)


def drive(port: int, path: str, seconds: float, clients: int) -> float:
    """Requests per second of *clients* processes, each on one keep-alive connection."""
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [multiprocessing.Process(target=_client, args=(port, path, seconds, out)) for _ in range(clients)]
    for worker in workers:
        worker.start()
    total = sum(out.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def per_call_us(workspace: Path, key: str, calls: int = 20_000) -> dict[str, float]:
    """µs per lookup in one process: the stat and compare against the index alone (median of 5 runs)."""
    import asyncio

    from sessiond.core.folder import verify
    from sessiond.live.store import SessionStore

    async def measure() -> dict[str, float]:
        store = SessionStore(workspace / "sessions", 1 << 24)
        store.folder = verify(store.path)
        await store.scan()

        async def index_only(k: str) -> object:
            return store.index.get(k) or await store.find(k)

        figures: dict[str, list[float]] = {"stat": [], "index": []}
        for _ in range(5):
            for mode, lookup in (("stat", store.current), ("index", index_only)):
                began = time.perf_counter()
                for _ in range(calls):
                    await lookup(key)
                figures[mode].append((time.perf_counter() - began) / calls * 1e6)
        return {f"lookup_us_{mode}": round(statistics.median(v), 2) for mode, v in figures.items()}

    return asyncio.run(measure())


def list_window(server: servers.Server, folder: Path, writes: int = 100) -> dict[str, float]:
    """ms from the agent's rename of a new session to the list naming it (polled back to back)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    waits = []
    for i in range(writes):
        key = f"window:{i}"
        tmp = folder / f"window_{i}.tmp"
        tmp.write_text(json.dumps({"key": key, "messages": [], "created_at": 1.0, "updated_at": 1.0}), encoding="utf-8")
        tmp.rename(folder / f"window_{i}.json")
        began = time.perf_counter()
        while True:
            conn.request("GET", f"/api/v1/sessions?prefix=window:{i}&limit=1", headers=headers)
            body = json.loads(conn.getresponse().read())
            if key in body["sessions"]:
                break
        waits.append((time.perf_counter() - began) * 1000)
        time.sleep(0.02)
    waits.sort()
    return {"list_window_ms_median": round(statistics.median(waits), 1), "list_window_ms_max": round(waits[-1], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sessiond-fresh-") as tmp:
        root = write_workspace(Path(tmp) / "workspace", args.sessions)
        daemons = {mode: start(mode, root, Path(tmp)) for mode in ("stat", "index")}
        path = f"/api/v1/sessions/telegram:{args.sessions // 2}"
        lookups = per_call_us(root, f"telegram:{args.sessions // 2}")
        lookups.update(list_window(daemons["stat"], root / "sessions"))
        rps: dict[str, list[float]] = {"stat": [], "index": []}
        try:
            for mode in ("stat", "index"):
                drive(daemons[mode].port, path, 0.5, args.clients)  # warm up
            for i in range(args.rounds):
                order = ("stat", "index") if i % 2 == 0 else ("index", "stat")
                for mode in order:
                    rps[mode].append(drive(daemons[mode].port, path, args.seconds, args.clients))
                print(f"round {i + 1}: " + ", ".join(f"{m} {rps[m][-1]:.0f}/s" for m in order), file=sys.stderr)
        finally:
            for server in daemons.values():
                servers.stop(server)
    ratios = [s / x for s, x in zip(rps["stat"], rps["index"], strict=True)]
    result = {
        "sessions": args.sessions,
        "clients": args.clients,
        "cpus": os.cpu_count(),
        "detail_rps_with_stat": round(statistics.median(rps["stat"])),
        "detail_rps_index_only": round(statistics.median(rps["index"])),
        "ratio_median": round(statistics.median(ratios), 3),
        **lookups,
        "rounds": rps,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

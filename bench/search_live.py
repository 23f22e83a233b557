"""Search figures of a running daemon, beside one with search off (bench/search.py runs these).

- list and detail throughput while the index is being built, beside search off
  (the issue's target: within 10 %), over several pairs of daemons (`measure`);
- RSS with search on (index complete) beside off (target: at most +64 MB);
- write -> searchable at 100 writes/s: new sessions, each with a word of its own,
  and a checker asking for the oldest word not yet found (target: p99 <= 1 s).

Each daemon is a real `python -m sessiond` on the bench's folder; the sessions this
writes are removed at the end, so the folder stays what was generated.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench import servers

AUTH = {"Authorization": f"Bearer {servers.TOKEN}"}


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path, headers=AUTH)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _health(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        return json.loads(_get(conn, "/api/v1/health")[1])
    finally:
        conn.close()


LIST = "/api/v1/sessions?limit=50&include=meta"  # the page's first request (titles from the search index)


def throughput(port: int, keys: list[str], seconds: float, clients: int = 4) -> dict[str, float]:
    """Requests per second of the page's list, then of detail (random keys), each over *seconds*."""
    out: dict[str, float] = {}
    for kind in ("list", "detail"):
        done = [0]
        lock = threading.Lock()
        stop = time.perf_counter() + seconds

        def client(seed: int, kind: str = kind, done: list[int] = done, lock: threading.Lock = lock, stop: float = stop) -> None:
            rng = random.Random(seed)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            n = 0
            while time.perf_counter() < stop:
                status, _ = _get(conn, LIST if kind == "list" else f"/api/v1/sessions/{rng.choice(keys)}")
                assert status == 200, status
                n += 1
            conn.close()
            with lock:
                done[0] += n

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out[kind] = done[0] / seconds
    return out


def write_to_searchable(port: int, folder: Path, rate: float, seconds: float) -> list[float]:
    """Seconds from each write (a new session, a word of its own) to its word being found by the API."""
    written: list[tuple[str, float]] = []
    lock = threading.Lock()
    finished = threading.Event()
    latencies: list[float] = []

    def checker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        found = 0
        while True:
            with lock:
                pending = written[found:] if found < len(written) else []
            if not pending:
                if finished.is_set():
                    break
                time.sleep(0.005)
                continue
            word, at = pending[0]
            status, body = _get(conn, f"/api/v1/search?q={word}&limit=1")
            assert status == 200, body
            if json.loads(body)["results"]:
                latencies.append(time.perf_counter() - at)
                found += 1
            elif time.perf_counter() - at > 30:
                raise AssertionError(f"{word} not searchable after 30 s")
            else:
                time.sleep(0.005)
        conn.close()

    thread = threading.Thread(target=checker)
    thread.start()
    start = time.perf_counter()
    n = int(rate * seconds)
    try:
        for i in range(n):
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            word = f"zlive{i:06d}"
            key = f"livewrite:{i}"
            doc = {
                "key": key,
                "messages": [{"role": "user", "content": f"a fresh message with {word} in it"}],
                "summary": None,
                "created_at": time.time(),
                "updated_at": time.time(),
            }
            path = folder / f"livewrite_{i}.json"
            tmp = folder / f".livewrite_{i}.tmp"
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
            with lock:
                written.append((word, time.perf_counter()))
    finally:
        finished.set()
        thread.join()
    return latencies


def remove_written(folder: Path) -> None:
    for path in folder.glob("livewrite_*.json"):
        path.unlink()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def _start(fleet: servers.Fleet, workspace: Path, search: bool, timeout: float) -> servers.Server:
    """A daemon on *workspace* with a state directory of its own, emptied (a first build when *search*)."""
    mode = "on" if search else "off"
    state = workspace / f"state-{mode}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    env = {**servers.SESSIOND_ENV, "SESSIOND_STATE_DIR": str(state), "SESSIOND_SEARCH": "1" if search else "0"}
    return fleet.start(f"sessiond-search-{mode}", ["sessiond", "--workspace", str(workspace), "--port", "{port}"], env, timeout)


def measure(
    workspace: Path, keys: list[str], seconds: float = 5.0, rate: float = 100.0, write_seconds: float = 20.0, rounds: int = 3
) -> None:
    """Print the live figures for the workspace (its sessions/ folder), search on beside off.

    Throughput while building: *rounds* pairs of daemons, one at a time, each from an empty
    state directory. Search on is measured once its build has begun (it waits for the
    start's own work, the snapshot's first save and the overview's first pass: seconds at
    1M), search off as long after its ready; the median of the rounds' ratios is the
    figure. One pair measured right after ready (as this bench did before) moved by
    +-25 % between two daemons with search off (A/A at 1M, docs/search.md): the start's
    own work is most of what it saw, and the build had not begun in part of its window.
    The last round's search-on daemon goes on to the build's end (its time from ready),
    its RSS, then the writes; that round's search-off daemon's RSS is taken at the same
    age (at 1M search off grew from 299 to 332 MB between 10 s and 5 min, snapshot saves
    and requests: the RSS of one against the other at 10 s was not like for like).
    """
    folder = workspace / "sessions"
    log_dir = workspace / "live-logs"
    log_dir.mkdir(exist_ok=True)
    size = len(keys)
    timeout = 60 + size / 500
    remove_written(folder)
    ratios: list[tuple[float, float]] = []
    lines: list[str] = []
    with servers.Fleet(log_dir) as fleet:
        for round_ in range(rounds):
            on = _start(fleet, workspace, True, timeout)
            started = time.perf_counter()
            while not (before := _health(on.port)["search"])["indexed"]:
                time.sleep(0.05)
            delay = time.perf_counter() - started
            on_rate = throughput(on.port, keys, seconds)
            on_load = os.getloadavg()[0]
            after = _health(on.port)["search"]
            if round_ < rounds - 1:
                fleet.stop(on)
            else:
                while not (figures := _health(on.port)["search"])["complete"]:
                    time.sleep(0.2)
                built = time.perf_counter() - started
                age = time.perf_counter() - on.spawned_at
                on_rss = servers.memory_mb(on.process.pid)["rss_mb"]
                try:
                    latencies = write_to_searchable(on.port, folder, rate, write_seconds)
                finally:
                    remove_written(folder)
                after_writes_rss = servers.memory_mb(on.process.pid)["rss_mb"]
                fleet.stop(on)
            off = _start(fleet, workspace, False, timeout)
            time.sleep(delay)
            off_rate = throughput(off.port, keys, seconds)
            off_load = os.getloadavg()[0]
            if round_ == rounds - 1:  # as old as search on was at its RSS: a daemon's RSS grows in its first minutes
                time.sleep(max(0.0, age - (time.perf_counter() - off.spawned_at)))
                off_rss = servers.memory_mb(off.process.pid)["rss_mb"]
            fleet.stop(off)
            ratio = (on_rate["list"] / off_rate["list"], on_rate["detail"] / off_rate["detail"])
            ratios.append(ratio)
            building = "building throughout" if not after["complete"] else "INDEX COMPLETE BEFORE THE WINDOW ENDED"
            lines.append(
                f"    round {round_ + 1}: build began {delay:.1f} s after ready; {before['indexed']} -> {after['indexed']}"
                f" of {after['total']} indexed ({building}): list {on_rate['list']:.0f}/s, detail {on_rate['detail']:.0f}/s"
                f" (load {on_load:.1f}); search off: list {off_rate['list']:.0f}/s, detail {off_rate['detail']:.0f}/s"
                f" (load {off_load:.1f}) ({(ratio[0] - 1) * 100:+.0f} %, {(ratio[1] - 1) * 100:+.0f} %)"
            )
    list_ratio = statistics.median(r[0] for r in ratios)
    detail_ratio = statistics.median(r[1] for r in ratios)
    print(f"\nlive ({size} sessions; one daemon at a time; list then detail, {seconds:.0f} s each, 4 clients)")
    print(
        f"  while building, beside search off (median of {rounds} rounds): list {(list_ratio - 1) * 100:+.0f} %,"
        f" detail {(detail_ratio - 1) * 100:+.0f} % (target: within 10 %)"
    )
    print("\n".join(lines))
    print(
        f"  build in the daemon: {built:.1f} s after ready ({figures['total']} sessions; load {os.getloadavg()[0]:.1f} at the end)"
    )
    print(
        f"  RSS: search on {on_rss:.0f} MB (index complete), {after_writes_rss:.0f} MB after the writes;"
        f" search off {off_rss:.0f} MB at the same age, {age:.0f} s ({on_rss - off_rss:+.0f} MB)"
    )
    print(
        f"  write -> searchable at {rate:.0f} writes/s for {write_seconds:.0f} s ({len(latencies)} writes):"
        f" p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms,"
        f" max {max(latencies) * 1000:.0f} ms"
    )

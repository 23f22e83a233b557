"""SIGTERM → exit soon after the first ready, and the longest loop stall after it (issue 22, item 4).

Each stop is a cold start on a fresh state directory (so the first snapshot save is
running right after ready), a SIGTERM *after* seconds after /health first answers
200, and the time until the process has exited; the snapshot left on disk is
loaded to check it is valid (or absent). The stall probe asks /health every
50 ms from ready to ready + *probe* seconds on one connection and reports the
longest gap between two answers (the loop held, whatever holds it).

    python -m bench.stop 100000 --after 0 1 2 5 --probe 15
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import gen, servers

PROBE_EVERY = 0.05
AFTER = (0.0, 1.0, 2.0, 5.0)  # seconds after the first ready at which SIGTERM is sent


def _spawn(workspace: Path, state: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    env.update(servers.SESSIOND_ENV)
    env.update({"SESSIOND_STATE_DIR": str(state), "SESSIOND_LOG_LEVEL": "INFO"})
    cmd = [sys.executable, "-m", "sessiond", "--workspace", str(workspace), "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def _health(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/health")
    resp = conn.getresponse()
    resp.read()
    return resp.status


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float) -> http.client.HTTPConnection:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sessiond exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while _health(conn) != 200:
                time.sleep(PROBE_EVERY / 5)
            return conn
        except OSError:
            time.sleep(PROBE_EVERY)
    raise RuntimeError("not ready in time")


def _snapshot_state(state: Path, workspace: Path) -> str:
    from sessiond.core import snapshot

    path = state / "index.snapshot"
    leftovers = [p.name for p in state.glob("index.snapshot.*.tmp")]
    if not path.exists():
        return "none" + (f" (+{len(leftovers)} temp)" if leftovers else "")
    columns = snapshot.load(path, str((workspace / "sessions").resolve()))
    verdict = f"valid ({len(columns):,} records)" if columns is not None else "INVALID"
    return verdict + (f" (+{len(leftovers)} temp)" if leftovers else "")


def stop_after(workspace: Path, after: float, size: int, log_dir: Path) -> dict[str, object]:
    """Cold start, SIGTERM *after* s after ready: seconds to exit, exit code, the snapshot's state."""
    state = Path(tempfile.mkdtemp(prefix="stop-state-"))
    port = servers.free_port()
    log_path = log_dir / f"stop-{after:g}.log"
    proc = _spawn(workspace, state, port, log_path)
    try:
        conn = _wait_ready(proc, port, 60 + size / 1000)
        conn.close()
        time.sleep(after)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        took = time.monotonic() - sent
        stop_lines = [line for line in log_path.read_text(errors="replace").splitlines() if "stop" in line]
        return {
            "after_s": after,
            "exit_s": round(took, 2),
            "code": code,
            "snapshot": _snapshot_state(state, workspace),
            "log": stop_lines[-3:],
        }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(state, ignore_errors=True)


def stall(workspace: Path, seconds: float, size: int, log_dir: Path) -> dict[str, object]:
    """Cold start; /health every 50 ms from ready to ready + *seconds*: the longest gap between answers."""
    state = Path(tempfile.mkdtemp(prefix="stop-state-"))
    port = servers.free_port()
    proc = _spawn(workspace, state, port, log_dir / "stall.log")
    try:
        conn = _wait_ready(proc, port, 60 + size / 1000)
        ready = last = time.monotonic()
        worst, worst_at = 0.0, 0.0
        while last - ready < seconds:
            time.sleep(max(0.0, last + PROBE_EVERY - time.monotonic()))
            _health(conn)
            now = time.monotonic()
            if now - last > worst:
                worst, worst_at = now - last, last - ready
            last = now
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        return {"seconds": seconds, "longest_gap_ms": round(worst * 1000, 1), "at_s": round(worst_at, 2)}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(state, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sessions", type=int)
    parser.add_argument("--profile", default=None, choices=sorted(gen.PROFILES))
    parser.add_argument("--after", type=float, nargs="*", default=list(AFTER))
    parser.add_argument("--probe", type=float, default=15.0, help="seconds of the stall probe after ready (0: none)")
    args = parser.parse_args(argv)
    profile = gen.PROFILES[args.profile] if args.profile else gen.profile_for(args.sessions)
    workspace = gen.generate(args.sessions, profile=profile)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-stop-"))
    results: dict[str, object] = {"sessions": args.sessions, "profile": profile.name, "logs": str(log_dir)}
    stops = []
    for after in args.after:
        row = stop_after(workspace, after, args.sessions, log_dir)
        print(
            f"SIGTERM {after:g} s after ready → exit {row['exit_s']:.2f} s (code {row['code']}), snapshot {row['snapshot']}",
            flush=True,
        )
        stops.append(row)
    results["stops"] = stops
    if args.probe > 0:
        row = stall(workspace, args.probe, args.sessions, log_dir)
        print(f"longest loop stall, ready → ready + {args.probe:g} s: {row['longest_gap_ms']} ms (at {row['at_s']} s)")
        results["stall"] = row
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

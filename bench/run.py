"""Benchmark sessiond against a bare aiohttp handler and a naive rescan, side by side.

For each workspace size: time a one-process stdlib-json scan, start sessiond
(time to ready, RSS), serve the very bytes it answered from a bare aiohttp
handler, start the naive baseline, drive list and detail of each with wrk,
measure write→visible lag, and at the largest size time a restart. Prints a
table and writes ``bench/results/latest.json``.

    python -m bench.run --quick                     # 10k sessions, about 2 minutes
    python -m bench.run --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import quote

import aiohttp

from bench import gen, lag, load, matrix, noise, report, scan, servers

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
SERVER_CPUS, WRK_CPUS = "0", "1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options; ``--quick`` overrides sizes and durations."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated session counts")
    p.add_argument("--duration", type=int, default=4, help="seconds of one wrk run (a round)")
    p.add_argument("--rounds", type=int, default=3, help="wrk runs per server and endpoint, alternating between servers")
    p.add_argument("--warmup", type=int, default=1, help="seconds of wrk before a server's first round")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--servers", default="sessiond,bare,naive", help="which to run; without sessiond the bare bytes come from naive"
    )
    p.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"servers on CPU {SERVER_CPUS}, wrk on CPU {WRK_CPUS} (default: on)",
    )
    p.add_argument(
        "--naive-list-max",
        type=int,
        default=10_000,
        help="largest size at which the naive list is driven (it rescans per request)",
    )
    p.add_argument("--naive-duration", type=int, default=10, help="seconds of naive list load")
    p.add_argument("--lag-writes", type=int, default=200)
    p.add_argument("--lag-rate", type=float, default=20, help="writes per second")
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="10k only, short runs (~2 minutes)")
    args = p.parse_args(argv)
    unknown = set(args.servers.split(",")) - {"sessiond", "bare", "naive"}
    if unknown:
        p.error(f"--servers: unknown {', '.join(sorted(unknown))}; use sessiond, bare, naive")
    if args.quick:
        args.sizes, args.duration, args.naive_duration, args.lag_writes = "10000", 2, 5, 100
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.servers = set(args.servers.split(","))
    return args


def log(message: str) -> None:
    """Progress goes to stderr; the table goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=servers.REPO, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def describe_run(args: argparse.Namespace, argv: list[str]) -> dict:
    """Machine, versions and settings, so a result can be reproduced."""
    wrk_version = subprocess.run([load.wrk_binary(), "-v"], capture_output=True, text=True)
    pinning = f"servers on CPU {SERVER_CPUS}, wrk on CPU {WRK_CPUS}" if args.pin else "no pinning"
    return {
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.run", *argv]),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "sessiond")),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "wrk": (wrk_version.stdout or wrk_version.stderr).split("Copyright")[0].strip(),
        "load": f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s,"
        f" {args.rounds} rounds alternating between servers (+{args.warmup} s warm-up),"
        f" {pinning}",
        "pinned": args.pin,
    }


def workspace_info(workspace: Path) -> dict:
    """Path, profile and size of a generated workspace."""
    manifest = gen.read_manifest(workspace)
    return {"path": str(workspace), "profile": manifest["profile"]["name"], "bytes": manifest["bytes"]}


def warm_page_cache(workspace: Path) -> list[float]:
    """Read-only passes until the page cache is warm; the seconds of each."""
    passes = [round(s, 3) for s in scan.warm_page_cache(workspace / "sessions")]
    log(f"  read-only passes {', '.join(f'{s:.2f}' for s in passes)} s")
    return passes


def scan_baselines(workspace: Path) -> dict:
    """Warm the page cache, then time the one-process stdlib-json scan."""
    passes = warm_page_cache(workspace)
    with noise.ForeignCpu() as foreign:
        sessions, seconds = scan.stdlib_json_scan(workspace / "sessions")
    log(f"  stdlib-json scan {seconds:.2f} s ({sessions:,} sessions)")
    return {
        "sessions": sessions,
        "read_only_passes_s": passes,
        "stdlib_json_s": round(seconds, 3),
        "foreign_cpu_pct": foreign.percent,
    }


def _get(url: str) -> tuple[bytes, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {servers.TOKEN}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read(), response.headers["Content-Type"]


def fetch_bodies(reference: servers.Server, log_dir: Path) -> dict:
    """The list and one detail exactly as ``reference`` answers them, saved for bare."""
    list_body, content_type = _get(reference.base_url + matrix.LIST_PATH)
    keys = json.loads(list_body)["sessions"]
    key = keys[len(keys) // 2]
    detail_path = f"{matrix.LIST_PATH}/{quote(key, safe='')}"
    detail_body, _ = _get(reference.base_url + detail_path)
    (log_dir / "list.body").write_bytes(list_body)
    (log_dir / "detail.body").write_bytes(detail_body)
    return {
        "count": len(keys),
        "key": key,
        "detail_path": detail_path,
        "content_type": content_type,
        "list_bytes": len(list_body),
        "detail_bytes": len(detail_body),
    }


def _ready_timeout(size: int) -> float:
    return 60 + size / 1000


def start_sessiond(fleet: servers.Fleet, workspace: Path, size: int, state_dir: Path) -> tuple[servers.Server, dict]:
    """Start the daemon unpinned (its scan may use both CPUs); time to ready and RSS.

    ``state_dir`` holds its index snapshot: empty for a cold start, kept for a restart.
    """
    args = ["sessiond", "--workspace", str(workspace), "--host", "127.0.0.1", "--port", "{port}"]
    env = {**servers.SESSIOND_ENV, "SESSIOND_STATE_DIR": str(state_dir)}
    with noise.ForeignCpu(fleet.pids) as foreign:
        daemon = fleet.start("sessiond", args, env, _ready_timeout(size))
    memory = servers.memory_mb(daemon.process.pid)
    facts = {
        "ready_s": round(daemon.ready_seconds, 3),
        "listening_s": round(daemon.listening_seconds, 3),
        "memory": memory,
        "foreign_cpu_pct": foreign.percent,
    }
    log(f"  sessiond ready in {facts['ready_s']:.2f} s, RSS {memory['total_rss_mb']:.1f} MB")
    return daemon, facts


def start_baselines(
    fleet: servers.Fleet, args: argparse.Namespace, workspace: Path, bodies: dict, log_dir: Path
) -> list[servers.Server]:
    """The bare handler (sessiond's bytes) and the naive rescan, as asked."""
    started = []
    if "bare" in args.servers:
        started.append(
            fleet.start(
                "bare",
                [
                    "bench.bare",
                    "--port",
                    "{port}",
                    "--list-body",
                    str(log_dir / "list.body"),
                    "--detail-body",
                    str(log_dir / "detail.body"),
                    "--content-type",
                    bodies["content_type"],
                ],
                {},
                60,
            )
        )
    if "naive" in args.servers:
        started.append(fleet.start("naive", ["bench.naive", "--workspace", str(workspace), "--port", "{port}"], {}, 60))
    return started


def load_plan(args: argparse.Namespace, size: int) -> matrix.Plan:
    """The wrk load for one size, from the options."""
    naive_list = None
    if size <= args.naive_list_max:
        naive_list = load.LoadSpec(args.naive_duration, 1, 1, timeout=120, warmup=0)
    return matrix.Plan(
        spec=load.LoadSpec(args.duration, args.connections, args.threads, warmup=args.warmup),
        rounds=args.rounds,
        naive_list=naive_list,
        wrk_cpus=WRK_CPUS if args.pin else None,
    )


def restart(fleet: servers.Fleet, daemon: servers.Server, workspace: Path, size: int, state_dir: Path) -> dict:
    """SIGTERM the daemon, start it again with the snapshot it left, time it to ready."""
    stop_s = fleet.stop(daemon)
    again, facts = start_sessiond(fleet, workspace, size, state_dir)
    facts["stop_s"] = round(stop_s, 3)
    log(f"  restart: stopped in {stop_s:.2f} s, ready again in {facts['ready_s']:.2f} s")
    fleet.stop(again)
    return facts


def bench_size(size: int, args: argparse.Namespace, largest: bool, log_dir: Path) -> dict:
    """Every measurement for one workspace size; a failure is recorded, not raised."""
    workspace = gen.generate(size, log=log)
    lag.remove_lag_sessions(workspace)
    result = {"sessions": size, "workspace": workspace_info(workspace)}
    try:
        result["scan"] = scan_baselines(workspace)
        with servers.Fleet(log_dir) as fleet:
            measure_servers(result, fleet, workspace, args, largest, log_dir)
    except (servers.ServerFailed, lag.LagFailed, RuntimeError, OSError) as exc:
        log(f"  FAILED: {exc}")
        result["error"] = str(exc)
    return result


def measure_servers(
    result: dict, fleet: servers.Fleet, workspace: Path, args: argparse.Namespace, largest: bool, log_dir: Path
) -> None:
    """Start the servers, drive them, and (sessiond) measure lag and restart, into ``result``."""
    size = result["sessions"]
    state_dir = Path(tempfile.mkdtemp(prefix=f"state-{size}-", dir=log_dir))
    daemon = None
    if "sessiond" in args.servers:
        # The stdlib scan at 1M takes longer than the cache keeps a page it read first.
        result["scan"]["read_only_before_start_s"] = warm_page_cache(workspace)
        daemon, result["sessiond"] = start_sessiond(fleet, workspace, size, state_dir)
    reference = daemon or fleet.start("naive", ["bench.naive", "--workspace", str(workspace), "--port", "{port}"], {}, 60)
    bodies = result["bodies"] = fetch_bodies(reference, log_dir)
    if daemon is None:
        fleet.stop(reference)
    targets = [daemon] if daemon else []
    targets += start_baselines(fleet, args, workspace, bodies, log_dir)
    if args.pin:
        for server in targets:
            servers.pin(server.process.pid, SERVER_CPUS)
    result["http"] = matrix.drive(fleet, targets, bodies["detail_path"], load_plan(args, size))
    result["ratios"] = matrix.ratios(result["http"])
    if daemon is None:
        return
    result["sessiond"]["indexed"] = bodies["count"]
    result["sessiond"]["rss_after_load_mb"] = servers.memory_mb(daemon.process.pid)["rss_mb"]
    with noise.ForeignCpu(fleet.pids) as foreign:
        result["lag"] = asyncio.run(lag.measure_lag(daemon.base_url, workspace, args.lag_writes, args.lag_rate))
    result["lag"]["foreign_cpu_pct"] = foreign.percent
    log(f"  lag p50 {result['lag'].get('p50_ms')} ms, p99 {result['lag'].get('p99_ms')} ms")
    if largest:
        result["sessiond"]["restart"] = restart(fleet, daemon, workspace, size, state_dir)


def main(argv: list[str] | None = None) -> int:
    """Run every size, print the table, write the JSON; 1 if a size failed."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers started so far are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        meta = describe_run(args, argv)
    except load.WrkMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    results = {"meta": meta, "sizes": []}
    log_dir = Path(tempfile.mkdtemp(prefix="sessiond-bench-"))
    log(f"server logs in {log_dir}")
    for size in args.sizes:
        log(f"{size:,} sessions")
        results["sizes"].append(bench_size(size, args, size == max(args.sizes), log_dir))
    results["targets"] = report.check_targets(results["sizes"])
    report.write_json(results, args.output)
    print(report.render(results))
    print(f"\nresults written to {args.output}")
    if any("error" in size for size in results["sizes"]):
        log(f"server logs kept in {log_dir}")
        return 1
    shutil.rmtree(log_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

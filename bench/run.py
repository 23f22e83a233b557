"""Benchmark sessiond as issue 14 asks, side by side in one run, and check its targets.

Phases (a progress line for each goes to stderr; the table to stdout; every
figure to ``bench/results/latest.json``):

http      at each of --sizes (default 10k, typical profile): a one-process
          stdlib-json scan against sessiond's cold start (ready, RSS); then
          sessiond, a bare aiohttp handler serving the very bytes sessiond
          answered, a plain handler doing only the contract's per-request parts
          (bench/contract.py), and the naive rescan, list and detail driven by
          wrk in alternating rounds.
ready     at each of --ready-sizes (default 100k), in the small (~3.4 KB a
          file, 0-30 messages) and the typical (~7 KB) profile: sessiond's
          cold start to ready (and RSS) against the one-process stdlib-json scan.
churn     at --churn-size (default 100k, typical profile): list and detail
          throughput quiet and while --churn-rate (100) writes/s land, in
          alternating rounds; then write→visible at --lag-rate (200) writes/s
          alone. The writes are the agent's (temp file, then os.replace): nine
          in ten rewrite one of --churn-pool sessions, one in ten is new; see
          bench/lag.py for how visibility is timed.
million   at --million (default 1M, the 1M-small profile, ~2.3 KB a file): cold
          start to ready, RSS at ready and once the snapshot is written, SIGTERM
          → exit; then a restart from that snapshot: ready, its 503 window (the
          time the listening daemon answered 503, counted for /health and an API
          path), RSS, SIGTERM → exit.
stop      at --stop-size (default 1M, the 1M-small profile; 100k is the largest a
          small machine keeps): SIGTERM 0, 1, 2 and 5 s after the first ready of
          a cold start (each a fresh state directory, so the first snapshot save
          is running) → exit, and whether the snapshot left is valid; then the
          longest loop stall from ready to ready + --stall-seconds (30): /health
          every 50 ms on one connection, the longest gap between answers
          (bench/stop.py, also runnable alone).

The page cache is warm for every start and every scan: just before it, every
session file is read (scandir, open, read, in one process) until two passes
agree within 25% (this machine drops file pages unused for about a minute).
sessiond starts unpinned (its scan may use both CPUs); for wrk it is pinned to
CPU 0 and wrk (and the churn writer) to CPU 1 (--no-pin: none).

Workspaces are generated once and cached under bench/.cache: ws-10000,
ws-100000 (typical), ws-100000-small, ws-1000000 (~4 GB on disk, a few minutes to
generate). The full run takes ~15 minutes once they exist.

    python -m bench.run                          # every phase at the issue's sizes
    python -m bench.run --quick                  # 10k: http and churn, about 2 minutes
    python -m bench.run --sizes 2000 --ready-sizes 2000 --churn-size 2000 --million 5000 \\
        --duration 1 --rounds 1 --lag-seconds 2  # every phase, small (a check of the bench)
    python -m bench.run --sizes 10000 --ready-sizes 0 --churn-size 0 --million 1000000   # 10k http and 1M only
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp

from bench import gen, lag, load, matrix, noise, report, scan, servers, stop
from sessiond.core.names import file_name_for

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
SERVER_CPUS, WRK_CPUS = "0", "1"
API_PROBE = "/api/v1/sessions/" + quote("benchprobe:absent", safe="")  # 503 until ready, then 404
PHASES = ("http", "ready", "churn", "million", "stop")
WARMING = (
    "every session file read (os.scandir, open, read; one process) until two passes agree"
    " within 25% (at most 3), just before each scan and each start"
)
_STARTED = time.perf_counter()


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip() and int(s) > 0]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options; ``--quick`` overrides sizes and durations."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sizes = p.add_argument_group("what to run (a size of 0 or an empty list skips the phase)")
    sizes.add_argument("--sizes", default="10000", help="http phase: comma-separated session counts (default: 10000)")
    sizes.add_argument(
        "--ready-sizes",
        default="100000",
        help="ready phase: session counts, each in the small and the typical profile (default: 100000)",
    )
    sizes.add_argument("--churn-size", type=int, default=100_000, help="churn phase: session count (default: 100000)")
    sizes.add_argument("--million", type=int, default=1_000_000, help="million phase: session count (default: 1000000)")
    sizes.add_argument("--stop-size", type=int, default=1_000_000, help="stop phase: session count (default: 1000000)")
    sizes.add_argument("--stall-seconds", type=float, default=30, help="stop phase: seconds of the stall probe after ready")
    sizes.add_argument("--quick", action="store_true", help="10k http and churn only, short runs (~2 minutes)")
    wrk = p.add_argument_group("load")
    wrk.add_argument("--duration", type=int, default=4, help="seconds of one wrk run (a round)")
    wrk.add_argument(
        "--rounds", type=int, default=5, help="wrk runs per server (or state) and endpoint, alternating (default: 5)"
    )
    wrk.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each server's first round")
    wrk.add_argument("--connections", type=int, default=32)
    wrk.add_argument("--threads", type=int, default=2)
    wrk.add_argument(
        "--servers",
        default="sessiond,bare,contract,naive",
        help="http phase: which to run (contract: a plain handler doing only the contract's per-request parts);"
        " without sessiond the bare bytes come from naive",
    )
    wrk.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"servers on CPU {SERVER_CPUS}, wrk and the churn writer on CPU {WRK_CPUS} (default: on)",
    )
    wrk.add_argument(
        "--naive-list-max",
        type=int,
        default=10_000,
        help="largest size at which the naive list is driven (it rescans per request)",
    )
    wrk.add_argument("--naive-duration", type=int, default=10, help="seconds of naive list load")
    writes = p.add_argument_group("churn")
    writes.add_argument("--churn-rate", type=float, default=100, help="writes per second beside wrk (default: 100)")
    writes.add_argument("--churn-pool", type=int, default=2000, help="sessions the churn rewrites in turn (default: 2000)")
    writes.add_argument("--lag-rate", type=float, default=200, help="writes per second for write→visible (default: 200)")
    writes.add_argument("--lag-seconds", type=float, default=15, help="seconds of writes for write→visible (default: 15)")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    unknown = set(args.servers.split(",")) - {"sessiond", "bare", "contract", "naive"}
    if unknown:
        p.error(f"--servers: unknown {', '.join(sorted(unknown))}; use sessiond, bare, contract, naive")
    if args.quick:
        args.sizes, args.ready_sizes, args.churn_size, args.million, args.stop_size = "10000", "", 10_000, 0, 0
        args.duration, args.rounds, args.naive_duration, args.lag_seconds = 2, 3, 5, 5
    args.sizes = _sizes(args.sizes)
    args.ready_sizes = _sizes(args.ready_sizes)
    args.servers = set(args.servers.split(","))
    return args


def log(message: str) -> None:
    """Progress goes to stderr, with the minutes and seconds since the start; the table goes to stdout."""
    elapsed = int(time.perf_counter() - _STARTED)
    print(f"[{elapsed // 60:2d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


@dataclass
class Job:
    """One workspace and the phases run on it, with one cold start of sessiond."""

    profile: gen.Profile
    sessions: int
    phases: list[str] = field(default_factory=list)


def plan(args: argparse.Namespace) -> list[Job]:
    """The jobs, smallest first; phases that share a workspace share its daemon."""
    jobs: dict[tuple[str, int], Job] = {}

    def add(profile: gen.Profile, sessions: int, phase: str) -> None:
        job = jobs.setdefault((profile.name, sessions), Job(profile, sessions))
        if phase not in job.phases:
            job.phases.append(phase)

    for size in args.sizes:
        add(gen.profile_for(size), size, "http")
    for size in args.ready_sizes:
        add(gen.SMALL, size, "ready")
        add(gen.TYPICAL, size, "ready")
    if args.churn_size:
        add(gen.profile_for(args.churn_size), args.churn_size, "churn")
    if args.million:
        add(gen.SMALL_1M, args.million, "million")
    if args.stop_size:
        add(gen.SMALL_1M, args.stop_size, "stop")
    for job in jobs.values():
        job.phases.sort(key=PHASES.index)
    order = {gen.SMALL.name: 0, gen.TYPICAL.name: 1, gen.SMALL_1M.name: 2}
    return sorted(jobs.values(), key=lambda job: (job.sessions, order.get(job.profile.name, 3)))


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=servers.REPO, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def describe_run(args: argparse.Namespace, argv: list[str], jobs: list[Job]) -> dict:
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
        "page_cache": WARMING,
        "plan": [{"profile": job.profile.name, "sessions": job.sessions, "phases": job.phases} for job in jobs],
        "churn": {
            "rate_per_s": args.churn_rate,
            "pool": args.churn_pool,
            "lag_rate_per_s": args.lag_rate,
            "lag_seconds": args.lag_seconds,
        },
    }


def workspace_info(workspace: Path) -> dict:
    """Path, profile and size of a generated workspace."""
    manifest = gen.read_manifest(workspace) or {}
    return {"path": str(workspace), "profile": gen.profile_named(manifest), "bytes": manifest.get("bytes", 0)}


def warm_page_cache(workspace: Path) -> list[float]:
    """Read-only passes until the page cache is warm; the seconds of each."""
    passes = [round(s, 3) for s in scan.warm_page_cache(workspace / "sessions")]
    log(f"  page cache warmed: read-only passes {', '.join(f'{s:.2f}' for s in passes)} s")
    return passes


def scan_baseline(workspace: Path) -> dict:
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
    """Start the daemon unpinned (its scan may use both CPUs); time to ready, the 503 window, RSS.

    ``state_dir`` holds its index snapshot: empty for a cold start, kept for a restart.
    """
    args = ["sessiond", "--workspace", str(workspace), "--host", "127.0.0.1", "--port", "{port}"]
    env = {**servers.SESSIOND_ENV, "SESSIOND_STATE_DIR": str(state_dir)}
    with noise.ForeignCpu(fleet.pids) as foreign:
        daemon = fleet.start("sessiond", args, env, _ready_timeout(size), api_probe=API_PROBE)
    memory = servers.memory_mb(daemon.process.pid)
    facts = {
        "ready_s": round(daemon.ready_seconds or 0, 3),
        "listening_s": round(daemon.listening_seconds or 0, 3),
        "health_before_ready": daemon.health_before_ready,
        "api_before_ready": daemon.api_before_ready,
        "api_after_ready": daemon.api_after_ready,
        "memory": memory,
        "foreign_cpu_pct": foreign.percent,
    }
    log(
        f"  sessiond ready in {facts['ready_s']:.2f} s (listening at {facts['listening_s']:.2f} s),"
        f" RSS {memory['total_rss_mb']:.1f} MB"
    )
    return daemon, facts


def start_baselines(
    fleet: servers.Fleet, args: argparse.Namespace, workspace: Path, bodies: dict, log_dir: Path
) -> list[servers.Server]:
    """The bare handler (sessiond's bytes), the contract's parts alone, and the naive rescan, as asked."""
    started = []
    bodies_args = ["--port", "{port}", "--list-body", str(log_dir / "list.body"), "--detail-body", str(log_dir / "detail.body")]
    if "bare" in args.servers:
        started.append(fleet.start("bare", ["bench.bare", *bodies_args, "--content-type", bodies["content_type"]], {}, 60))
    if "contract" in args.servers:
        detail_file = workspace / "sessions" / file_name_for(bodies["key"])
        started.append(fleet.start("contract", ["bench.contract", *bodies_args, "--detail-file", str(detail_file)], {}, 60))
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


def http_phase(
    result: dict, fleet: servers.Fleet, daemon: servers.Server | None, workspace: Path, args: argparse.Namespace, log_dir: Path
) -> None:
    """sessiond, bare, contract and naive, list and detail, into ``result``."""
    size = result["sessions"]
    reference = daemon or fleet.start("naive", ["bench.naive", "--workspace", str(workspace), "--port", "{port}"], {}, 60)
    bodies = result["bodies"] = fetch_bodies(reference, log_dir)
    if daemon is None:
        fleet.stop(reference)
    else:
        result["sessiond"]["indexed"] = bodies["count"]
    targets = [daemon] if daemon else []
    targets += start_baselines(fleet, args, workspace, bodies, log_dir)
    if args.pin:
        for server in targets:
            servers.pin(server.process.pid, SERVER_CPUS)
    result["http"] = matrix.drive(fleet, targets, bodies["detail_path"], load_plan(args, size))
    result["ratios"] = matrix.ratios(result["http"])
    result["contract_ratios"] = matrix.ratios(result["http"], of="contract")
    for server in targets:
        if server is not daemon:
            fleet.stop(server)
    if daemon is not None:
        result["sessiond"]["rss_after_load_mb"] = servers.memory_mb(daemon.process.pid)["rss_mb"]


def churn_phase(
    fleet: servers.Fleet, daemon: servers.Server, workspace: Path, profile: gen.Profile, args: argparse.Namespace, log_dir: Path
) -> dict:
    """Throughput quiet and under churn, then write→visible with nothing else running."""
    if args.pin:
        servers.pin(daemon.process.pid, SERVER_CPUS)
    pool = lag.prepare_pool(daemon.base_url, workspace, args.churn_pool, profile)
    log(f"  churn pool: {pool['written']:,} sessions written, visible after {pool['visible_after_s']:.2f} s")
    bodies = fetch_bodies(daemon, log_dir)
    cpus = WRK_CPUS if args.pin else None

    def writer(rate: float, seconds: float) -> lag.Churn:
        return lag.Churn(
            daemon.base_url,
            workspace,
            profile,
            rate=rate,
            seconds=seconds,
            pool=args.churn_pool,
            log_path=log_dir / "churn-writer.log",
            cpus=cpus,
        )

    churn_plan = load_plan(args, bodies["count"])
    http = matrix.drive_churn(fleet, daemon, bodies["detail_path"], churn_plan, lambda seconds: writer(args.churn_rate, seconds))
    log(f"  write→visible: {args.lag_rate:g} writes/s for {args.lag_seconds:g} s")
    with noise.ForeignCpu(fleet.pids) as foreign:
        visible = lag.run_alone(writer(args.lag_rate, args.lag_seconds))
    visible["foreign_cpu_pct"] = foreign.percent
    log(
        f"  write→visible p50 {visible.get('p50_ms')} ms, p99 {visible.get('p99_ms')} ms"
        f" ({visible['writes']:,} writes, {visible['not_visible']} not visible;"
        f" polled sample p99 {visible['polled'].get('p99_ms')} ms)"
    )
    removed = lag.remove_bench_sessions(workspace)
    log(f"  {removed:,} churn sessions removed from the workspace")
    return {"pool": pool, "sessions_listed": bodies["count"], "detail_path": bodies["detail_path"], "http": http, "lag": visible}


SNAPSHOT = "index.snapshot"  # config.Settings.snapshot_path's name in the state directory


def _snapshot_files(state_dir: Path) -> dict[str, tuple[int, int]]:
    """The snapshot and its temp files (not the search index beside them, which grows for minutes)."""
    found = {}
    for entry in os.scandir(state_dir):
        if entry.name.startswith(SNAPSHOT) and entry.is_file(follow_symlinks=False):
            stat = entry.stat(follow_symlinks=False)
            found[entry.name] = (stat.st_size, stat.st_mtime_ns)
    return found


def settle(daemon: servers.Server, state_dir: Path, timeout: float, quiet_s: float = 3.0) -> dict:
    """Wait until the snapshot is written (the file itself, no temp file beside it) and unchanged for ``quiet_s``; RSS then."""
    started = time.perf_counter()
    last, since = _snapshot_files(state_dir), time.perf_counter()
    while time.perf_counter() - started < timeout:
        time.sleep(0.2)
        servers.check_alive(daemon)
        now = _snapshot_files(state_dir)
        if now != last:
            last, since = now, time.perf_counter()
        elif set(last) == {SNAPSHOT} and time.perf_counter() - since >= quiet_s:
            break
    return {
        "snapshot_written_s": round(since - started, 2) if SNAPSHOT in last else None,  # after the wait began (at ready)
        "snapshot_bytes": last.get(SNAPSHOT, (0, 0))[0],
        "memory": servers.memory_mb(daemon.process.pid),
    }


def million_phase(fleet: servers.Fleet, daemon: servers.Server, cold: dict, workspace: Path, size: int, state_dir: Path) -> dict:
    """Cold start (already done), settle, stop; warm; restart from the snapshot, settle, stop."""
    timeout = 60 + size / 10_000
    cold["settled"] = settle(daemon, state_dir, timeout)
    log(
        f"  snapshot {cold['settled']['snapshot_bytes'] / 1e6:,.1f} MB written; RSS then"
        f" {cold['settled']['memory']['total_rss_mb']:,.1f} MB"
    )
    cold["stop_s"] = round(fleet.stop(daemon), 3)
    log(f"  SIGTERM → exit {cold['stop_s']:.2f} s")
    log("  restart from the snapshot")
    warm = warm_page_cache(workspace)
    again, restart = start_sessiond(fleet, workspace, size, state_dir)
    restart["read_only_before_start_s"] = warm
    restart["settled"] = settle(again, state_dir, timeout)
    restart["stop_s"] = round(fleet.stop(again), 3)
    log(
        f"  restart: ready {restart['ready_s']:.2f} s, 503 window {restart['ready_s'] - restart['listening_s']:.2f} s,"
        f" RSS {restart['memory']['total_rss_mb']:,.1f} MB, SIGTERM → exit {restart['stop_s']:.2f} s"
    )
    return {"cold": cold, "restart": restart}


def stop_phase(workspace: Path, size: int, stall_seconds: float, log_dir: Path) -> dict:
    """SIGTERM 0/1/2/5 s after the first ready → exit; the longest loop stall after ready."""
    stops = []
    for after in stop.AFTER:
        warm_page_cache(workspace)
        row = stop.stop_after(workspace, after, size, log_dir)
        log(f"  SIGTERM {after:g} s after ready → exit {row['exit_s']:.2f} s (code {row['code']}), snapshot {row['snapshot']}")
        stops.append(row)
    warm_page_cache(workspace)
    stall = stop.stall(workspace, stall_seconds, size, log_dir)
    log(f"  longest loop stall, ready → ready + {stall_seconds:g} s: {stall['longest_gap_ms']} ms (at {stall['at_s']} s)")
    return {"stops": stops, "stall": stall}


def run_job(job: Job, args: argparse.Namespace, log_dir: Path) -> dict:
    """Every phase of one job; a failure is recorded, not raised."""
    log(f"{job.sessions:,} sessions, {job.profile.name} profile: {', '.join(job.phases)}")
    workspace = gen.generate(job.sessions, profile=job.profile, log=log)
    lag.remove_bench_sessions(workspace)
    result: dict = {"sessions": job.sessions, "profile": job.profile.name, "phases": job.phases}
    result["workspace"] = workspace_info(workspace)
    state_dir = Path(tempfile.mkdtemp(prefix=f"state-{job.sessions}-", dir=log_dir))
    try:
        with servers.Fleet(log_dir) as fleet:
            if "http" in job.phases or "ready" in job.phases:
                result["scan"] = scan_baseline(workspace)
            daemon = None
            others = [phase for phase in job.phases if phase != "stop"]  # the stop phase starts its own
            if others and ("sessiond" in args.servers or others != ["http"]):
                # The page cache again: a scan at 100k and above outlasts what the cache keeps.
                warm = warm_page_cache(workspace)
                daemon, result["sessiond"] = start_sessiond(fleet, workspace, job.sessions, state_dir)
                result["sessiond"]["read_only_before_start_s"] = warm
            if "http" in job.phases:
                http_phase(result, fleet, daemon if "sessiond" in args.servers else None, workspace, args, log_dir)
            if "churn" in job.phases and daemon is not None:
                result["churn"] = churn_phase(fleet, daemon, workspace, job.profile, args, log_dir)
            if "million" in job.phases and daemon is not None:
                result["million"] = million_phase(fleet, daemon, result["sessiond"], workspace, job.sessions, state_dir)
        if "stop" in job.phases:  # its own daemons, one cold start each, after the job's has stopped
            result["stop"] = stop_phase(workspace, job.sessions, args.stall_seconds, log_dir)
    except (servers.ServerFailed, lag.LagFailed, RuntimeError, OSError) as exc:
        log(f"  FAILED: {exc}")
        result["error"] = str(exc)
    finally:
        removed = lag.remove_bench_sessions(workspace)
        if removed:
            log(f"  {removed:,} churn sessions removed from the workspace")
    return result


def main(argv: list[str] | None = None) -> int:
    """Run every job, print the table, write the JSON; 1 if a job failed."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers started so far are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    jobs = plan(args)
    try:
        meta = describe_run(args, argv, jobs)
    except load.WrkMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    results: dict = {"meta": meta, "runs": []}
    log_dir = Path(tempfile.mkdtemp(prefix="sessiond-bench-"))
    log(f"server logs in {log_dir}; page cache: {WARMING}")
    for job in jobs:
        results["runs"].append(run_job(job, args, log_dir))
    results["targets"] = report.check_targets(results["runs"])
    results["meta"]["seconds"] = round(time.perf_counter() - _STARTED, 1)
    report.write_json(results, args.output)
    print(report.render(results))
    print(f"\nresults written to {args.output}")
    if any("error" in run for run in results["runs"]):
        log(f"server logs kept in {log_dir}")
        return 1
    shutil.rmtree(log_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

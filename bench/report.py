"""Turn a benchmark's results into the printed table and the target checks."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

RESTART_LIMIT_S = 5.0  # issue 5 says "ready within seconds"; this is our reading
NOISY_PCT = 10  # foreign CPU use (% of one CPU) above which a figure is called skewed


class Target(NamedTuple):
    """One issue-5 target as measured: ``sources`` are the measurements behind it."""

    name: str
    value: float | None
    op: str
    limit: float
    sources: tuple[dict, ...] = ()


def _targets_for(size: dict) -> list[Target]:
    """The targets issue 5 sets for this size, with what was measured."""
    n = size["sessions"]
    ratios, http = size.get("ratios", {}), size.get("http", {})
    daemon, scan = size.get("sessiond", {}), size.get("scan", {})
    restart = daemon.get("restart", {})
    rss = daemon.get("memory", {}).get("total_rss_mb")
    checks = []
    if n == 10_000:
        for endpoint, limit in (("list", 0.80), ("detail", 0.70)):
            runs = http.get(endpoint, {})
            checks.append(
                Target(
                    f"{endpoint} ≥ {limit:.2f}× bare at 10k",
                    ratios.get(endpoint),
                    ">=",
                    limit,
                    (runs.get("sessiond", {}), runs.get("bare", {})),
                )
            )
    if "lag" in size:
        checks.append(Target(f"write→visible p99 ≤ 50 ms at {n:,}", size["lag"].get("p99_ms"), "<=", 50, (size["lag"],)))
    if n == 100_000:
        scan_ratio = _ratio(scan.get("stdlib_json_s"), daemon.get("ready_s"))
        checks += [
            Target("ready ≤ 5 s at 100k", daemon.get("ready_s"), "<=", 5, (daemon,)),
            Target("ready ≥ 1.5× faster than stdlib scan at 100k", scan_ratio, ">=", 1.5, (daemon, scan)),
            Target("RSS ≤ 200 MB at 100k", rss, "<=", 200),
        ]
    if n == 1_000_000:
        checks += [
            Target("ready ≤ 60 s at 1M", daemon.get("ready_s"), "<=", 60, (daemon,)),
            Target("RSS ≤ 1536 MB at 1M", rss, "<=", 1536),
            Target(f"restart ≤ {RESTART_LIMIT_S:g} s at 1M", restart.get("ready_s"), "<=", RESTART_LIMIT_S, (restart,)),
        ]
    return checks


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)


def check_targets(sizes: list[dict]) -> list[dict]:
    """Every issue-5 target this run measured: met or not, and how busy the machine was."""
    checks = []
    for size in sizes:
        for target in _targets_for(size):
            value, limit = target.value, target.limit
            met = None if value is None else (value >= limit if target.op == ">=" else value <= limit)
            foreign = [src["foreign_cpu_pct"] for src in target.sources if src.get("foreign_cpu_pct") is not None]
            checks.append(
                {
                    "target": target.name,
                    "value": value,
                    "limit": limit,
                    "met": met,
                    "foreign_cpu_pct": max(foreign, default=None),
                }
            )
    return checks


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _http_lines(size: dict) -> list[str]:
    lines = [f"  {'endpoint':8} {'server':9} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'other CPU':>9}  vs bare"]
    for endpoint, by_server in size.get("http", {}).items():
        for server, result in by_server.items():
            note = ""
            if server == "sessiond":
                note = _num(size["ratios"].get(endpoint), 2) + "×"
            elif server == "naive" and result["spec"]["connections"] == 1:
                note = "(1 connection)"
            if sum(result["errors"].values()):
                note += f"  ERRORS {result['errors']}"
            lines.append(
                f"  {endpoint:8} {server:9} {_num(result['rps']):>10} "
                f"{_num(result['p50_ms'], 2):>9} {_num(result['p99_ms'], 2):>9}"
                f" {_num(result['foreign_cpu_pct'], 0) + '%':>9}  {note}"
            )
    return lines


def _startup_lines(size: dict) -> list[str]:
    scan, daemon = size.get("scan"), size.get("sessiond")
    if scan is None:
        return []
    lines = []
    if daemon and "ready_s" in daemon:
        memory = daemon["memory"]
        speedup = _ratio(scan["stdlib_json_s"], daemon["ready_s"])
        lines.append(
            f"  ready {daemon['ready_s']:.2f} s (listening {_num(daemon.get('listening_s'), 2)} s,"
            f" 503 window {_num(_window(daemon), 2)} s,"
            f" other CPU {_num(daemon['foreign_cpu_pct'], 0)}%)"
            f" · stdlib-json scan {scan['stdlib_json_s']:.2f} s (scan/ready {_num(speedup, 2)}×,"
            f" other CPU {_num(scan['foreign_cpu_pct'], 0)}%)"
            f" · warm read-only pass {_num(scan.get('read_only_before_start_s', [None])[-1], 2)} s"
        )
        lines.append(
            f"  RSS {memory['total_rss_mb']:,.1f} MB after ready (child processes"
            f" {memory['children_rss_mb']:,.1f} MB of it); main process peak"
            f" {memory['peak_rss_mb']:,.1f} MB, after the load {_num(daemon.get('rss_after_load_mb'))} MB"
        )
    else:
        lines.append(
            f"  stdlib-json scan {scan['stdlib_json_s']:.2f} s · warm read-only pass {scan['read_only_passes_s'][-1]:.2f} s"
        )
    restart = (daemon or {}).get("restart")
    if restart:
        lines.append(
            f"  restart: SIGTERM → exit {restart['stop_s']:.2f} s, start → ready {restart['ready_s']:.2f} s"
            f" (503 window {_num(_window(restart), 2)} s)"
            f" (other CPU {_num(restart['foreign_cpu_pct'], 0)}%), RSS {restart['memory']['total_rss_mb']:,.1f} MB"
        )
    return lines


def _window(started: dict) -> float | None:
    """Seconds the API answered 503 while the first index was built (listening to ready)."""
    if started.get("listening_s") is None:
        return None
    return started["ready_s"] - started["listening_s"]


def _lag_line(lag: dict) -> str:
    return (
        f"  write→visible lag p50 {_num(lag.get('p50_ms'), 1)} ms · p99 {_num(lag.get('p99_ms'), 1)} ms"
        f" · max {_num(lag.get('max_ms'), 1)} ms ({lag['writes']} writes at {lag['rate_per_s']:g}/s,"
        f" {lag['not_visible']} not visible within {lag['not_visible_within_s']:g} s)"
    )


def _size_lines(size: dict) -> list[str]:
    ws = size["workspace"]
    lines = [
        "",
        f"{size['sessions']:,} sessions ({ws['profile']} profile, {ws['bytes'] / 1e6:,.0f} MB,"
        f" avg {ws['bytes'] / size['sessions'] / 1000:.1f} KB)"
        + (f", list body {size['bodies']['list_bytes']:,} B" if "bodies" in size else ""),
    ]
    if size.get("error"):
        lines.append(f"  FAILED: {size['error'].splitlines()[0]}")
    if size.get("http"):
        lines += _http_lines(size)
    lines += _startup_lines(size)
    if "lag" in size:
        lines.append(_lag_line(size["lag"]))
    return lines


def _foreign_values(node: object) -> Iterator[float]:
    """Every foreign_cpu_pct anywhere in the results."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "foreign_cpu_pct" and value is not None:
                yield value
            else:
                yield from _foreign_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from _foreign_values(item)


def render(results: dict) -> str:
    """The human-readable table of a run."""
    meta = results["meta"]
    lines = [
        f"sessiond benchmark · {meta['cpus']} CPUs ({meta['cpu_model']}) · {meta['load']}",
        f"commit {meta['commit'] or '(none)'}{' + uncommitted changes' if meta['dirty'] else ''}"
        f" · python {meta['python']} · {meta['started_at']}",
    ]
    worst = max(_foreign_values(results["sizes"]), default=0)
    if worst > NOISY_PCT:
        lines.append(
            f"WARNING: other processes used up to {worst:.0f}% of a CPU during a measurement"
            " ('other CPU'); those figures are skewed: rerun on a quiet machine."
        )
    for size in results["sizes"]:
        lines += _size_lines(size)
    lines += ["", "targets (issue 5)"]
    for check in results["targets"]:
        status = {True: "met ", False: "MISS", None: "n/a "}[check["met"]]
        foreign = check["foreign_cpu_pct"]
        skewed = f"  (skewed: other processes {foreign:.0f}% CPU)" if (foreign or 0) > NOISY_PCT else ""
        lines.append(f"  [{status}] {check['target']}: {_num(check['value'], 2)}{skewed}")
    return "\n".join(lines)


def write_json(results: dict, path: Path) -> None:
    """Write the results atomically (tmp + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)

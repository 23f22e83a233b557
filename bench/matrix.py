"""Drive every server's list and detail with wrk, in alternating rounds.

The rounds alternate between the servers (sessiond, bare, naive, sessiond,
bare, ...), so a burst of outside load hits them alike; the reported run is
the median round and the ratio is the median of the per-round ratios.
``drive_churn`` does the same for one daemon, quiet and while a writer
process (``bench.lag``) writes sessions, the order flipped every round.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from collections.abc import Callable

from bench import lag, load, noise, servers

LIST_PATH = "/api/v1/sessions"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to run: the load, its rounds, and the naive list's lighter load."""

    spec: load.LoadSpec
    rounds: int
    naive_list: load.LoadSpec | None  # None: the naive list is not driven
    wrk_cpus: str | None


def measure(
    fleet: servers.Fleet,
    server: servers.Server,
    path: str,
    spec: load.LoadSpec,
    cpus: str | None,
    other_pids: Callable[[], list[int]] = list,
) -> dict:
    """One wrk run against ``server``; ``other_pids`` are more processes of ours (not foreign CPU)."""
    servers.check_alive(server)
    with noise.ForeignCpu(lambda: fleet.pids() + other_pids()) as foreign:
        try:
            result = load.run_wrk(server.base_url + path, spec, cpus)
        except RuntimeError:
            servers.check_alive(server)  # a dead server explains a failed wrk better
            raise
    return {**vars(result), "failed": result.failed, "foreign_cpu_pct": foreign.percent}


def median_round(runs: list[dict]) -> dict:
    """The median round by requests/s, with every round's figure beside it."""
    middle = sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]
    return {
        **middle,
        "rounds_rps": [run["rps"] for run in runs],
        "failed": sum(run["failed"] for run in runs),
        "foreign_cpu_pct": round(statistics.mean(run["foreign_cpu_pct"] for run in runs), 1),
    }


def log_run(endpoint: str, name: str, run: dict) -> None:
    print(
        f"  {endpoint:6} {name:8} {run['rps']:>10,.1f} req/s  p50 {run['p50_ms']:.2f} ms"
        f"  p99 {run['p99_ms']:.2f} ms  (other processes: {run['foreign_cpu_pct']:.0f}% CPU)",
        file=sys.stderr,
        flush=True,
    )


def _rounds(fleet: servers.Fleet, targets: list[servers.Server], path: str, plan: Plan, endpoint: str) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {server.name: [] for server in targets}
    for number in range(plan.rounds):
        # Warm up once per server, in the first round.
        spec = plan.spec if number == 0 else dataclasses.replace(plan.spec, warmup=0)
        for server in targets:
            run = measure(fleet, server, path, spec, plan.wrk_cpus)
            log_run(endpoint, server.name, run)
            runs[server.name].append(run)
    return runs


def drive(fleet: servers.Fleet, targets: list[servers.Server], detail_path: str, plan: Plan) -> dict:
    """Results by endpoint, then by server name."""
    results: dict[str, dict] = {}
    for endpoint, path in (("list", LIST_PATH), ("detail", detail_path)):
        in_rounds = [s for s in targets if not (endpoint == "list" and s.name == "naive")]
        runs = _rounds(fleet, in_rounds, path, plan, endpoint)
        results[endpoint] = {name: median_round(rounds) for name, rounds in runs.items()}
    naive = next((s for s in targets if s.name == "naive"), None)
    if naive is not None and plan.naive_list is not None:
        run = measure(fleet, naive, LIST_PATH, plan.naive_list, plan.wrk_cpus)
        log_run("list", "naive", run)
        results["list"]["naive"] = run
    return results


def ratios(http: dict, of: str = "sessiond", to: str = "bare") -> dict:
    """Median over rounds of requests/s of ``of`` over ``to``, per endpoint."""
    out = {}
    for endpoint, by_server in http.items():
        if of in by_server and to in by_server:
            pairs = zip(by_server[of]["rounds_rps"], by_server[to]["rounds_rps"], strict=False)
            out[endpoint] = round(statistics.median(a / b for a, b in pairs), 3)
    return out


def _writes_over_rounds(runs: list[dict]) -> dict:
    """The churn writers' summaries of every round, and their sums and extremes."""
    rounds = [run["writes"] for run in runs]
    p99s = [w["p99_ms"] for w in rounds if "p99_ms" in w]
    achieved = [w["achieved_rate_per_s"] for w in rounds if w.get("achieved_rate_per_s")]
    return {
        "writes": sum(w["writes"] for w in rounds),
        "rate_per_s": rounds[0]["rate_per_s"] if rounds else None,
        "achieved_rate_per_s": round(statistics.mean(achieved), 1) if achieved else None,
        "not_visible": sum(w["not_visible"] for w in rounds),
        "p50_ms": round(statistics.median(w["p50_ms"] for w in rounds if "p50_ms" in w), 2) if p99s else None,
        "p99_ms": max(p99s, default=None),  # the worst round's
        "rounds": rounds,
    }


def drive_churn(
    fleet: servers.Fleet,
    daemon: servers.Server,
    detail_path: str,
    plan: Plan,
    writer_for: Callable[[float], lag.Churn],
) -> dict:
    """List and detail of ``daemon`` quiet and under churn, by endpoint.

    ``writer_for(seconds)`` makes a writer process that writes for ``seconds``;
    one is started for each churn round and outlives the wrk run it loads.
    """
    results: dict[str, dict] = {}
    for endpoint, path in (("list", LIST_PATH), ("detail", detail_path)):
        runs: dict[str, list[dict]] = {"quiet": [], "churn": []}
        for number in range(plan.rounds):
            spec = plan.spec if number == 0 else dataclasses.replace(plan.spec, warmup=0)
            for state in ("quiet", "churn") if number % 2 == 0 else ("churn", "quiet"):
                if state == "quiet":
                    run = measure(fleet, daemon, path, spec, plan.wrk_cpus)
                else:
                    writer = writer_for(spec.warmup + spec.duration + 1.5)
                    writer.start()
                    try:
                        run = measure(fleet, daemon, path, spec, plan.wrk_cpus, writer.pids)
                        run["writes"] = writer.result()
                    finally:
                        writer.stop()
                log_run(endpoint, state, run)
                runs[state].append(run)
        pairs = zip(runs["churn"], runs["quiet"], strict=True)
        results[endpoint] = {
            "quiet": median_round(runs["quiet"]),
            "churn": median_round(runs["churn"]),
            "ratio": round(statistics.median(c["rps"] / q["rps"] for c, q in pairs), 3),
            "writes": _writes_over_rounds(runs["churn"]),
        }
    return results

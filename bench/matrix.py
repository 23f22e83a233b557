"""Drive every server's list and detail with wrk, in alternating rounds.

The rounds alternate between the servers (sessiond, bare, naive, sessiond,
bare, ...), so a burst of outside load hits them alike; the reported run is
the median round and the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys

from bench import load, noise, servers

LIST_PATH = "/api/v1/sessions"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to run: the load, its rounds, and the naive list's lighter load."""

    spec: load.LoadSpec
    rounds: int
    naive_list: load.LoadSpec | None  # None: the naive list is not driven
    wrk_cpus: str | None


def _measure(fleet: servers.Fleet, server: servers.Server, path: str, spec: load.LoadSpec, cpus: str | None) -> dict:
    servers.check_alive(server)
    with noise.ForeignCpu(fleet.pids) as foreign:
        try:
            result = load.run_wrk(server.base_url + path, spec, cpus)
        except RuntimeError:
            servers.check_alive(server)  # a dead server explains a failed wrk better
            raise
    return {**vars(result), "failed": result.failed, "foreign_cpu_pct": foreign.percent}


def _median_round(runs: list[dict]) -> dict:
    """The median round by requests/s, with every round's figure beside it."""
    middle = sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]
    return {
        **middle,
        "rounds_rps": [run["rps"] for run in runs],
        "failed": sum(run["failed"] for run in runs),
        "foreign_cpu_pct": round(statistics.mean(run["foreign_cpu_pct"] for run in runs), 1),
    }


def _log(endpoint: str, name: str, run: dict) -> None:
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
            run = _measure(fleet, server, path, spec, plan.wrk_cpus)
            _log(endpoint, server.name, run)
            runs[server.name].append(run)
    return runs


def drive(fleet: servers.Fleet, targets: list[servers.Server], detail_path: str, plan: Plan) -> dict:
    """Results by endpoint, then by server name."""
    results: dict[str, dict] = {}
    for endpoint, path in (("list", LIST_PATH), ("detail", detail_path)):
        in_rounds = [s for s in targets if not (endpoint == "list" and s.name == "naive")]
        runs = _rounds(fleet, in_rounds, path, plan, endpoint)
        results[endpoint] = {name: _median_round(rounds) for name, rounds in runs.items()}
    naive = next((s for s in targets if s.name == "naive"), None)
    if naive is not None and plan.naive_list is not None:
        run = _measure(fleet, naive, LIST_PATH, plan.naive_list, plan.wrk_cpus)
        _log("list", "naive", run)
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

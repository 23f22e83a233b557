"""Drive a server with wrk and read back requests/s and latency percentiles."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.servers import TOKEN

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
_MARKER = "BENCH_RESULT "


class WrkMissing(RuntimeError):
    """wrk is not installed."""


@dataclass(frozen=True)
class LoadSpec:
    """How hard and how long to drive a server."""

    duration: int  # wrk takes whole seconds
    connections: int
    threads: int
    timeout: int = 10
    warmup: int = 1


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured; latencies in milliseconds."""

    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: dict[str, int]
    spec: dict

    @property
    def failed(self) -> int:
        """Requests that errored or answered a non-2xx/3xx status."""
        return sum(self.errors.values())


def wrk_binary() -> str:
    """The path of wrk, or WrkMissing with how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(
            "wrk is not installed. Install Debian's package (`apt-get install wrk`) or run `make bench`, which installs it."
        )
    return path


def _command(url: str, spec: LoadSpec, seconds: int, cpus: str | None) -> list[str]:
    command = [
        wrk_binary(),
        f"-t{spec.threads}",
        f"-c{spec.connections}",
        f"-d{seconds}s",
        f"--timeout={spec.timeout}s",
        "-s",
        str(LUA_SCRIPT),
        "-H",
        f"Authorization: Bearer {TOKEN}",
        url,
    ]
    return ["taskset", "-c", cpus, *command] if cpus else command


def _parse(output: str, spec: LoadSpec) -> LoadResult:
    line = next((ln for ln in output.splitlines() if ln.startswith(_MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    raw = json.loads(line[len(_MARKER) :])
    seconds = raw["duration_us"] / 1e6
    return LoadResult(
        requests=raw["requests"],
        rps=round(raw["requests"] / seconds, 1),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 3),
        max_ms=raw["max_us"] / 1000,
        errors=raw["errors"],
        spec=asdict(spec),
    )


def run_wrk(url: str, spec: LoadSpec, cpus: str | None = None) -> LoadResult:
    """Warm up, then measure ``url`` under ``spec`` (wrk pinned to ``cpus``)."""
    if spec.warmup > 0:
        _run(_command(url, spec, spec.warmup, cpus), spec)
    return _parse(_run(_command(url, spec, spec.duration, cpus), spec), spec)


def _run(command: list[str], spec: LoadSpec) -> str:
    budget = spec.duration + spec.warmup + spec.timeout + 30
    done = subprocess.run(command, capture_output=True, text=True, timeout=budget, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout

"""Write→visible lag: from an atomic rename until the API answers 200 for it.

This process is the writer and the poller: it writes a new session as the
agent does (``<name>.tmp``, then rename over ``<name>.json``), notes the time
right after the rename, and polls the session's detail on one reused client
session until it answers 200. Writes are paced at a light rate.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import aiohttp

from bench import gen
from bench.servers import TOKEN

LAG_PREFIX = "benchlag"


class LagFailed(RuntimeError):
    """The API answered something other than 200 or 404 while polling."""


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile of ``values`` by linear interpolation."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def remove_lag_sessions(workspace: Path) -> int:
    """Delete the sessions earlier lag runs wrote; return how many."""
    removed = 0
    for entry in os.scandir(workspace / "sessions"):
        if entry.name.startswith(LAG_PREFIX + "_"):
            os.unlink(entry.path)
            removed += 1
    return removed


def _write_atomically(sessions_dir: Path, key: str, data: bytes) -> Path:
    final = sessions_dir / gen.safe_file_name(key)
    tmp = final.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, final)
    return final


async def _poll_until_visible(
    client: aiohttp.ClientSession, url: str, deadline: float, interval: float
) -> tuple[float, int] | None:
    """Return (perf_counter at the 200, polls made), or None past ``deadline``."""
    polls = 0
    while time.perf_counter() < deadline:
        async with client.get(url) as response:
            await response.read()
            polls += 1
            if response.status == 200:
                return time.perf_counter(), polls
            if response.status != 404:
                raise LagFailed(f"GET {url} answered {response.status}")
        await asyncio.sleep(interval)
    return None


async def measure_lag(
    base_url: str,
    workspace: Path,
    writes: int = 200,
    rate: float = 20.0,
    timeout: float = 5.0,
    poll_interval: float = 0.001,
) -> dict:
    """Write ``writes`` new sessions at ``rate``/s and time each until visible."""
    sessions_dir = workspace / "sessions"
    corpus = gen.make_corpus(gen.DEFAULT_SEED)
    run_id = uuid.uuid4().hex[:8]
    keys = [f"{LAG_PREFIX}:{run_id}:{i}" for i in range(writes)]
    bodies = [gen.encode_session(gen.make_session(gen.DEFAULT_SEED, i, gen.FULL, corpus, key=key)) for i, key in enumerate(keys)]
    lags: list[float] = []
    polls: list[int] = []
    written: list[Path] = []
    started = time.perf_counter()
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for i, (key, body) in enumerate(zip(keys, bodies, strict=True)):
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
                written.append(_write_atomically(sessions_dir, key, body))
                renamed_at = time.perf_counter()
                url = f"{base_url}/api/v1/sessions/{quote(key, safe='')}"
                seen = await _poll_until_visible(client, url, renamed_at + timeout, poll_interval)
                if seen is not None:
                    lags.append(seen[0] - renamed_at)
                    polls.append(seen[1])
    finally:
        for path in written:
            path.unlink(missing_ok=True)
    return _summary(lags, polls, writes, rate, timeout)


def _summary(lags: list[float], polls: list[int], writes: int, rate: float, timeout: float) -> dict:
    result = {
        "writes": writes,
        "rate_per_s": rate,
        "visible": len(lags),
        "not_visible_within_s": timeout,
        "not_visible": writes - len(lags),
    }
    if lags:
        ms = [lag * 1000 for lag in lags]
        result.update(
            p50_ms=round(percentile(ms, 50), 2),
            p90_ms=round(percentile(ms, 90), 2),
            p99_ms=round(percentile(ms, 99), 2),
            max_ms=round(max(ms), 2),
            mean_polls=round(sum(polls) / len(polls), 1),
        )
    return result

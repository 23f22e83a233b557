"""Churn and write→visible: sessions written as the agent writes them, each timed until the index has it.

Run as its own process (``python -m bench.lag``, started by ``bench.run`` through
``Churn``), so the writer stays apart from the bench and from wrk. It writes
``--rate`` sessions a second for ``--seconds``, each as the agent does
(``<name>.tmp``, then ``os.replace`` over ``<name>.json``, like
tests/conftest.py's ``write_atomic``). Nine writes in ten rewrite a session of
a pool written beforehand (``prepare_pool``: one more exchange, a new
``updated_at``), one in ten creates a new session; the pool is visited in
turn, so a session is rewritten again only seconds later.

Each write is timed from just after the rename until the daemon publishes
the state it wrote on its change feed (one ``GET /api/v1/events`` stream,
``prefix=benchchurn:``, matched by key and ``updated_at``). The feed is
published when the index changes, which is when the list and a rewritten
session's detail show the write. As a direct check, every ``--poll-every``-th
rewrite is also polled with ``GET`` detail every 2 ms until it answers that
``updated_at`` (rewrites only: a new session's detail is found on disk at once,
read-your-writes, and the lookup would itself update the index).

The process prints ``READY`` once the feed is connected and the writes begin,
then one ``RESULT {json}`` line.

    python -m bench.lag --workspace WS --base-url http://127.0.0.1:8080 --rate 200 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import aiohttp
import orjson

from bench import gen, servers
from bench.servers import TOKEN

CHURN_PREFIX = "benchchurn"
KEY_PREFIX = CHURN_PREFIX + ":"
LAG_PREFIX = "benchlag"  # what earlier versions of this module wrote
_POOL_INDEX = 50_000_000  # generator index of pool session 0: far from any workspace's own
_NEW_INDEX = 60_000_000
_SAME = 1e-3  # two updated_at values closer than this are the same write


class LagFailed(RuntimeError):
    """The writer could not run: the API refused it, or it printed no result."""


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile of ``values`` by linear interpolation."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def remove_bench_sessions(workspace: Path) -> int:
    """Delete the sessions (and temp files) earlier churn or lag runs left; return how many."""
    removed = 0
    for entry in os.scandir(workspace / "sessions"):
        if entry.name.startswith((CHURN_PREFIX + "_", LAG_PREFIX + "_")):
            os.unlink(entry.path)
            removed += 1
    return removed


def write_atomically(sessions_dir: Path, key: str, data: bytes) -> Path:
    """Write like the agent: ``<name>.tmp``, then rename over ``<name>.json``."""
    final = sessions_dir / gen.safe_file_name(key)
    tmp = final.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, final)
    return final


def pool_key(number: int) -> str:
    """The key of pool session ``number``."""
    return f"{KEY_PREFIX}pool:{number}"


def pool_session(number: int, profile: gen.Profile) -> dict[str, Any]:
    """Pool session ``number`` as first written."""
    corpus = gen.make_corpus(gen.DEFAULT_SEED)
    return gen.make_session(gen.DEFAULT_SEED, _POOL_INDEX + number, profile, corpus, key=pool_key(number))


def _detail_url(base_url: str, key: str) -> str:
    return f"{base_url}/api/v1/sessions/{quote(key, safe='')}"


async def _wait_visible(client: aiohttp.ClientSession, base_url: str, keys: list[str], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    for key in keys:
        while True:
            async with client.get(_detail_url(base_url, key)) as response:
                await response.read()
                if response.status == 200:
                    break
                if response.status != 404:
                    raise LagFailed(f"GET {key} answered {response.status}")
            if time.perf_counter() > deadline:
                raise LagFailed(f"pool session {key} not visible after {timeout:g} s")
            await asyncio.sleep(0.01)


def prepare_pool(base_url: str, workspace: Path, size: int, profile: gen.Profile, timeout: float = 60) -> dict:
    """Write the pool sessions that are missing and wait until the API shows every one."""
    sessions_dir = workspace / "sessions"
    started = time.perf_counter()
    written = 0
    for number in range(size):
        key = pool_key(number)
        if not (sessions_dir / gen.safe_file_name(key)).exists():
            write_atomically(sessions_dir, key, gen.encode_session(pool_session(number, profile)))
            written += 1

    async def wait() -> None:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            await _wait_visible(client, base_url, [pool_key(n) for n in range(size)], timeout)

    asyncio.run(wait())
    return {"pool": size, "written": written, "visible_after_s": round(time.perf_counter() - started, 2)}


@dataclass
class Write:
    """One write and when it was seen."""

    key: str
    updated_at: float
    at: float  # perf_counter just after the rename
    created: bool
    seen: float | None = None  # on the feed
    superseded: bool = False  # the feed showed a later write of the key first
    polled: float | None = None  # GET detail answered it
    behind_ms: float = 0.0  # how late against the schedule it was written
    sampled: bool = False  # polled with GET as well


class Writer:
    """Writes at a steady rate and times each write until the feed shows it."""

    def __init__(self, workspace: Path, profile: gen.Profile, pool: int, new_fraction: float) -> None:
        self.sessions_dir = workspace / "sessions"
        self.profile = profile
        self.pool = pool
        self.new_fraction = new_fraction
        self.corpus = gen.make_corpus(gen.DEFAULT_SEED)
        self.run_id = uuid.uuid4().hex[:8]
        self.cursor = int(self.run_id, 16) % max(pool, 1)  # each run starts elsewhere in the pool
        self.writes: list[Write] = []
        self.pending: dict[str, list[Write]] = {}
        self.resyncs = 0
        self._stamp = 0.0

    def _next_stamp(self) -> float:
        self._stamp = round(max(time.time(), self._stamp + 2 * _SAME), 6)
        return self._stamp

    def _document(self, number: int) -> tuple[str, dict[str, Any], bool]:
        """The ``number``-th write: a new session, or the next pool session with one more exchange."""
        creates = int((number + 1) * self.new_fraction) > int(number * self.new_fraction) or self.pool == 0
        if creates:
            key = f"{KEY_PREFIX}{self.run_id}:{number}"
            doc = gen.make_session(gen.DEFAULT_SEED, _NEW_INDEX + number, self.profile, self.corpus, key=key)
        else:
            doc = pool_session(self.cursor, self.profile)
            self.cursor = (self.cursor + 1) % self.pool
            doc["messages"] += [
                {"role": "user", "content": self._text(number, 120)},
                {"role": "assistant", "content": self._text(number + 7, 240)},
            ]
        doc["updated_at"] = self._next_stamp()
        doc["created_at"] = min(doc["created_at"], doc["updated_at"])
        return doc["key"], doc, creates

    def _text(self, seed: int, length: int) -> str:
        start = (seed * 7919) % (len(self.corpus) - length)
        return self.corpus[start : start + length]

    def write(self, number: int, behind_ms: float) -> Write:
        """Make the ``number``-th write now."""
        key, doc, created = self._document(number)
        write_atomically(self.sessions_dir, key, gen.encode_session(doc))
        done = Write(key, doc["updated_at"], time.perf_counter(), created, behind_ms=behind_ms)
        self.writes.append(done)
        self.pending.setdefault(key, []).append(done)
        return done

    def seen(self, data: dict[str, Any], now: float) -> None:
        """The feed published ``data``: resolve the writes of its key it shows."""
        writes = self.pending.get(data.get("key", ""))
        shown = data.get("updated_at")
        if not writes or not isinstance(shown, int | float):
            return
        for write in list(writes):
            if abs(write.updated_at - shown) < _SAME:
                write.seen = now
            elif write.updated_at < shown:
                write.superseded = True
            else:
                continue
            writes.remove(write)

    @property
    def outstanding(self) -> int:
        """Writes the feed has not shown yet."""
        return sum(len(writes) for writes in self.pending.values())


async def _read_feed(response: aiohttp.ClientResponse, writer: Writer) -> None:
    kind = b""
    async for raw in response.content:
        line = raw.rstrip(b"\r\n")
        if line.startswith(b"event:"):
            kind = line[6:].strip()
        elif line.startswith(b"data:"):
            now = time.perf_counter()
            if kind == b"resync":
                writer.resyncs += 1
            elif kind in (b"created", b"updated"):
                writer.seen(orjson.loads(line[5:]), now)
        elif not line:
            kind = b""


async def _poll(client: aiohttp.ClientSession, base_url: str, write: Write, timeout: float) -> None:
    """GET the detail every 2 ms until it shows ``write`` (or a later write)."""
    url = _detail_url(base_url, write.key)
    deadline = write.at + timeout
    while time.perf_counter() < deadline:
        async with client.get(url) as response:
            body = await response.read()
            if response.status == 200 and orjson.loads(body).get("updated_at", 0) > write.updated_at - _SAME:
                write.polled = time.perf_counter()
                return
            if response.status not in (200, 404):
                raise LagFailed(f"GET {write.key} answered {response.status}")
        await asyncio.sleep(0.002)


async def churn(
    base_url: str,
    writer: Writer,
    rate: float,
    seconds: float,
    poll_every: int = 20,
    timeout: float = 5.0,
    ready: IO[str] | None = None,
) -> dict:
    """Write at ``rate`` for ``seconds`` and time every write; a summary."""
    count = max(1, round(rate * seconds))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as client:
        feed = await client.get(f"{base_url}/api/v1/events", params={"prefix": KEY_PREFIX})
        if feed.status != 200:
            raise LagFailed(f"GET /api/v1/events answered {feed.status}")
        reader = asyncio.create_task(_read_feed(feed, writer))
        polls: list[asyncio.Task] = []
        if ready is not None:
            print("READY", file=ready, flush=True)
        started = time.perf_counter()
        try:
            for number in range(count):
                due = started + number / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                write = writer.write(number, max(0.0, time.perf_counter() - due) * 1000)
                if poll_every and not write.created and number % poll_every == 0:
                    write.sampled = True
                    polls.append(asyncio.create_task(_poll(client, base_url, write, timeout)))
            deadline = time.perf_counter() + timeout
            while writer.outstanding and time.perf_counter() < deadline and not reader.done():
                await asyncio.sleep(0.01)
            await asyncio.gather(*polls)
        finally:
            reader.cancel()
            feed.close()
        if reader.done() and not reader.cancelled() and reader.exception():
            raise LagFailed(f"the change feed failed: {reader.exception()}")
    return summarize(writer, rate, seconds, timeout)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": round(percentile(values, 50), 2),
        "p90_ms": round(percentile(values, 90), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(max(values), 2),
    }


def summarize(writer: Writer, rate: float, seconds: float, timeout: float) -> dict:
    """Counts and percentiles (ms) of the writes' lags, by the feed and by polling."""
    writes = writer.writes
    span = writes[-1].at - writes[0].at if len(writes) > 1 else 0.0
    lags = [(w.seen - w.at) * 1000 for w in writes if w.seen is not None]
    polled = [w for w in writes if w.sampled]
    polled_lags = [(w.polled - w.at) * 1000 for w in polled if w.polled is not None]
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "writes": len(writes),
        "achieved_rate_per_s": round((len(writes) - 1) / span, 1) if span else None,
        "max_behind_schedule_ms": round(max((w.behind_ms for w in writes), default=0.0), 2),
        "created": sum(w.created for w in writes),
        "rewritten": sum(not w.created for w in writes),
        "pool": writer.pool,
        "visible": len(lags),
        "superseded": sum(w.superseded for w in writes),
        "not_visible": sum(w.seen is None and not w.superseded for w in writes),
        "not_visible_within_s": timeout,
        "resyncs": writer.resyncs,
        **_percentiles(lags),
        "polled": {"writes": len(polled), "visible": len(polled_lags), **_percentiles(polled_lags)},
    }


class Churn:
    """A writer process (``python -m bench.lag``): ``start`` returns once it writes."""

    def __init__(
        self,
        base_url: str,
        workspace: Path,
        profile: gen.Profile,
        *,
        rate: float,
        seconds: float,
        pool: int,
        log_path: Path,
        cpus: str | None = None,
        new_fraction: float = 0.1,
        poll_every: int = 20,
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "bench.lag",
            "--base-url",
            base_url,
            "--workspace",
            str(workspace),
            "--profile",
            profile.name,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--pool",
            str(pool),
            "--new-fraction",
            str(new_fraction),
            "--poll-every",
            str(poll_every),
        ]
        self.command = ["taskset", "-c", cpus, *command] if cpus else command
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the writer; return when its feed is connected and its writes begin."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=servers.REPO,
                env=servers.environment({}),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "READY":
            self.process.wait()
            raise LagFailed(f"the churn writer did not start ({line.strip()!r}); log {self.log_path}:\n{self._tail()}")

    def result(self) -> dict:
        """Wait for the writer to finish; its summary."""
        assert self.process is not None and self.process.stdout is not None
        output = self.process.stdout.read()
        self.process.wait()
        line = next((ln for ln in output.splitlines() if ln.startswith("RESULT ")), None)
        if self.process.returncode != 0 or line is None:
            raise LagFailed(f"the churn writer exited with {self.process.returncode}; log {self.log_path}:\n{self._tail()}")
        return json.loads(line[len("RESULT ") :])

    def pids(self) -> list[int]:
        """The writer's process id while it runs (its CPU is ours, not foreign)."""
        return [self.process.pid] if self.process is not None else []

    def stop(self) -> None:
        """Kill the writer if it still runs (after a failure elsewhere)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def run_alone(writer: Churn) -> dict:
    """Start a writer process, wait for it, return its summary (no load beside it)."""
    writer.start()
    try:
        return writer.result()
    finally:
        writer.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line: the writer process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--profile", choices=sorted(gen.PROFILES), default=gen.TYPICAL.name)
    parser.add_argument("--rate", type=float, default=200, help="writes per second")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--pool", type=int, default=2000, help="pool sessions rewritten in turn")
    parser.add_argument("--prepare", action="store_true", help="first write the missing pool sessions and wait for them")
    parser.add_argument("--new-fraction", type=float, default=0.1, help="share of writes that create a new session")
    parser.add_argument("--poll-every", type=int, default=20, help="also poll every Nth rewrite with GET (0: none)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds a write may take to become visible")
    args = parser.parse_args(argv)
    profile = gen.PROFILES[args.profile]
    try:
        if args.prepare:
            prepare_pool(args.base_url, args.workspace, args.pool, profile)
        writer = Writer(args.workspace, profile, args.pool, args.new_fraction)
        summary = asyncio.run(churn(args.base_url, writer, args.rate, args.seconds, args.poll_every, args.timeout, sys.stdout))
    except (LagFailed, aiohttp.ClientError, OSError) as exc:
        print(f"bench.lag: {exc}", file=sys.stderr)
        return 1
    print("RESULT " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

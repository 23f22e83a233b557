"""Generate (and cache) workspaces of N sessions in the agent's on-disk format.

Every session is a pure function of ``(seed, index)``, so a workspace is the
same on every machine and for any number of worker processes. Workspaces are
cached under ``bench/.cache/ws-<N>`` and reused while their manifest matches.

    python -m bench.gen 100000
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
GENERATOR_VERSION = 1
DEFAULT_SEED = 20240501
CHUNK = 2000
# Up to this many sessions use the realistic profile (~7 KB per file); above
# it the small profile keeps 1M sessions to a few GB on disk and in the cache.
FULL_PROFILE_MAX = 200_000

_BASE_TIME = 1_735_689_600.0  # 2025-01-01T00:00:00Z
# Coprime to every modulus below, so index -> index*M mod m is a bijection.
_ODD_MULTIPLIER = 11_400_714_819_323_198_489
_WORDS = [
    "the",
    "a",
    "to",
    "of",
    "and",
    "in",
    "is",
    "it",
    "for",
    "on",
    "that",
    "with",
    "as",
    "this",
    "be",
    "are",
    "you",
    "can",
    "not",
    "at",
    "or",
    "session",
    "agent",
    "tool",
    "user",
    "message",
    "file",
    "config",
    "deploy",
    "server",
    "request",
    "response",
    "error",
    "timeout",
    "retry",
    "cache",
    "index",
    "token",
    "memory",
    "thread",
    "process",
    "queue",
    "database",
    "schema",
    "migration",
    "query",
    "latency",
    "throughput",
    "benchmark",
    "python",
    "aiohttp",
    "asyncio",
    "function",
    "return",
    "value",
    "list",
    "dict",
    "string",
    "bytes",
    "json",
    "yaml",
    "parse",
    "serialize",
    "please",
    "could",
    "would",
    "should",
    "maybe",
    "sure",
    "thanks",
    "here",
    "there",
    "because",
    "however",
    "café",
    "naïve",
    "résumé",
    "Zürich",
    "straße",
    "日本語",
    "東京",
    "데이터",
    "привет",
    "مرحبا",
    "✓",
    "🚀",
]
_NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "nora"]
_PROJECTS = ["project-x", "planning", "infra", "blog", "research", "taxes", "garden", "migration"]
_TOOLS = ["web_search", "read_file", "write_file", "run_shell", "fetch_url", "list_dir"]
_ODD_WORDS = ["Zürich", "東京", "café", "Ålesund", "Мир", "naïve", "Kraków"]


@dataclass(frozen=True)
class Profile:
    """How large a generated session is."""

    name: str
    max_messages: int
    user_chars: tuple[int, int]
    assistant_chars: tuple[int, int]
    tool_chars: tuple[int, int]


FULL = Profile("full", 40, (20, 280), (60, 560), (80, 760))
SMALL = Profile("small", 12, (10, 120), (20, 200), (40, 240))
PROFILES = {p.name: p for p in (FULL, SMALL)}
Log = Callable[[str], None]


def safe_file_name(key: str) -> str:
    """The agent's lossy key -> file name rule (CONTRACT.md)."""
    return re.sub(r"[^\w\-.]", "_", key) + ".json"


def profile_for(count: int) -> Profile:
    """The profile used for a workspace of ``count`` sessions."""
    return FULL if count <= FULL_PROFILE_MAX else SMALL


def make_key(index: int, rng: random.Random) -> str:
    """A unique key of one of the real shapes; ``index`` makes it unique."""
    pick = rng.random()
    if pick < 0.35:
        return f"api:{(index * _ODD_MULTIPLIER) % 2**48:012x}"
    if pick < 0.50:
        return f"user:{rng.choice(_NAMES)}:{rng.choice(_PROJECTS)}-{index}"
    if pick < 0.55:
        return f"cli:default-{index}"
    if pick < 0.70:
        return f"telegram:{1_000_000_000 + (index * _ODD_MULTIPLIER) % 9_000_000_000}"
    if pick < 0.80:
        return f"discord:{10**17 + (index * _ODD_MULTIPLIER) % (9 * 10**17)}"
    if pick < 0.90:
        return f"slack:U{_base36((index * _ODD_MULTIPLIER) % 36**10, 10)}"
    return _odd_key(index, rng)


def _odd_key(index: int, rng: random.Random) -> str:
    """Keys with '/', '@', '.', spaces and non-ASCII letters."""
    name, word = rng.choice(_NAMES), rng.choice(_ODD_WORDS)
    shapes = (
        f"user:{name}@example.com/notes/{index}",
        f"support:ticket {index} {word}",
        f"cli:{name}.v{index}.local",
        f"team:{word}/room {index}",
    )
    return shapes[index % len(shapes)]


def _base36(value: int, width: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for _ in range(width):
        value, rem = divmod(value, 36)
        out.append(digits[rem])
    return "".join(reversed(out))


@functools.lru_cache(maxsize=4)
def make_corpus(seed: int) -> str:
    """About 300 KB of text that message contents are sliced from."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(50_000))


def _text(rng: random.Random, corpus: str, bounds: tuple[int, int]) -> str:
    length = rng.randint(*bounds)
    start = rng.randrange(len(corpus) - length)
    return corpus[start : start + length]


def _tool_turn(rng: random.Random, corpus: str, profile: Profile) -> list[dict[str, Any]]:
    """An assistant message with tool_calls followed by the tool results."""
    calls = []
    for _ in range(rng.randint(1, 2)):
        call_id = f"call_{rng.getrandbits(64):016x}"
        arguments = json.dumps({"query": _text(rng, corpus, (10, 60))}, ensure_ascii=False)
        calls.append(
            {
                "id": call_id,
                "type": "function",
                "function": {"name": rng.choice(_TOOLS), "arguments": arguments},
            }
        )
    turn: list[dict[str, Any]] = [{"role": "assistant", "content": "", "tool_calls": calls}]
    for call in calls:
        turn.append(
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "name": call["function"]["name"],
                "content": _text(rng, corpus, profile.tool_chars),
            }
        )
    return turn


def _messages(rng: random.Random, corpus: str, profile: Profile) -> list[dict[str, Any]]:
    wanted = rng.randint(0, profile.max_messages)
    messages: list[dict[str, Any]] = []
    while len(messages) < wanted:
        messages.append({"role": "user", "content": _text(rng, corpus, profile.user_chars)})
        if rng.random() < 0.15:
            messages.extend(_tool_turn(rng, corpus, profile))
        messages.append({"role": "assistant", "content": _text(rng, corpus, profile.assistant_chars)})
    return messages[:wanted]


def make_session(seed: int, index: int, profile: Profile, corpus: str, key: str | None = None) -> dict[str, Any]:
    """The session number ``index`` of the workspace generated from ``seed``."""
    rng = random.Random((seed << 32) | index)
    key = key if key is not None else make_key(index, rng)
    messages = _messages(rng, corpus, profile)
    created = _BASE_TIME + rng.uniform(0, 300 * 86_400)
    updated = created + rng.uniform(0, 30 * 86_400) if messages else created
    summary = _text(rng, corpus, (80, 400)) if len(messages) >= 20 else None
    return {
        "key": key,
        "messages": messages,
        "summary": summary,
        "created_at": round(created, 6),
        "updated_at": round(updated, 6),
    }


def encode_session(session: dict[str, Any]) -> bytes:
    """Serialize like the agent: indented JSON, UTF-8, non-ASCII kept."""
    return orjson.dumps(session, option=orjson.OPT_INDENT_2)


def _write_chunk(job: tuple[Path, int, str, int, int]) -> tuple[int, int]:
    """Write sessions ``start..stop-1``; return (files, bytes)."""
    sessions_dir, seed, profile_name, start, stop = job
    profile = PROFILES[profile_name]
    corpus = make_corpus(seed)
    total = 0
    for index in range(start, stop):
        session = make_session(seed, index, profile, corpus)
        data = encode_session(session)
        with open(sessions_dir / safe_file_name(session["key"]), "wb") as handle:
            handle.write(data)
        total += len(data)
    return stop - start, total


def workspace_path(count: int) -> Path:
    """Where the cached workspace of ``count`` sessions lives."""
    return CACHE_DIR / f"ws-{count}"


def _manifest(count: int, seed: int, profile: Profile) -> dict[str, Any]:
    manifest = {
        "version": GENERATOR_VERSION,
        "count": count,
        "seed": seed,
        "profile": asdict(profile),
    }
    return json.loads(json.dumps(manifest))  # as it reads back: tuples become lists


def read_manifest(workspace: Path) -> dict[str, Any] | None:
    """The manifest of a generated workspace, or None if there is none."""
    try:
        return json.loads((workspace / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def _is_cached(workspace: Path, wanted: dict[str, Any]) -> bool:
    found = read_manifest(workspace)
    if found is None:
        return False
    return {k: found.get(k) for k in wanted} == wanted


def generate(count: int, seed: int = DEFAULT_SEED, workers: int = 2, log: Log = print) -> Path:
    """Return the workspace of ``count`` sessions, generating it if not cached."""
    profile = profile_for(count)
    target = workspace_path(count)
    wanted = _manifest(count, seed, profile)
    if _is_cached(target, wanted):
        return target
    partial = target.with_name(target.name + ".partial")
    for stale in (partial, target):
        shutil.rmtree(stale, ignore_errors=True)
    sessions_dir = partial / "sessions"
    sessions_dir.mkdir(parents=True)
    log(f"generating {count:,} sessions ({profile.name} profile) in {target} ...")
    started = time.perf_counter()
    files, size = _write_all(sessions_dir, seed, profile, count, workers, log)
    written = sum(1 for _ in os.scandir(sessions_dir))
    if written != count:
        raise RuntimeError(f"{written} files for {count} sessions: file names collided")
    elapsed = time.perf_counter() - started
    manifest = {**wanted, "bytes": size, "generate_seconds": round(elapsed, 1)}
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    partial.rename(target)
    log(f"generated {files:,} sessions, {size / 1e6:,.0f} MB, in {elapsed:.0f} s")
    return target


def _write_all(sessions_dir: Path, seed: int, profile: Profile, count: int, workers: int, log: Log) -> tuple[int, int]:
    jobs = [(sessions_dir, seed, profile.name, start, min(start + CHUNK, count)) for start in range(0, count, CHUNK)]
    files = size = 0
    step = max(count // 10, 1)
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for done, written in pool.imap_unordered(_write_chunk, jobs):
            if (files + done) // step != files // step:
                log(f"  {files + done:,}/{count:,}")
            files += done
            size += written
    return files, size


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.gen N [N ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="+", type=int, help="sessions per workspace")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    for count in args.counts:
        print(generate(count, args.seed, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Search index figures on generated sessions with realistic text (issue 20).

    .venv/bin/python -m bench.search --sessions 100000 --dir /tmp/searchbench

Messages come from a Zipf-distributed vocabulary of tens of thousands of words,
with identifiers, paths, numbers, code and a few non-Latin scripts. Measures the
full build (files read and parsed in the worker process, indexed: the writer's real code path), the index
size against the message text, and query latency (rare word, common word,
phrase, prefix; with and without a key prefix) of the keeper's real window
query plus the in-memory check, beside `grep -rli` over the same folder. Then,
with a real daemon (bench/search_live.py): list and detail throughput while the
index builds beside search off, RSS on beside off, and write -> searchable at 100
writes/s (`--live no` skips these, `--live only` runs only these).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from sessiond.core.search_db import Ident, SearchDB
from sessiond.core.search_query import parse, plan
from sessiond.live.search import WINDOW

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "bri", "dan", "fel", "gor", "hul", "jin", "wex"]
CJK = "東京都大阪市天気予報会議資料確認返金注文配送"
CYRILLIC = ["привет", "заказ", "возврат", "доставка", "спасибо"]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words, key=lambda w: (len(w), w))


def message(rng: random.Random, vocab: list[str], cumulative: list[float]) -> str:
    n = rng.randint(5, 60)
    words = rng.choices(vocab, cum_weights=cumulative, k=n)
    extra = rng.random()
    if extra < 0.1:
        words.append(f"src/{rng.choice(vocab)}_{rng.choice(vocab)}.py:{rng.randint(1, 999)}")
    elif extra < 0.15:
        words.append("".join(rng.choice(CJK) for _ in range(rng.randint(2, 8))))
    elif extra < 0.18:
        words.append(rng.choice(CYRILLIC))
    elif extra < 0.25:
        words.append(f"def {rng.choice(vocab)}(x): return x * {rng.randint(2, 99)}")
    elif extra < 0.3:
        words.append(str(rng.randint(0, 10**9)))
    return " ".join(words)


def generate(folder: Path, sessions: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    vocab = vocabulary(30_000, rng)
    weights = list(itertools.accumulate(1 / (rank + 1) ** 1.07 for rank in range(len(vocab))))
    folder.mkdir(parents=True, exist_ok=True)
    text_bytes = 0
    now = time.time()
    for i in range(sessions):
        msgs = [
            {"role": "user" if j % 2 == 0 else "assistant", "content": message(rng, vocab, weights)}
            for j in range(rng.randint(2, 16))
        ]
        text_bytes += sum(len(m["content"].encode()) for m in msgs)
        key = f"{rng.choice(['telegram', 'slack', 'api'])}:{i}"
        doc = {"key": key, "messages": msgs, "summary": None, "created_at": now - i, "updated_at": now - i}
        (folder / f"{key.replace(':', '_')}.json").write_text(json.dumps(doc))
    return text_bytes


def timed(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/sessiond-search-bench"))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument(
        "--worker-nice", type=int, default=10, help="the parse worker's niceness for the build figure (the daemon's: 10)"
    )
    ap.add_argument("--live", choices=["yes", "no", "only"], default="yes", help="the running daemon's figures")
    ap.add_argument("--rounds", type=int, default=3, help="pairs of daemons (search on, off) for throughput while building")
    args = ap.parse_args()
    folder = args.dir / "sessions"
    marker = args.dir / f"generated-{args.sessions}"
    if not marker.exists():
        shutil.rmtree(args.dir, ignore_errors=True)
        t = time.perf_counter()
        text = generate(folder, args.sessions)
        marker.write_text(str(text))
        print(f"generated {args.sessions} sessions in {time.perf_counter() - t:.1f}s")
    text_bytes = int(marker.read_text())
    if args.live == "only":
        from bench import search_live

        keys = [p.name[: -len(".json")].replace("_", ":", 1) for p in folder.glob("*.json")]
        search_live.measure(args.dir, keys, rounds=args.rounds)
        return
    db_path = args.dir / "search.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)

    from sessiond.core.folder import Folder
    from sessiond.core.index import SessionRecord
    from sessiond.core.loader import read_state
    from sessiond.live.search import SearchKeeper, _ParseWorker

    class _Store:  # the keeper needs only the folder, the size limit and (for queries) nothing else here
        max_file_bytes = 1 << 30

    names = sorted(os.listdir(folder))
    dir_fd = os.open(folder, os.O_RDONLY)
    records = [r for name in names if isinstance(r := read_state(dir_fd, name, 1 << 30), SessionRecord)]
    records.sort(key=lambda r: r.updated_at)
    store = _Store()
    st = os.stat(folder)
    store.folder = Folder(str(folder), (st.st_dev, st.st_ino))  # type: ignore[attr-defined]
    keeper = SearchKeeper.__new__(SearchKeeper)
    keeper._writer_db = SearchDB(db_path)  # type: ignore[attr-defined]
    keeper._writer_db.open()
    keeper._worker = _ParseWorker()  # type: ignore[attr-defined]
    keeper._worker.nice = args.worker_nice  # type: ignore[attr-defined]
    keeper.files_read_in_worker = 0
    keeper.batches_written_in_worker = 0
    keeper.path = db_path  # type: ignore[misc]
    keeper.cache_kib = 16 * 1024
    keeper.rows = 0
    keeper._tickets = 0  # type: ignore[attr-defined]
    keeper._held = None  # type: ignore[attr-defined]
    keeper._dictionary = None  # type: ignore[attr-defined]
    t = time.perf_counter()
    jobs = [(r.name, r.key, Ident(*r.stat)) for r in records]
    # The writer thread's code path, as the keeper drives it: the worker parses a batch while the one before is written.
    held = None
    for i in range(0, len(jobs), 256):
        chunk = jobs[i : i + 256]
        taken = SearchKeeper._take(keeper, store.folder, chunk, 1 << 30, len(chunk), [])  # type: ignore[attr-defined]
        if held is not None:
            SearchKeeper._apply(keeper, held)  # type: ignore[attr-defined]
        held = taken
    if held is not None:
        SearchKeeper._apply(keeper, held)  # type: ignore[attr-defined]
    keeper._worker.close(wait=True)  # type: ignore[attr-defined]
    build = time.perf_counter() - t
    keeper._writer_db.close()
    size = sum(os.stat(f"{db_path}{s}").st_size for s in ("", "-wal") if os.path.exists(f"{db_path}{s}"))
    print(
        f"build (worker at nice {args.worker_nice}, load {os.getloadavg()[0]:.1f}): {len(records)} sessions, {text_bytes / 1e6:.0f} MB of message text, {build:.1f}s; index {size / 1e6:.0f} MB ({size / text_bytes:.2f}x the text)"
    )

    reader = SearchDB(db_path)
    reader.open()
    con = reader.con
    assert con is not None
    parts = dict(con.execute("SELECT name LIKE 'fts%', sum(pgsize) FROM dbstat GROUP BY 1").fetchall())
    kept = con.execute("SELECT sum(length(kept)) FROM docs").fetchone()[0] or 0
    print(
        f"  of the text: FTS5 {parts.get(1, 0) / text_bytes:.2f}x, kept to forget rows {kept / text_bytes:.2f}x,"
        f" rows and the rest {(parts.get(0, 0) - kept) / text_bytes:.2f}x"
    )
    by_key = {r.key: r for r in records}
    rng = random.Random(2)
    vocab = vocabulary(30_000, rng)

    def run(q: str, prefix: str = "") -> int:
        asked = plan(parse(q))
        chosen = 0
        below = None
        while True:
            found = reader.window(asked, below, WINDOW, prefix, not chosen)  # as the keeper does
            for c in found.rows:
                r = by_key.get(c.key)
                if r is not None and r.name == c.name:
                    chosen += 1
            if not found.full or chosen >= WINDOW:
                return chosen
            below = found.last

    cases = {
        "rare word": vocab[3000],
        "common word": vocab[0],
        "phrase": f'"{vocab[0]} {vocab[1]}"',
        "prefix": vocab[5][:2] + "*",
    }
    print(f"{'query':<14}{'':<16}{'p50 ms':>8}{'p99 ms':>8}{'matched':>9}   grep -rli ms")
    for label, q in cases.items():
        for prefix in ("", "slack:"):
            p50, p99 = timed(lambda q=q, prefix=prefix: run(q, prefix), args.repeat)
            count = run(q, prefix)
            grep = ""
            if not prefix:
                word = q.strip('"*').split()[0]
                t = time.perf_counter()
                subprocess.run(["grep", "-rli", word, str(folder)], stdout=subprocess.DEVNULL, check=False)
                grep = f"{(time.perf_counter() - t) * 1000:.0f}"
            print(f"{label:<14}{('prefix=' + prefix) if prefix else '':<16}{p50:>8.1f}{p99:>8.1f}{count:>9}   {grep}")
    reader.close()
    if args.live == "yes":
        from bench import search_live

        search_live.measure(args.dir, [r.key for r in records], rounds=args.rounds)


if __name__ == "__main__":
    main()

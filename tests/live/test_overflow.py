"""A burst past a real, tiny inotify queue: events are lost, and the index converges anyway."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.disk import api_equals_disk, disk_model
from tests.support import session_doc, store_of, write_atomic

# Each test starts the real daemon as a process: `make test-quick` leaves them out.
pytestmark = pytest.mark.slow

QUEUE = Path("/proc/sys/fs/inotify/max_queued_events")


@pytest.fixture
def tiny_inotify_queue() -> Iterator[Callable[[], None]]:
    """Lower the kernel's inotify queue to 64 events; the caller restores it once its watch exists.

    The limit is read when an inotify instance is made, so the daemon's watch keeps
    the tiny queue while everyone else's new watches get the normal one back at once.
    """
    try:
        old = QUEUE.read_text()
        QUEUE.write_text("64")
    except OSError as exc:
        pytest.skip(f"cannot lower {QUEUE} ({exc.strerror}): needs root on Linux")

    def restore() -> None:
        QUEUE.write_text(old)

    try:
        yield restore
    finally:
        restore()


def churn(folder: Path, writes: int, seed: int) -> None:
    """Thousands of writes as fast as possible: atomic, in place, deletes and stray tmp files."""
    rng = random.Random(seed)
    for i in range(writes):
        key = f"burst{seed}:{rng.randrange(writes // 3)}"
        path = folder / (key.replace(":", "_") + ".json")
        roll = rng.random()
        if roll < 0.1:
            path.unlink(missing_ok=True)
        elif roll < 0.2:
            with path.open("wb") as fh:  # in place, in two chunks
                data = orjson.dumps(session_doc(key, messages=rng.randrange(1, 6)))
                fh.write(data[:10])
                fh.write(data[10:])
        elif roll < 0.25:
            (folder / f"stray{seed}-{i}.tmp").write_bytes(b"{")
        else:
            write_atomic(folder, key, messages=rng.randrange(1, 6))


async def test_burst_past_a_64_event_queue_converges_within_10s(
    start_client, sessions: Path, tiny_inotify_queue: Callable[[], None]
) -> None:
    client = await start_client(reconcile_interval=0)
    tiny_inotify_queue()
    store = store_of(client)
    # Two writer processes (not threads: they must not wait for our GIL) overflow the queue.
    code = "import sys; from tests.live.test_overflow import churn; churn(__import__('pathlib').Path(sys.argv[1]), 3000, int(sys.argv[2]))"
    writers = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", code, str(sessions), str(seed), cwd=Path(__file__).parents[2])
        for seed in (1, 2)
    ]
    assert [await w.wait() for w in writers] == [0, 0]
    stopped = time.monotonic()
    deadline = stopped + 10
    while {r.key: r.message_count for r in store.index.records()} != disk_model(sessions):
        assert time.monotonic() < deadline, "index still differs from the disk 10 s after the burst"
        await asyncio.sleep(0.02)
    converged = time.monotonic() - stopped
    assert await api_equals_disk(client, sessions)
    print(
        f"\noverflow: converged {converged:.2f}s after the burst; "
        f"{len(store.index)} sessions, drift found {store.drift_files}, reconciles {store.reconciles}"
    )
    assert len(os.listdir(sessions)) > len(store.index)  # stray tmp files stayed out

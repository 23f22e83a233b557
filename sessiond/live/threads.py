"""Thread pools whose threads exist before the daemon gets busy.

A ThreadPoolExecutor starts a thread on a submit that finds none idle, and
`Thread.start()` waits until the new thread runs. On the event loop that wait
is the loop's: right after the first ready at 1M sessions, while the snapshot's
encoding and the search's plan held the GIL, one such start held the loop for
117-249 ms (found with a probe that dumps the loop thread's stack when a 10 ms
heartbeat is late). Started up front, while nothing else runs, a submit finds an
idle thread and returns at once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

# asyncio's own default for its executor.
DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)


def prestarted(executor: concurrent.futures.ThreadPoolExecutor, count: int) -> concurrent.futures.ThreadPoolExecutor:
    """*executor* with *count* of its threads started now (each waits for the others, so each is a new one)."""
    barrier = threading.Barrier(count + 1)
    for _ in range(count):
        executor.submit(barrier.wait, 10.0)
    barrier.wait(10.0)
    return executor


def default_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The loop's default executor (`run_in_executor(None, ...)`), every thread started."""
    pool = concurrent.futures.ThreadPoolExecutor(DEFAULT_THREADS, thread_name_prefix="sessiond")
    return prestarted(pool, DEFAULT_THREADS)


class DaemonWorker:
    """One daemon thread that runs the calls handed to it, in order; the interpreter's exit does not wait for it.

    For work the daemon may walk away from at its stop (a snapshot save told to stop ends
    at its next step, which on a loaded machine at 1M can take over a second): an
    executor's thread is joined at exit, and the stop would wait for that step after all.
    The thread is started by start() (up front, see above) or by the first submit.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread if it is not running yet."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run fn(*args) on the thread; its future."""
        self.start()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
            else:
                future.set_result(result)
                del result
            # Not kept until the next call comes: a call may hold a million-row structure.
            del future, fn, args


# Snapshot saves, every store's (they take turns; each store saves one at a time anyway).
SAVES = DaemonWorker("sessiond-snapshot-save")
# The search index's full-pass plans, every keeper's (at 1M a second; a stop must not wait for one).
PLANS = DaemonWorker("sessiond-search-plan")
# Compactions' new rows (store.compact: ~2 s at 1M), apart from the saves, which a stop waits for.
COMPACTIONS = DaemonWorker("sessiond-compaction")


class _Collector:
    """Python's cycle collector, paused while any holder works over a million-item structure.

    A collection holds the GIL, and with it the event loop, for as long as it walks: any
    list or dict of a million items made after the index (the snapshot's rows, the
    search plan's queue, the overview's key map while it fills) is walked item by item,
    young, at every collection of its generation. Right after the first ready at 1M one
    such collection held the loop for 270 ms (py-spy --native: gc_collect_main on the
    search's thread). Those structures hold no cycles: the collector is paused while any
    of them is being made (holders are counted, across threads), and runs again after.

    What a pause made and kept (the overview's key map, the search's queue) would all be
    walked by the first collection after it, at once: 95-208 ms at 1M, on whichever thread
    allocated next. The holders that make such lasting structures (a scan, the overview's
    full pass, the search's plan: at the start and after a rescan, never in steady state)
    ask for a freeze; the snapshot's periodic save, whose lists are gone when it ends,
    does not. Frozen objects are still freed by reference counting.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._resume = False  # enable the collector when the last holder leaves
        self._freeze = False  # freeze what exists first (a scan asked)

    @contextlib.contextmanager
    def paused(self, freeze: bool = False) -> Iterator[None]:
        """No collection while inside; with *freeze*, what exists when the last holder leaves is
        moved out of the collector's sight for good (gc.freeze).

        A scan freezes: it makes two objects per session (a record and its entry) that live
        as long as the daemon and hold no cycles. Left to itself, the collector walks all of
        them again and again while they are made (at 1M sessions: 29 s to restart instead of
        18 s, and a snapshot save 14 s instead of 4.5 s), then on every full collection
        afterwards (a stall of 3-4 s in the middle of serving). Frozen, they are still freed
        by reference counting when a session goes. Cyclic garbage made meanwhile would be
        frozen too and never collected: a scan makes none (gc.unfreeze(); gc.collect() after
        three scans of 10k and of 1M sessions found 0 objects), but requests served meanwhile
        do (3,805 objects at 1M with /health asked every 20 ms during the scan), so one
        collection runs just before the freeze. Since the index keeps its sessions as columns
        (index.Rows) it walks few objects: 0.13 s at 1M.
        """
        with self._lock:
            if self._holders == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._holders += 1
            self._freeze = self._freeze or freeze
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    if self._freeze:
                        gc.collect()  # what requests served meanwhile left in cycles: never frozen
                        gc.freeze()
                        self._freeze = False
                    if self._resume:
                        gc.enable()


COLLECTOR = _Collector()

"""How much CPU did something other than the benchmark use during a measurement?

The machine has two cores and the benchmark uses both; anything else running
(a test suite, a build) skews the figures. ``ForeignCpu`` compares the
machine's busy time in ``/proc/stat`` with the CPU time of the processes we
know about (the servers, wrk, this process) over the same interval.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from bench.servers import process_tree

_TICK = os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds spent on anything but idle and iowait, all CPUs, since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _TICK


def _process_seconds(pid: int) -> float:
    """utime + stime of one process, plus those of its children it has reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / _TICK


def _known_seconds(server_pids: Iterable[int]) -> float:
    tree = [p for pid in server_pids for p in process_tree(pid)]
    own = os.times()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once waited for
    return sum(_process_seconds(p) for p in tree) + own.user + own.system + children.ru_utime + children.ru_stime


class ForeignCpu:
    """Measure other processes' CPU use over a ``with`` block, as % of one CPU.

    ``server_pids`` is asked at entry and at exit, so a server started inside
    the block counts from its first tick; none may be stopped inside it.
    """

    def __init__(self, server_pids: Callable[[], Iterable[int]] = tuple) -> None:
        self.server_pids = server_pids
        self.percent: float | None = None

    def __enter__(self) -> ForeignCpu:
        self._wall = time.perf_counter()
        self._busy = _machine_busy_seconds()
        self._known = _known_seconds(self.server_pids())
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall = time.perf_counter() - self._wall
        busy = _machine_busy_seconds() - self._busy
        known = _known_seconds(self.server_pids()) - self._known
        self.percent = round(max(0.0, busy - known) / wall * 100, 1)

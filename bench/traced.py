"""sessiond under tracemalloc, for soaks: where does memory go over a long run?

    python -m bench.traced --workspace DIR ...   (the same arguments as sessiond)

Every TRACED_EVERY seconds (default 60) the top allocation differences against the
first snapshot go to the file named by TRACED_OUT (default /tmp/sessiond-traced.txt).
The daemon itself is the unchanged sessiond.cli.main.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc


def _watch(out: str, every: float) -> None:
    first = None
    while True:
        time.sleep(every)
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        if first is None:
            first = snap
            continue
        stats = snap.compare_to(first, "traceback")[:12]
        with open(out, "a") as fh:
            fh.write(f"--- t={time.monotonic():.0f} traced={tracemalloc.get_traced_memory()[0] / 1e6:.1f} MB\n")
            for stat in stats:
                fh.write(f"{stat.size_diff / 1e6:+8.2f} MB {stat.count_diff:+7d} blocks\n")
                for line in stat.traceback.format()[-6:]:
                    fh.write(f"      {line}\n")


def main() -> int:
    tracemalloc.start(25)
    out = os.environ.get("TRACED_OUT", "/tmp/sessiond-traced.txt")
    every = float(os.environ.get("TRACED_EVERY", "60"))
    threading.Thread(target=_watch, args=(out, every), daemon=True, name="traced").start()
    from sessiond.cli import main as sessiond_main

    return sessiond_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

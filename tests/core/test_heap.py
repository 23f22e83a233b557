"""heap.give_back: what a big job freed goes back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A job's medium-sized blocks come from glibc's heap (not mmap); one block made after them
# keeps the heap's top in use, so free() alone returns none of them to the system.
_JOB = textwrap.dedent(
    """
    import sys
    from sessiond.core import heap

    def rss_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

    blocks = [bytearray(64 * 1024) for _ in range(3000)]  # ~190 MB, touched
    pin = bytearray(64 * 1024)
    del blocks
    freed = rss_mb()
    assert heap.give_back()
    print(freed, rss_mb())
    """
)


def test_what_a_big_job_freed_goes_back_to_the_system() -> None:
    out = subprocess.run([sys.executable, "-c", _JOB], capture_output=True, text=True, check=True).stdout
    freed, after = map(int, out.split())
    assert freed > 150 and after < freed - 120, (freed, after)

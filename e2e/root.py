"""A Debian bookworm root with systemd, journald, nginx and Prometheus, built once and cached.

debootstrap takes a minute or two; the root is kept under SESSIOND_E2E_CACHE
(default /var/cache/sessiond-e2e), outside the repository, keyed by everything
that goes into it, so a change to the list below builds a new one. Each test run
boots a copy, never the cached root itself.

    python -m e2e.root          # build (or find) the root and print its path
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# minbase has no /bin/kill (procps), no init (systemd-sysv), no D-Bus for systemctl.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "procps",
    "python3-venv",
    "nginx-light",
    "curl",
    "ca-certificates",
    "prometheus",
)
# Bump when the steps after debootstrap change.
RECIPE = 1
CACHE = Path(os.environ.get("SESSIOND_E2E_CACHE", "/var/cache/sessiond-e2e"))


def key() -> str:
    """What goes into the root, hashed."""
    recipe = json.dumps([SUITE, MIRROR, sorted(PACKAGES), RECIPE])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def _finish(root: Path) -> None:
    """What every test run needs and debootstrap does not do."""
    # No login prompt on the console, no network wait, nothing that starts by itself
    # and competes for the 2 CPUs.
    for unit in (
        "getty@.service",
        "console-getty.service",
        "systemd-networkd-wait-online.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
        "fstrim.timer",
    ):
        (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    (root / "etc/hostname").write_text("sessiond-e2e\n")
    # Prometheus listens where the container's private network has it: loopback.
    (root / "etc/default/prometheus").write_text('ARGS="--web.listen-address=127.0.0.1:9090"\n')


def build(cache: Path = CACHE) -> Path:
    """The cached root for key(), built first if missing. Prints how long a build took."""
    root = cache / f"root-{key()}"
    if (root / ".complete").exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"root-{key()}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    started = time.monotonic()
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(partial), MIRROR],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _finish(partial)
    (partial / ".complete").write_text(f"built in {time.monotonic() - started:.0f} s\n")
    partial.rename(root)
    print(f"e2e: built {root} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return root


if __name__ == "__main__":
    print(build())

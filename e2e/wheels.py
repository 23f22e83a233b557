"""A wheelhouse of sessiond's dependencies, so pip inside the offline container needs no index.

The container has a private network (nothing but loopback), so the install guide's (docs/operations.md)
`pip install /path/to/sessiond` runs there with PIP_NO_INDEX=1 and
PIP_FIND_LINKS pointing at this folder: the dependencies and the build
back-end, fetched on the host by its own pip. Cached beside the root, keyed by
the packaging files.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from .root import CACHE


def wheelhouse(repo: Path, cache: Path = CACHE) -> Path:
    """The folder of wheels for *repo*'s packaging, built first if missing."""
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        digest.update((repo / name).read_bytes())
    folder = cache / f"wheels-{digest.hexdigest()[:12]}"
    if (folder / ".complete").exists():
        return folder
    partial = folder.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "download", "--quiet", "--only-binary=:all:", "-d", str(partial), "setuptools>=68", "wheel"], check=True
    )
    subprocess.run([*pip, "wheel", "--quiet", "-w", str(partial), str(repo)], check=True)
    for built in partial.glob("sessiond-*.whl"):
        built.unlink()  # the install guide installs sessiond itself from the source
    (partial / ".complete").touch()
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder

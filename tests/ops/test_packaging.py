"""What gets installed: the wheel holds sessiond alone, with its page; the tested floors are setup.cfg's."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI = Path(resources.files("sessiond.web").joinpath("ui"))  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_wheel_holds_sessiond_alone_with_every_file_of_its_page(tmp_path: Path) -> None:
    """setup.cfg's find: and package_data: no tests, bench or e2e package; the page's files all there."""
    source = tmp_path / "source"  # a clean copy: a stale build/ in the checkout must not leak in
    shutil.copytree(ROOT / "sessiond", source / "sessiond", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in ("tests", "bench", "e2e"):  # present beside it, as in the repository
        (source / package).mkdir()
        (source / package / "__init__.py").write_text("")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (wheel,) = tmp_path.glob("sessiond-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"sessiond", wheel.name.split("-py")[0] + ".dist-info"}
    shipped = {Path(name).name for name in names if name.startswith("sessiond/web/ui/")}
    assert shipped == {path.name for path in UI.iterdir()}
    packaged = {name.rpartition("/")[0] for name in names if name.endswith(".py")}
    assert packaged == {str(p.parent.relative_to(ROOT)) for p in (ROOT / "sessiond").rglob("*.py")}


def test_the_tested_floors_are_the_floors_setup_cfg_allows() -> None:
    """constraints/floor.txt pins each runtime dependency at setup.cfg's minimum, or
    `make test-floor` tests versions nobody installs."""
    import configparser
    import re

    from packaging.version import Version

    root = ROOT
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    minimums = {}
    for line in cfg["options"]["install_requires"].strip().splitlines():
        name, floor = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][^,<]*)(?:,<.*)?", line.strip()).groups()  # type: ignore[union-attr]
        minimums[name.lower()] = Version(floor)
    pins = {}
    for line in (root / "constraints" / "floor.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = Version(version.strip())
    assert pins == minimums

"""What must never import what (ARCHITECTURE.md), checked on the source: a rule that would catch it coming back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sessiond"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module imported at run time (TYPE_CHECKING blocks excluded), absolute names."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        for item in ast.walk(node):
            if isinstance(item, ast.Import):
                found.update(alias.name for alias in item.names)
            elif isinstance(item, ast.ImportFrom):
                if item.level:
                    base = package.split(".")[: len(package.split(".")) - item.level + 1]
                    prefix = ".".join(base)
                    if item.module:
                        found.add(f"{prefix}.{item.module}")
                    else:
                        found.update(f"{prefix}.{alias.name}" for alias in item.names)
                elif item.module:
                    found.add(item.module)
    return found


GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}
OWN = set(GRAPH)


def own(deps: set[str]) -> set[str]:
    return {d for d in deps if d in OWN}


# The pure core: no event loop, no HTTP. Tested with plain synchronous tests.
PURE = [
    "sessiond.core.index",
    "sessiond.core.query",
    "sessiond.core.reconcile",
    "sessiond.core.folder",
    "sessiond.core.snapshot",
    "sessiond.core.loader",
    "sessiond.core.removal",
]


@pytest.mark.parametrize("module", PURE)
def test_the_core_imports_no_event_loop_and_no_http(module: str) -> None:
    forbidden = {d for d in GRAPH[module] if d.split(".")[0] in ("aiohttp", "asyncio", "aiofiles", "watchfiles")}
    assert not forbidden, f"{module} imports {forbidden}"


def test_middlewares_know_nothing_of_routes_handlers_or_app_state() -> None:
    for module, deps in GRAPH.items():
        if module.startswith("sessiond.web.front.") and module != "sessiond.web.front.door":
            bad = own(deps) & {
                "sessiond.web.appkeys",
                "sessiond.web.routes",
                "sessiond.web.api.sessions",
                "sessiond.app",
                "sessiond.live.store",
                "sessiond.live.watcher",
            }
            assert not bad, f"{module} imports {bad}: give it what it needs as a callable instead"


def test_only_the_entry_point_imports_the_cli() -> None:
    assert {m for m, deps in GRAPH.items() if "sessiond.cli" in deps} <= {"sessiond.__main__"}


def test_the_import_graph_has_no_cycles() -> None:
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(own(GRAPH[module])):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, module, dep]))
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


def test_the_tested_floors_are_the_floors_setup_cfg_allows() -> None:
    """constraints/floor.txt pins each runtime dependency at setup.cfg's minimum, or
    `make test-floor` tests versions nobody installs."""
    import configparser
    import re

    from packaging.version import Version

    root = Path(__file__).resolve().parent.parent
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


def test_force_polling_is_left_to_watchfiles_unless_configured(tmp_path: Path) -> None:
    """None lets watchfiles honour WATCHFILES_FORCE_POLLING and its own WSL/network-FS detection."""
    from sessiond import config

    (tmp_path / "sessions").mkdir()
    base = {"workspace": str(tmp_path), "token": "t" * 20}
    assert config.validate(base, env={}).force_polling is None
    assert config.validate({**base, "force_polling": False}, env={}).force_polling is False
    assert config.validate({**base, "force_polling": True}, env={}).force_polling is True

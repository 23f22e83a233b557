"""The systemd units in systemd/ as systemd itself reads them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SERVICE = UNITS / "sessiond.service"
SOCKET = UNITS / "sessiond.socket"
METRICS_SOCKET = UNITS / "sessiond-metrics.socket"
# The templates of several agents on one host (sessiond@NAME).
TEMPLATE_SERVICE = UNITS / "sessiond@.service"
TEMPLATE_SOCKET = UNITS / "sessiond@.socket"
TEMPLATE_METRICS_SOCKET = UNITS / "sessiond-metrics@.socket"
TEMPLATES = (TEMPLATE_SERVICE, TEMPLATE_SOCKET, TEMPLATE_METRICS_SOCKET)
# Lowered as the sandbox is tightened; never raised without saying why.
# What is left: the host's root directory, AF_UNIX (the notify socket) and
# ProtectClock='s implicit char-rtc read (0.1 each, 0.2 overall).
MAX_EXPOSURE = 0.2

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (Debian: apt-get install systemd)")


def unit_values(path: Path, key: str) -> list[str]:
    """Every value of key= in a unit file (no continuation lines are used in ours)."""
    prefix = key + "="
    return [line[len(prefix) :].strip() for line in path.read_text().splitlines() if line.startswith(prefix)]


def executables(path: Path) -> list[str]:
    """The programs the unit's Exec*= lines run, without systemd's prefixes."""
    programs = []
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("Exec") and value:
            programs.append(value.lstrip("-@:+!|").split()[0])
    return programs


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A file system root holding our units, systemd's own, and stub programs.

    verify checks that ExecStart= exists, and the daemon is not installed
    where the tests run; a root keeps the stub out of the real /opt.
    """
    unit_dir = tmp_path / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for unit in (SERVICE, SOCKET, METRICS_SOCKET, *TEMPLATES):
        shutil.copy(unit, unit_dir)
    # sysinit.target, sockets.target, ... which the default dependencies name.
    for vendor in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if vendor.is_dir():
            shutil.copytree(vendor, tmp_path / "usr/lib/systemd/system", symlinks=True)
            break
    for program in executables(SERVICE):
        stub = tmp_path / program.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    return tmp_path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60)


def test_the_workspace_is_the_one_writable_path() -> None:
    environment = dict(value.split("=", 1) for value in unit_values(SERVICE, "Environment"))
    assert unit_values(SERVICE, "ReadWritePaths") == [environment["SESSIOND_WORKSPACE"]]


def test_the_service_is_a_notify_service_with_a_watchdog() -> None:
    assert unit_values(SERVICE, "Type") == ["notify"]
    # exec: the config check of ExecReload= may set STATUS; the scan pool may not.
    assert unit_values(SERVICE, "NotifyAccess") == ["exec"]
    assert unit_values(SERVICE, "WatchdogSec") == ["30s"]


def test_reload_checks_the_config_before_signalling() -> None:
    """A broken config fails `systemctl reload` instead of looking like success."""
    start = unit_values(SERVICE, "ExecStart")[0]
    binary, config_args = start.split(" ", 1)
    assert unit_values(SERVICE, "ExecReload") == [
        f"{binary} check-config --quiet {config_args}",
        "/bin/kill -HUP $MAINPID",
    ]


def test_the_token_is_read_again_on_reload() -> None:
    """systemd 252 loads LoadCredential= only at start: a rotated credential would
    need a restart. The token file named by the shipped config is read on reload."""
    assert unit_values(SERVICE, "LoadCredential") == []
    example = (UNITS.parent / "config" / "sessiond.toml").read_text()
    assert 'token_file = "/etc/sessiond/token"' in example.splitlines()


def test_a_config_error_is_not_restarted_forever() -> None:
    """Exit 2 (a bad setting) is final; any other crash loop hits a start limit."""
    assert unit_values(SERVICE, "Restart") == ["on-failure"]
    assert unit_values(SERVICE, "RestartPreventExitStatus") == ["2"]
    assert unit_values(SERVICE, "StartLimitBurst") and unit_values(SERVICE, "StartLimitIntervalSec")


def test_the_scrape_socket_is_passed_by_name() -> None:
    assert unit_values(METRICS_SOCKET, "FileDescriptorName") == ["metrics"]
    assert unit_values(METRICS_SOCKET, "Service") == ["sessiond.service"]
    assert unit_values(METRICS_SOCKET, "ListenStream") == ["127.0.0.1:9477"]
    assert unit_values(SERVICE, "Sockets") == ["sessiond.socket sessiond-metrics.socket"]


@needs_analyze
def test_units_pass_systemd_analyze_verify(root: Path) -> None:
    units = [str(root / "etc/systemd/system" / unit.name) for unit in (SOCKET, METRICS_SOCKET, SERVICE)]
    result = analyze("verify", "--man=no", f"--root={root}", *units)
    # verify exits 0 on mere warnings (an unknown key, a bad syscall group),
    # so any output at all is a failure.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
def test_verify_catches_a_broken_unit(root: Path) -> None:
    """The check above is not vacuous: a typo in a setting is reported."""
    service = root / "etc/systemd/system/sessiond.service"
    service.write_text(service.read_text().replace("PrivateTmp=yes", "PrivateTemp=yes"))
    result = analyze("verify", "--man=no", f"--root={root}", str(service))
    assert "PrivateTemp" in result.stderr


def exposure(root: Path, unit: str) -> float:
    """`systemd-analyze security --offline`'s overall exposure of *unit* (skips where it cannot run offline)."""
    result = analyze("security", "--offline=true", f"--root={root}", str(root / "etc/systemd/system" / unit))
    if result.returncode != 0 and "offline" in result.stderr:
        pytest.skip(f"systemd-analyze security --offline unsupported: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


@needs_analyze
def test_service_exposure_stays_low(root: Path) -> None:
    assert exposure(root, "sessiond.service") <= MAX_EXPOSURE


def test_the_unit_gives_room_for_many_connections() -> None:
    assert int(unit_values(SERVICE, "LimitNOFILE")[0]) >= 65536


# -- the templates: several agents on one host -----------------------------------------


def settings(path: Path) -> list[str]:
    """The unit's setting lines, comments and blank lines left out."""
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_the_instance_name_picks_config_token_workspace_socket_and_state() -> None:
    assert unit_values(TEMPLATE_SERVICE, "ExecStart") == ["/opt/sessiond/bin/sessiond --config /etc/sessiond/%i.toml"]
    environment = dict(value.split("=", 1) for value in unit_values(TEMPLATE_SERVICE, "Environment"))
    assert environment == {
        "SESSIOND_WORKSPACE": "/var/lib/sessiond/%i/workspace",
        "SESSIOND_TOKEN_FILE": "/etc/sessiond/%i.token",
    }
    assert unit_values(TEMPLATE_SERVICE, "ReadWritePaths") == [environment["SESSIOND_WORKSPACE"]]
    assert unit_values(TEMPLATE_SERVICE, "StateDirectory") == ["sessiond/%i/state"]
    assert unit_values(TEMPLATE_SOCKET, "ListenStream") == ["/run/sessiond/%i.sock"]
    assert unit_values(TEMPLATE_METRICS_SOCKET, "ListenStream") == ["/run/sessiond/%i.metrics.sock"]
    assert unit_values(TEMPLATE_METRICS_SOCKET, "FileDescriptorName") == ["metrics"]
    assert unit_values(TEMPLATE_METRICS_SOCKET, "Service") == ["sessiond@%i.service"]
    assert unit_values(TEMPLATE_SERVICE, "Sockets") == ["sessiond@%i.socket sessiond-metrics@%i.socket"]
    assert unit_values(TEMPLATE_SERVICE, "Requires") == ["sessiond@%i.socket"]
    # nginx (www-data) reaches both sockets; nobody else does.
    for socket_unit in (TEMPLATE_SOCKET, TEMPLATE_METRICS_SOCKET):
        assert unit_values(socket_unit, "SocketGroup") == ["www-data"]
        assert unit_values(socket_unit, "SocketMode") == ["0660"]


def test_the_template_service_is_the_single_service_but_for_the_instance() -> None:
    """The sandbox, limits and reload of an agent's daemon are the single unit's, line for line:
    only what the instance name picks differs, so a change to one cannot silently miss the other."""
    as_single = {
        " (%i)": "",
        "sessiond@%i.socket": "sessiond.socket",
        "sessiond-metrics@%i.socket": "sessiond-metrics.socket",
        "/etc/sessiond/%i.toml": "/etc/sessiond/sessiond.toml",
        "/var/lib/sessiond/%i/workspace": "/var/lib/sessiond/workspace",
        "sessiond/%i/state": "sessiond/state",
    }
    instance = []
    for line in settings(TEMPLATE_SERVICE):
        if line == "Environment=SESSIOND_TOKEN_FILE=/etc/sessiond/%i.token":
            continue  # the single unit's token file is named in its config
        rendered = line
        for picked, single in as_single.items():
            rendered = rendered.replace(picked, single)
        assert "%i" not in rendered
        instance.append(rendered)
    assert instance == settings(SERVICE)


def test_the_template_socket_is_the_single_socket_but_for_its_path() -> None:
    single = [line for line in settings(SOCKET) if not line.startswith(("Description=", "ListenStream="))]
    instance = [line for line in settings(TEMPLATE_SOCKET) if not line.startswith(("Description=", "ListenStream="))]
    assert instance == single


@needs_analyze
def test_template_units_pass_systemd_analyze_verify(root: Path) -> None:
    """Two instances, as `make e2e` runs them: verify loads each from its template."""
    units = [
        str(root / "etc/systemd/system" / unit.name.replace("@", f"@{name}"))
        for name in ("a", "b")
        for unit in (TEMPLATE_SOCKET, TEMPLATE_METRICS_SOCKET, TEMPLATE_SERVICE)
    ]
    result = analyze("verify", "--man=no", f"--root={root}", *units)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
def test_verify_catches_a_broken_template(root: Path) -> None:
    socket_unit = root / "etc/systemd/system" / TEMPLATE_METRICS_SOCKET.name
    socket_unit.write_text(socket_unit.read_text().replace("Accept=no", "Acept=no"))
    result = analyze("verify", "--man=no", f"--root={root}", str(root / "etc/systemd/system/sessiond@a.service"))
    assert "Acept" in result.stderr


@needs_analyze
def test_an_instance_is_as_sandboxed_as_the_single_service(root: Path) -> None:
    assert exposure(root, "sessiond@a.service") <= MAX_EXPOSURE

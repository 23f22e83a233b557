"""Settings: defaults < TOML file < SESSIOND_* environment < flags, validated once."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sessiond.core.retention import RetentionRule, parse_rules
from sessiond.core.tokens import NamedToken, TokensError, digest_of, load_tokens

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """A setting is wrong; the message names the setting and the fix."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything the daemon is told by its operator; immutable once loaded."""

    workspace: Path
    token: str = dataclasses.field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    unix: Path | None = None
    unix_mode: int = 0o660
    rate_limit_per_ip: int = 60
    rate_limit_per_token: int = 60
    rate_limit_max_clients: int = 100_000
    trusted_proxies: tuple[IPNetwork, ...] = ()
    log_level: str = "INFO"
    log_format: str = "text"
    access_log: bool = True
    metrics_require_token: bool = True
    debounce_ms: int = 20
    # None: let watchfiles decide (its WATCHFILES_FORCE_POLLING and its WSL/network
    # file system detection); true or false only when the operator says so.
    force_polling: bool | None = None
    reconcile_interval: float = 300.0
    max_file_bytes: int = 256 * 1024 * 1024
    shutdown_timeout: float = 10.0
    max_connections: int = 0  # 0: what the open-file limit leaves room for (capacity.py), at most 10,000
    trash_days: float = 0.0
    events_buffer: int = 10_000
    events_keepalive: float = 15.0
    state_dir: Path | None = None
    snapshot_interval: float = 60.0
    retention: tuple[RetentionRule, ...] = ()  # none: the daemon deletes nothing by itself
    retention_interval: float = 3600.0
    retention_max_per_run: int = 1000
    retention_dry_run: bool = False
    retention_grace: float = 600.0
    search: bool = True
    audit_max_bytes: int = 8 * 1024 * 1024
    search_cache_mb: int = 16
    config_file: Path | None = None
    token_source: str = "token"  # where the token came from (never the token itself)
    tokens_file: Path | None = None
    tokens: tuple[NamedToken, ...] = dataclasses.field(default=(), repr=False)  # the named tokens, read from tokens_file

    @property
    def sessions_dir(self) -> Path:
        """The only folder sessiond reads from and deletes in."""
        return self.workspace / "sessions"

    @property
    def snapshot_path(self) -> Path | None:
        """Where the index snapshot lives (None: no snapshot, every start reads every file)."""
        return self.state_dir / "index.snapshot" if self.state_dir else None

    @property
    def search_path(self) -> Path | None:
        """Where the search index lives (None: in memory, built again at every start)."""
        return self.state_dir / "search.sqlite" if self.state_dir else None


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 0/1, true/false, yes/no or on/off")


def _octal(text: str) -> int:
    return int(text, 8)


def octal(mode: int) -> str:
    """A permission mode as the operator writes it, and as TOML reads it: 0o660."""
    return f"0o{mode:03o}"


def _proxies(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """One setting, described once: how env/flag text becomes a value, and what it is."""

    name: str
    parse: Callable[[str], Any]
    help: str
    flag: bool = False  # also a command-line flag (--name-with-dashes)


SETTINGS: tuple[Setting, ...] = (
    Setting("workspace", str, "agent workspace; sessions are read from DIR/sessions", flag=True),
    Setting("token", str, "API token, 16+ printable ASCII characters (prefer token_file)"),
    Setting("token_file", str, "file holding the API token; re-read on reload", flag=True),
    Setting("tokens_file", str, "TOML file of named tokens ([[token]] name, scope, file); re-read on reload"),
    Setting("host", str, "TCP address to listen on; empty: unix socket only", flag=True),
    Setting("port", int, "TCP port (0: any free port, logged once bound)", flag=True),
    Setting("unix", str, "also listen on this unix socket", flag=True),
    Setting("unix_mode", _octal, "unix socket permissions, octal", flag=True),
    Setting("rate_limit_per_ip", int, "requests/min per client IP (0: off)", flag=True),
    Setting("rate_limit_per_token", int, "requests/min per token (0: off)", flag=True),
    Setting("rate_limit_max_clients", int, "rate-limit buckets kept per limit"),
    Setting("trusted_proxies", _proxies, "comma-separated proxy addresses/CIDRs whose X-Forwarded-For is believed", flag=True),
    Setting("log_level", str, "DEBUG, INFO, WARNING, ERROR or CRITICAL", flag=True),
    Setting("log_format", str, "text, or json: one JSON object per line", flag=True),
    Setting("access_log", _bool, "one log line per request (0/1)", flag=True),
    Setting("metrics_require_token", _bool, "whether /metrics on the API listener needs the token"),
    Setting("debounce_ms", int, "file-event batch window in milliseconds"),
    Setting("force_polling", _bool, "poll the folder instead of inotify (NFS, SMB)", flag=True),
    Setting("reconcile_interval", float, "seconds between stat-only checks of index against disk (0: off)"),
    Setting("max_file_bytes", int, "larger session files are reported invalid unread"),
    Setting("shutdown_timeout", float, "seconds in-flight requests get on SIGTERM"),
    Setting(
        "max_connections",
        int,
        "connections served at once; past it, probes are answered and the rest 503 (0: from the open-file limit)",
    ),
    Setting("trash_days", float, "days a deleted session stays restorable (0: DELETE is permanent)"),
    Setting("events_buffer", int, "changes kept for Last-Event-ID resumes of the event feed"),
    Setting("events_keepalive", float, "seconds between keep-alive comments on event streams"),
    Setting("state_dir", str, "where the index snapshot is kept (default: $STATE_DIRECTORY)"),
    Setting("snapshot_interval", float, "seconds between snapshot refreshes"),
    Setting(
        "retention",
        _json,
        "deletion rules: [[retention]] tables of prefix, idle_days, keep_at_most (JSON list in the environment)",
    ),
    Setting("retention_interval", float, "seconds between retention runs"),
    Setting("retention_max_per_run", int, "a run that would delete more deletes nothing and says why"),
    Setting("retention_dry_run", _bool, "retention only reports what it would delete"),
    Setting("retention_grace", float, "seconds: a session updated this recently is never deleted by retention"),
    Setting("search", _bool, "full-text search over the messages (0: off, no index written)", flag=True),
    Setting("audit_max_bytes", int, "the audit file in state_dir is rotated to audit.jsonl.1 past this size"),
    Setting("search_cache_mb", int, "SQLite page cache of the search index, MiB per connection"),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}
KNOWN = frozenset(BY_NAME)
# SESSIOND_* variables that are not settings of the daemon but are expected beside them.
OTHER_VARIABLES = frozenset({"SESSIOND_CONFIG", "SESSIOND_URL"})
# An empty variable usually means "unset"; for these it is a deliberate value
# (no token: refuse to start; no host: unix socket only; no proxies; no socket).
_EMPTY_IS_A_VALUE = frozenset({"token", "host", "trusted_proxies", "unix"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


def env_name(name: str) -> str:
    """The environment variable that carries setting *name*."""
    return "SESSIOND_" + name.upper()


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} does not exist; fix --config") from None
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path} ({exc.strerror}); fix --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML ({exc})") from None
    # Accept both a flat file and one with a [sessiond] table.
    if isinstance(data.get("sessiond"), dict):
        data = {**{k: v for k, v in data.items() if k != "sessiond"}, **data["sessiond"]}
    unknown = sorted(set(data) - KNOWN)
    if unknown:
        raise ConfigError(f"config: unknown setting {unknown[0]!r} in {path}; known settings: {', '.join(sorted(KNOWN))}")
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, setting in BY_NAME.items():
        parse = setting.parse
        raw = env.get(env_name(name))
        if raw is None or (raw == "" and name not in _EMPTY_IS_A_VALUE):
            continue
        try:
            out[name] = parse(raw)
        except ValueError:
            raise ConfigError(f"{env_name(name)}: {_show(name, raw)} is not {expected(parse)}") from None
    return out


def expected(parse: Callable[[str], Any]) -> str:
    """What text *parse* accepts, for error messages."""
    return {
        int: "a whole number",
        float: "a number",
        _bool: "a switch (0/1, true/false, yes/no, on/off)",
        _json: "JSON (a list of rules)",
        _octal: "an octal mode like 660 or 0o660",
    }.get(parse, "valid")


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """One line per SESSIOND_* variable that names no setting (a typo is otherwise silent)."""
    known = {env_name(name) for name in KNOWN} | OTHER_VARIABLES
    lines = []
    for var in sorted(v for v in env if v.startswith("SESSIOND_") and v not in known):
        close = difflib.get_close_matches(var, sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(known))}"
        lines.append(f"{var}: not a sessiond setting, ignored{hint}")
    return lines


def _show(name: str, value: object) -> str:
    return "(hidden)" if name == "token" else repr(value)


def load(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Merge file < env < flags and validate; raise ConfigError naming the bad setting."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    file_path = config_file or flags.pop("config", None) or env.get("SESSIOND_CONFIG") or None
    merged: dict[str, Any] = {}
    if file_path:
        merged.update(_read_file(Path(file_path)))
    merged.update(_from_env(env))
    merged.update(flags)
    merged["config_file"] = Path(file_path).resolve() if file_path else None
    return validate(merged, env)


def _token(values: dict[str, Any], env: Mapping[str, str]) -> tuple[str, str]:
    token = values.pop("token", None)
    token_file = values.pop("token_file", None)
    source = "token setting"
    if token is None and token_file:
        source = f"token_file {token_file}"
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"token_file: cannot read {token_file} ({exc.strerror}); fix the path or its permissions") from None
        except UnicodeDecodeError:
            raise ConfigError(f"token_file: {token_file} is not UTF-8 text; write the token into it as text") from None
        if not token:
            raise ConfigError(f"token_file: {token_file} is empty; write the token (16+ printable ASCII characters) into it")
    if token is None and env.get("CREDENTIALS_DIRECTORY"):
        cred = Path(env["CREDENTIALS_DIRECTORY"]) / "token"
        if cred.exists():
            source = "systemd credential 'token'"
            try:
                token = cred.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"token: cannot read systemd credential {cred} ({exc})") from None
            if not token:
                raise ConfigError(f"token: the systemd credential {cred} is empty; put the token in its source file")
    if not token:
        raise ConfigError(
            "token: no API token configured; set SESSIOND_TOKEN, SESSIOND_TOKEN_FILE "
            "(or token_file in the config), or a systemd credential named 'token'"
        )
    if not isinstance(token, str) or not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(f"token: the {source} must be printable ASCII without spaces")
    if len(token) < 16:
        raise ConfigError(f"token: the {source} is too short ({len(token)} chars); use at least 16")
    return token, source


def _int(values: dict[str, Any], name: str, low: int, high: int) -> None:
    if name not in values:
        return
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name}: {value!r} is not a whole number from {low} to {high}")


def _float(values: dict[str, Any], name: str, low: float, high: float) -> None:
    if name not in values:
        return
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{name}: {value!r} is not a number from {low} to {high}")
    values[name] = float(value)


def validate(values: dict[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Check every setting once; the first problem raises ConfigError."""
    values = dict(values)
    env = os.environ if env is None else env
    token, values["token_source"] = _token(values, env)

    raw_ws = values.pop("workspace", None)
    if not raw_ws:
        raise ConfigError("workspace: not set; pass --workspace DIR or set SESSIOND_WORKSPACE")
    workspace = Path(str(raw_ws)).expanduser().resolve()
    if not workspace.is_dir():
        raise ConfigError(f"workspace: {workspace} is not an existing directory; create it or fix --workspace")

    _int(values, "port", 0, 65535)
    for name in ("rate_limit_per_ip", "rate_limit_per_token"):
        _int(values, name, 0, 1_000_000)
    _int(values, "rate_limit_max_clients", 100, 10_000_000)
    _int(values, "debounce_ms", 1, 10_000)
    _int(values, "max_file_bytes", 1024, 1 << 40)
    _float(values, "reconcile_interval", 0, 86400 * 7)
    _float(values, "shutdown_timeout", 0, 3600)
    _int(values, "max_connections", 0, 1_000_000)
    _float(values, "trash_days", 0, 3650)
    _int(values, "events_buffer", 1, 10_000_000)
    _float(values, "events_keepalive", 0.01, 3600)
    _float(values, "snapshot_interval", 1, 86400)
    _float(values, "retention_interval", 1, 86400 * 7)
    _int(values, "retention_max_per_run", 1, 1_000_000)
    _float(values, "retention_grace", 60, 86400)
    _int(values, "search_cache_mb", 1, 4096)
    _int(values, "audit_max_bytes", 4096, 1 << 40)
    if "retention" in values:
        try:
            values["retention"] = parse_rules(values["retention"])
        except ValueError as exc:
            raise ConfigError(f"retention: {exc}") from None
    state_dir = values.get("state_dir", env.get("STATE_DIRECTORY", "").split(":")[0] or None)
    if state_dir:
        path = Path(str(state_dir)).expanduser().resolve()
        if not path.is_dir() or not os.access(path, os.W_OK):
            raise ConfigError(f"state_dir: {path} is not a writable directory; create it or unset state_dir")
        if path == workspace / "sessions" or workspace / "sessions" in path.parents:
            raise ConfigError("state_dir: must not be inside the sessions folder; pick another directory")
        values["state_dir"] = path
    else:
        values.pop("state_dir", None)
    if "unix_mode" in values:
        mode = values["unix_mode"]
        if isinstance(mode, str):
            try:
                mode = int(mode, 8)
            except ValueError:
                raise ConfigError(f"unix_mode: {mode!r} is not an octal mode like '660' or 0o660") from None
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
            shown = octal(mode) if isinstance(mode, int) and not isinstance(mode, bool) and mode >= 0 else repr(mode)
            raise ConfigError(f"unix_mode: {shown} is not a permission mode from 0o000 to 0o777")
        values["unix_mode"] = mode
    if "unix" in values:
        values["unix"] = Path(str(values["unix"])).expanduser() if values["unix"] else None
    if "log_level" in values:
        level = str(values["log_level"]).upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"log_level: {values['log_level']!r} is not one of {', '.join(LOG_LEVELS)}")
        values["log_level"] = level
    if "log_format" in values:
        fmt = str(values["log_format"]).lower()
        if fmt not in LOG_FORMATS:
            raise ConfigError(f"log_format: {values['log_format']!r} is not one of {', '.join(LOG_FORMATS)}")
        values["log_format"] = fmt
    for name in ("access_log", "metrics_require_token", "force_polling", "retention_dry_run", "search"):
        if name in values and not isinstance(values[name], bool):
            raise ConfigError(f"{name}: {values[name]!r} is not true or false")
    if "trusted_proxies" in values:
        values["trusted_proxies"] = _networks(values["trusted_proxies"])
    if "host" in values and not isinstance(values["host"], str):
        raise ConfigError(f"host: {values['host']!r} is not a host name or address")
    _tokens(values, token)
    if not values.get("host", "127.0.0.1") and not values.get("unix"):
        raise ConfigError("host: empty (unix socket only) but no unix socket is set; set --unix PATH or a host")
    return Settings(workspace=workspace, token=token, **values)


def _tokens(values: dict[str, Any], token: str) -> None:
    raw = values.pop("tokens_file", None)
    if not raw:
        return
    path = Path(str(raw)).expanduser().resolve()
    try:
        tokens = load_tokens(path)
    except TokensError as exc:
        raise ConfigError(f"tokens_file: {exc}") from None
    admin = digest_of(token.encode("ascii"))
    for named in tokens:
        if named.digest == admin:
            raise ConfigError(f"tokens_file: the token {named.name!r} has the same secret as the single (admin) token")
    values["tokens_file"] = path
    values["tokens"] = tokens


def _networks(raw: Any) -> tuple[IPNetwork, ...]:
    items = _proxies(raw) if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)):
        raise ConfigError("trusted_proxies: expected a list of addresses or CIDRs")
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise ConfigError(f"trusted_proxies: {item!r} is not an IP address or CIDR (e.g. 127.0.0.1 or 10.0.0.0/8)") from None
    return tuple(nets)

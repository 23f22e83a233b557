"""`sessiond check-config`: what `nginx -t` is to nginx.

Loads flags, environment and file exactly as the daemon would, checks what the
daemon will touch with this process's own rights (run it as the service user, or
let `systemctl reload` run it inside the unit's sandbox), and prints the
effective settings (never the token). Exit 0, or 2 with the daemon's one-line
errors. Under systemd (ExecReload=), a refusal also goes to the unit's status line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from sessiond import config
from sessiond.ops.logs import stream_is_journal
from sessiond.ops.systemd import SystemdNotifier


def access_problems(settings: config.Settings) -> list[str]:
    """What this process could not do that the daemon needs, one line each."""
    problems = []
    sessions = settings.sessions_dir
    if sessions.is_dir():
        if not os.access(sessions, os.R_OK | os.W_OK | os.X_OK):
            problems.append(
                f"workspace: {sessions} is not readable and writable by this user; "
                "give the service user read/write access (the shared group, mode 2770)"
            )
    elif not os.access(settings.workspace, os.W_OK | os.X_OK):
        problems.append(f"workspace: {settings.workspace} has no sessions folder and this user cannot create it")
    if settings.unix is not None:
        parent = Path(settings.unix).parent
        if not os.access(parent, os.W_OK | os.X_OK):
            problems.append(f"unix: cannot create a socket in {parent}; fix --unix or the folder's permissions")
    return problems


def effective(settings: config.Settings) -> list[str]:
    """The settings as TOML the daemon reads back unchanged; the token only by its source."""
    lines = []
    tables = []
    for field in dataclasses.fields(settings):
        value: Any = getattr(settings, field.name)
        if field.name == "token":
            lines.append(f"# token: from {_escape(settings.token_source)} (hidden)")
        elif field.name == "token_source":
            continue
        elif field.name == "tokens":  # read from tokens_file; the secrets stay in their files
            shown = ", ".join(f"{t.name} ({t.scope.label})" for t in value)
            lines.append(f"# tokens: {shown or 'none besides the single (admin) token'}")
        elif field.name == "config_file":  # not a setting of the file itself
            lines.append(f"# config_file: {_escape(str(value)) if value else 'not set'}")
        elif field.name == "retention":
            # [[retention]] tables must follow every plain key, so they go last.
            tables += [f"\n[[retention]]\n{_table(rule.describe())}" for rule in value]
            if not value:
                lines.append("# retention: no rules (the daemon deletes nothing by itself)")
        elif value is None:
            lines.append(f"# {field.name}: not set")
        else:
            lines.append(f"{field.name} = {toml_value(field.name, value)}")
    return lines + tables


def toml_value(name: str, value: Any) -> str:
    """*value* of setting *name* as a TOML value (modes in octal, networks as text)."""
    if name == "unix_mode":
        return config.octal(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value("", v) for v in value) + "]"
    if isinstance(value, (str, Path, ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return _toml_string(str(value))
    return repr(value)  # int or float: Python's repr of a finite number is TOML


def _table(fields: Mapping[str, Any]) -> str:
    return "".join(f"{k} = {toml_value(k, v)}\n" for k, v in fields.items() if v is not None).rstrip("\n")


def _toml_string(text: str) -> str:
    return '"' + _escape(text) + '"'


def _escape(text: str) -> str:
    # As in a TOML basic string: backslash, quote and every control character escaped
    # (a comment may hold none either).
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def check_config(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    quiet: bool = False,
) -> int:
    """Run the check; 0 when the daemon would start with these settings, else 2."""
    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    error_prefix = "<3>" if stream_is_journal(err, env) else ""
    warn_prefix = "<4>" if error_prefix else ""
    for line in config.unknown_variables(env):
        print(f"{warn_prefix}sessiond: warning: {line}", file=err)
    try:
        settings = config.load(dict(flags), env)
        problems = access_problems(settings)
    except config.ConfigError as exc:
        problems = [str(exc)]
    if problems:
        for problem in problems:
            print(f"{error_prefix}sessiond: {problem}", file=err)
        notifier = SystemdNotifier(env)
        if notifier.enabled:  # as ExecReload=: say it where `systemctl status` shows it
            notifier.status(f"reload refused ({problems[0]}); still serving with the previous configuration")
            notifier.close()
        return 2
    if not quiet:
        print("\n".join(effective(settings)), file=out)
        print("sessiond: configuration ok", file=err)
    return 0

"""The `sessiond` command: its flags and `sessiond check-config`; the daemon's life is in server.py."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import faulthandler
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from sessiond import __version__, config
from sessiond.ops.checkconfig import check_config, toml_value
from sessiond.ops.logs import apply_logging, escape_controls, setup_logging, stream_is_journal
from sessiond.server import Daemon, StartupError

log = logging.getLogger("sessiond")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line, like every other bad setting."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see --help\n")


def _flag_type(setting: config.Setting) -> Callable[[str], object]:
    parse = setting.parse

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {config.expected(parse)}") from None

    convert.__name__ = setting.name  # argparse names it in "invalid ... value"
    return convert


def settings_help() -> str:
    """Every setting with its config-file key, environment variable and flag."""
    defaults = {f.name: f.default for f in dataclasses.fields(config.Settings)}
    lines = ["settings (config file key / environment variable / flag; flag beats env beats file):"]
    for setting in config.SETTINGS:
        flag = f" / --{setting.name.replace('_', '-')}" if setting.flag else ""
        default = defaults.get(setting.name, dataclasses.MISSING)
        shown = "" if default in (dataclasses.MISSING, None, ()) else f" (default {toml_value(setting.name, default)})"
        lines.append(f"  {setting.name} / {config.env_name(setting.name)}{flag}")
        lines.append(f"      {setting.help}{shown}")
    lines += [
        "  (config file) / SESSIOND_CONFIG / --config",
        "",
        "sessiond check-config [flags]: load the settings as the daemon would, check the token,",
        "workspace and state dir as this user, print the effective settings; exit 0 or 2.",
    ]
    return "\n".join(lines)


def build_parser(prog: str = "sessiond") -> argparse.ArgumentParser:
    """Flags; each overrides SESSIOND_<NAME> and the config file."""
    p = _Parser(
        prog=prog,
        description="Serve agent session files over HTTP.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"sessiond {__version__}")
    p.add_argument("--config", metavar="FILE", help="TOML config file (env SESSIOND_CONFIG)")
    for setting in config.SETTINGS:
        if setting.flag:
            p.add_argument(
                "--" + setting.name.replace("_", "-"),
                dest=setting.name,
                type=_flag_type(setting),
                metavar=setting.name.upper(),
                help=setting.help,
            )
    if prog.endswith("check-config"):
        p.add_argument("-q", "--quiet", action="store_true", help="print nothing when all is well")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["check-config"]:
        args = build_parser("sessiond check-config").parse_args(argv[1:])
        flags = vars(args)
        return check_config(flags, quiet=bool(flags.pop("quiet")))
    flags = vars(build_parser().parse_args(argv))
    try:
        settings = config.load(flags)
    except config.ConfigError as exc:
        # One line: a value quoted from the config or the environment may hold any character.
        print(f"{'<3>' if stream_is_journal(sys.stderr) else ''}sessiond: {escape_controls(str(exc))}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    apply_logging(settings.log_level, settings.log_format, settings.access_log)
    for line in config.unknown_variables(os.environ):
        log.warning("%s", line)
    # A watchdog timeout ends us with SIGABRT: leave the stuck stack in the journal.
    faulthandler.enable()
    try:
        asyncio.run(Daemon(settings, flags).serve())
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    return 0

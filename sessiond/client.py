"""`sessionctl`: a small operator's client for a running sessiond, over its HTTP API.

    sessionctl ls --prefix telegram: --older-than 30d
    sessionctl rm --dry-run --prefix telegram: --older-than 30d
    sessionctl restore user:alice:x

The token comes from SESSIOND_TOKEN or a file (--token-file, SESSIOND_TOKEN_FILE),
never from the command line, where other users could read it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
PAGE = 1000


class ClientError(Exception):
    """The daemon could not be reached or refused the request; the message says why."""


def duration(text: str) -> float:
    """Seconds in '45s', '90m', '12h', '30d' or '2w'."""
    try:
        number, unit = float(text[:-1]), UNITS[text[-1]]
    except (ValueError, KeyError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 45s, 90m, 12h, 30d or 2w") from None
    return number * unit


class Api:
    """Blocking JSON calls to one daemon."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """One request; the decoded JSON answer, or ClientError with the daemon's detail."""
        query = "?" + urllib.parse.urlencode(params) if params else ""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path + query, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.load(exc).get("detail", exc.reason)
            except ValueError:
                detail = exc.reason
            raise ClientError(f"{exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClientError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from None

    def sessions(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every matching session's metadata, page by page."""
        params = {**params, "include": "meta", "limit": PAGE}
        while True:
            page = self.call("GET", "/api/v1/sessions", params)
            yield from page["sessions"]
            if not page["next_cursor"]:
                return
            params["cursor"] = page["next_cursor"]


def _filter(args: argparse.Namespace) -> dict[str, Any]:
    now = time.time()
    flt: dict[str, Any] = {}
    if args.prefix:
        flt["prefix"] = args.prefix
    if args.older_than is not None:
        flt["updated_before"] = now - args.older_than
    if args.newer_than is not None:
        flt["updated_after"] = now - args.newer_than
    if args.min_messages is not None:
        flt["min_messages"] = args.min_messages
    if args.max_messages is not None:
        flt["max_messages"] = args.max_messages
    return flt


def _ls(api: Api, args: argparse.Namespace) -> int:
    params = {**_filter(args), "sort": args.sort, "order": "desc" if args.desc else "asc"}
    for item in api.sessions(params):
        if args.long:
            updated = datetime.datetime.fromtimestamp(item["updated_at"]).isoformat(timespec="seconds")
            print(f"{item['key']}\t{item['message_count']}\t{updated}\t{item['size']}")
        else:
            print(item["key"])
    return 0


def _rm(api: Api, args: argparse.Namespace) -> int:
    flt = _filter(args)
    if bool(args.keys) == bool(flt):
        raise ClientError("give either keys or filter options (--prefix, --older-than, ...)")
    body: dict[str, Any] = {"keys": args.keys} if args.keys else {"filter": flt}
    body.update(dry_run=args.dry_run, max=args.max)
    answer = api.call("POST", "/api/v1/sessions:batchDelete", body=body)
    if args.dry_run:
        return _report("would delete", answer["matched"], answer["failed"])
    return _report("deleted", answer["deleted"], answer["failed"])


def _restore(api: Api, args: argparse.Namespace) -> int:
    answer = api.call("POST", "/api/v1/trash:restore", body={"keys": args.keys})
    return _report("restored", [item["key"] for item in answer["restored"]], answer["failed"])


def _report(verb: str, keys: list[str], failed: list[dict[str, str]]) -> int:
    """One line per key done, one per failure (on stderr); 1 if anything failed."""
    for key in keys:
        print(f"{verb} {key}")
    for failure in failed:
        print(f"failed {failure['key']}: {failure['reason']}", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The commands and their options."""
    p = argparse.ArgumentParser(prog="sessionctl", description="List, delete and restore sessions on a sessiond.")
    p.add_argument("--url", default=os.environ.get("SESSIOND_URL", "http://127.0.0.1:8080"),
                   help="daemon address (env SESSIOND_URL; default http://127.0.0.1:8080)")
    p.add_argument("--token-file", default=os.environ.get("SESSIOND_TOKEN_FILE"),
                   help="file holding the API token (env SESSIOND_TOKEN_FILE; or set SESSIOND_TOKEN)")
    commands = p.add_subparsers(dest="command", required=True)
    ls = commands.add_parser("ls", help="list sessions")
    rm = commands.add_parser("rm", help="delete sessions by key or by filter")
    for sub in (ls, rm):
        sub.add_argument("--prefix", help="keys starting with this")
        sub.add_argument("--older-than", type=duration, metavar="AGE", help="not updated for AGE (e.g. 30d)")
        sub.add_argument("--newer-than", type=duration, metavar="AGE", help="updated within AGE")
        sub.add_argument("--min-messages", type=int, metavar="N")
        sub.add_argument("--max-messages", type=int, metavar="N")
    ls.add_argument("--sort", choices=("key", "created_at", "updated_at", "message_count"), default="key")
    ls.add_argument("--desc", action="store_true", help="descending order")
    ls.add_argument("-l", "--long", action="store_true", help="key, messages, updated, bytes (tab-separated)")
    rm.add_argument("keys", nargs="*", metavar="KEY")
    rm.add_argument("--dry-run", action="store_true", help="show what would be deleted")
    rm.add_argument("--max", type=int, default=1000, help="refuse if more than this many match (default 1000)")
    restore = commands.add_parser("restore", help="bring trashed sessions back (newest version of each key)")
    restore.add_argument("keys", nargs="+", metavar="KEY")
    return p


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise ClientError(f"cannot read token file {args.token_file}: {exc.strerror}") from None
    token = os.environ.get("SESSIOND_TOKEN", "")
    if not token:
        raise ClientError("no token: set SESSIOND_TOKEN or pass --token-file")
    return token


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sessionctl` console script."""
    args = build_parser().parse_args(argv)
    run = {"ls": _ls, "rm": _rm, "restore": _restore}[args.command]
    try:
        return run(Api(args.url, _token(args)), args)
    except ClientError as exc:
        print(f"sessionctl: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

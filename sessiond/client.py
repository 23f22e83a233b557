"""`sessionctl`: a small operator's client for a running sessiond, over its HTTP API.

    sessionctl ls --prefix telegram: --older-than 30d
    sessionctl show user:alice:x
    sessionctl rm --dry-run --prefix telegram: --older-than 30d
    sessionctl trash                  # what is in the trash, with ids
    sessionctl trash show ID          # one trashed file as stored, before restoring it
    sessionctl restore user:alice:x
    sessionctl invalid                # files that are not sessions, and why
    sessionctl --unix /run/sessiond/sessiond.sock health

The token comes from SESSIOND_TOKEN or a file (--token-file, SESSIOND_TOKEN_FILE),
never from the command line, where other users could read it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from sessiond import __version__

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
PAGE = 1000
TIMEOUT = 60.0


class ClientError(Exception):
    """The daemon could not be reached or refused the request; the message says why."""


class HttpError(ClientError):
    """The daemon answered with an error status."""

    def __init__(self, status: int, detail: str, body: Any = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.body = body


def duration(text: str) -> float:
    """Seconds in '45s', '90m', '12h', '30d' or '2w'."""
    try:
        number, unit = float(text[:-1]), UNITS[text[-1]]
    except (ValueError, KeyError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 45s, 90m, 12h, 30d or 2w") from None
    return number * unit


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the shipped deployment listens on nothing else)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Api:
    """Blocking JSON calls to one daemon, over TCP (url) or a unix socket (unix)."""

    def __init__(self, url: str, token: str, unix: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.unix = unix
        self.token = token
        self.where = f"unix:{unix}" if unix else self.url

    def _connection(self) -> http.client.HTTPConnection:
        if self.unix:
            return _UnixConnection(self.unix, TIMEOUT)
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"--url {self.url!r} is not an http:// or https:// address")
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        return cls(parts.hostname, parts.port, timeout=TIMEOUT)

    @contextlib.contextmanager
    def open(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> Iterator[http.client.HTTPResponse]:
        """Send one request; the open response (2xx/3xx), or HttpError with the daemon's detail."""
        prefix = "" if self.unix else urllib.parse.urlsplit(self.url).path
        target = prefix + path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise ClientError(f"cannot reach {self.where}: {getattr(exc, 'strerror', None) or exc}") from None
            if resp.status < 400:
                yield resp
                return
            raw = resp.read()
            try:
                answer = json.loads(raw)
                detail = answer.get("detail") or answer.get("reason") or resp.reason
            except (ValueError, AttributeError):
                answer, detail = None, resp.reason
            raise HttpError(resp.status, str(detail), answer)
        finally:
            conn.close()

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """One request; the decoded JSON answer."""
        with self.open(method, path, params, body) as resp:
            return json.loads(resp.read())

    def sessions(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every matching session's metadata, page by page."""
        params = {**params, "include": "meta", "limit": PAGE}
        while True:
            page = self.call("GET", "/api/v1/sessions", params)
            yield from page["sessions"]
            if not page["next_cursor"]:
                return
            params["cursor"] = page["next_cursor"]

    def trash_on(self) -> bool:
        """Whether a DELETE here can be undone (the trash answers only when trash_days > 0)."""
        try:
            self.call("GET", "/api/v1/trash")
        except HttpError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def key_path(key: str) -> str:
    """The path of one session: the key percent-encoded once (slashes too)."""
    return "/api/v1/sessions/" + urllib.parse.quote(key, safe=":@")


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


def _when(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp).isoformat(timespec="seconds")


def printable(text: str) -> str:
    """*text* safe for a terminal: control, format and separator characters (a newline, an
    escape sequence, a right-to-left override) as Python escapes; the rest as it is."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _ls(api: Api, args: argparse.Namespace) -> int:
    params = {**_filter(args), "sort": args.sort, "order": "desc" if args.desc else "asc"}
    items = list(api.sessions(params))
    if args.output == "json":
        _print_json(items)
        return 0
    if not items:
        print("no sessions matched", file=sys.stderr)
    for item in items:
        if args.long:
            print(f"{printable(item['key'])}\t{item['message_count']}\t{_when(item['updated_at'])}\t{item['size']}")
        else:
            print(printable(item["key"]))
    return 0


def _show(api: Api, args: argparse.Namespace) -> int:
    failed = 0
    shown = []
    for key in args.keys:
        try:
            shown.append(api.call("GET", key_path(key)))
        except HttpError as exc:
            print(f"sessionctl: {printable(key)}: {exc}", file=sys.stderr)
            failed = 1
    if args.output == "json":
        _print_json(shown if len(args.keys) > 1 else (shown[0] if shown else None))
        return failed
    for item in shown:
        print(
            f"key\t{printable(item['key'])}\nmessages\t{item['message_count']}\n"
            f"created\t{_when(item['created_at'])}\nupdated\t{_when(item['updated_at'])}\nage_seconds\t{item['age_seconds']}"
        )
    return failed


def _confirm(api: Api, args: argparse.Namespace, count: int) -> bool:
    """A delete that cannot be undone needs --yes, or a "y" typed at a terminal."""
    if args.yes or api.trash_on():
        return True
    if not sys.stdin.isatty():
        raise ClientError(f"refusing to delete {count} session(s) for good (the trash is off) without --yes")
    answer = input(f"Delete {count} session(s) for good? The trash is off, this cannot be undone. [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _rm(api: Api, args: argparse.Namespace) -> int:
    flt = _filter(args)
    if bool(args.keys) == bool(flt):
        raise ClientError("give either keys or filter options (--prefix, --older-than, ...)")
    body: dict[str, Any] = {"keys": args.keys} if args.keys else {"filter": flt}
    preview = api.call("POST", "/api/v1/sessions:batchDelete", body={**body, "dry_run": True, "max": args.max})
    matched = preview["matched"]
    if args.dry_run or not matched:
        answer = preview
    elif not _confirm(api, args, len(matched)):
        print("nothing deleted", file=sys.stderr)
        return 1
    else:
        # Exactly what was shown (and confirmed): a filter could match more by now.
        answer = api.call("POST", "/api/v1/sessions:batchDelete", body={"keys": matched, "max": args.max})
        answer["failed"] = preview["failed"] + answer["failed"]
    if args.output == "json":
        _print_json(answer)
        return 1 if answer["failed"] else 0
    if not matched:
        print("no sessions matched; nothing deleted", file=sys.stderr)
    verb, keys = ("would delete", matched) if args.dry_run else ("deleted", answer["deleted"])
    return _report(verb, keys, answer["failed"])


def _restore(api: Api, args: argparse.Namespace) -> int:
    answer = api.call("POST", "/api/v1/trash:restore", body={"keys": args.keys})
    if args.output == "json":
        _print_json(answer)
        return 1 if answer["failed"] else 0
    return _report("restored", [item["key"] for item in answer["restored"]], answer["failed"])


def _export(api: Api, args: argparse.Namespace) -> int:
    flt = _filter(args)
    if bool(args.key) == bool(flt):
        raise ClientError("give either one key (the file as stored) or filter options (NDJSON)")
    if args.markdown and not args.key:
        raise ClientError("--markdown exports one session: give its KEY")
    params = {"key": args.key} if args.key else flt
    if args.markdown:
        # Its text is escaped by the daemon: no control character reaches the terminal.
        params["format"] = "markdown"
    out: IO[bytes] = sys.stdout.buffer
    with api.open("GET", "/api/v1/export", params) as resp:
        while chunk := resp.read(65536):
            out.write(chunk)
    out.flush()
    return 0


def _collect(api: Api, path: str, params: dict[str, Any], field: str, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Up to *limit* items of *field*, following next_cursor; with the last page's answer."""
    items: list[dict[str, Any]] = []
    page: dict[str, Any] = {}
    while len(items) < limit:
        page = api.call("GET", path, params)
        items += page[field]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    return items[:limit], page


def _search(api: Api, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"q": args.query, **_filter(args), "limit": min(args.limit, 100)}
    if args.role:
        params["role"] = args.role
    results, page = _collect(api, "/api/v1/search", params, "results", args.limit)
    if args.output == "json":
        _print_json({**page, "results": results})
        return 0
    if not page.get("complete", True):
        print(f"(the search index is still being built: {page['indexed']} of {page['total']} sessions)", file=sys.stderr)
    if not results:
        print("no sessions matched", file=sys.stderr)
    for result in results:
        print(f"{_printable(result['key'])}\t{_when(result['updated_at'])}\t{_printable(result['title'])}")
        for hit in result["hits"]:
            where = "summary" if hit["message"] is None else f"#{hit['message']} {hit['role']}"
            # Matches in [brackets]; control characters shown escaped, never sent to the terminal.
            text = "".join(f"[{seg['text']}]" if seg.get("match") else seg["text"] for seg in hit["snippet"])
            print(f"    {where}: {_printable(text)}")
    return 0


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _health(api: Api, args: argparse.Namespace) -> int:
    try:
        answer, status = api.call("GET", "/api/v1/health"), 0
    except HttpError as exc:
        if exc.status != 503 or not isinstance(exc.body, dict):
            raise
        answer, status = exc.body, 1  # unavailable: the body says why
    if args.output == "json":
        _print_json(answer)
    else:
        for name, value in answer.items():
            print(f"{name}\t{value}")
    return status


def _retention(api: Api, args: argparse.Namespace) -> int:
    answer = api.call("GET", "/api/v1/retention")
    if args.output == "json":
        _print_json(answer)
        return 0
    if not answer["rules"]:
        print("no retention rules: the daemon deletes nothing by itself")
        return 0
    mode = " (dry run: nothing is deleted)" if answer["dry_run"] else ""
    print(f"every {answer['interval_seconds']:g}s, at most {answer['max_per_run']} per run{mode}")
    for rule in answer["rules"]:
        what = [f"idle {rule['idle_days']:g} days" if rule["idle_days"] is not None else None]
        what.append(f"keep at most {rule['keep_at_most']}" if rule["keep_at_most"] is not None else None)
        print(f"  {rule['prefix'] or '*':<20} {', '.join(w for w in what if w)}")
    last = answer["last_run"]
    if last:
        print(
            f"last run   {_when(last['started_at'])}: {last['outcome']}, {last['matched']} matched, {last['deleted']} deleted"
            + (f" ({last['reason']})" if last["reason"] else "")
        )
    if answer["next_run_at"]:
        print(f"next run   {_when(answer['next_run_at'])}")
    preview = answer["preview"]
    if preview:
        print(
            f"would now delete {preview['total']}"
            + (f" ({files} files)" if (files := preview.get("total_files", preview["total"])) != preview["total"] else "")
            + (" (over the maximum: the run will delete nothing)" if preview["over_maximum"] else "")
        )
        for rule in preview["rules"]:
            if rule["count"]:
                print(
                    f"  {rule['rule']:<20} {rule['count']}: {', '.join(rule['sample'])}{' ...' if rule['count'] > len(rule['sample']) else ''}"
                )
    return 0


def _invalid(api: Api, args: argparse.Namespace) -> int:
    answer = api.call("GET", "/api/v1/invalid")
    if args.output == "json":
        _print_json(answer)
        return 0
    for item in answer["files"]:
        when = _when(item["mtime"]) if item["mtime"] is not None else "-"
        print(f"{printable(item['name'])}\t{item['size']}\t{when}\t{printable(item['reason'])}")
    count = answer["count"]
    if not count:
        print("no invalid files", file=sys.stderr)
    else:
        shown = f" (the first {len(answer['files'])} shown)" if answer["truncated"] else ""
        print(f"{count} invalid file{'s' if count != 1 else ''}{shown}", file=sys.stderr)
    return 0


def _trash(api: Api, args: argparse.Namespace) -> int:
    if args.action == "show":
        if not args.id:
            raise ClientError("trash show needs the entry's id (see sessionctl trash)")
        out: IO[bytes] = sys.stdout.buffer
        with api.open("GET", "/api/v1/trash/" + urllib.parse.quote(args.id, safe="")) as resp:
            while chunk := resp.read(65536):
                out.write(chunk)
        out.flush()
        return 0
    if args.id:
        raise ClientError("trash lists; to read one entry: sessionctl trash show ID")
    answer = api.call("GET", "/api/v1/trash")
    if args.output == "json":
        _print_json(answer)
        return 0
    if not answer["items"]:
        print("the trash is empty", file=sys.stderr)
    for item in answer["items"]:
        key = "(not a valid session when deleted)" if item["key"] is None else printable(item["key"])
        print(f"{item['id']}\t{key}\t{_when(item['deleted_at'])}\t{item['message_count']}\t{item['size']}")
    return 0


def _audit(api: Api, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": min(args.limit, 1000)}
    if args.prefix:
        params["prefix"] = args.prefix
    if args.actor:
        params["actor"] = args.actor
    if args.since is not None:
        params["since"] = time.time() - args.since
    records, _ = _collect(api, "/api/v1/audit", params, "records", args.limit)
    if args.output == "json":
        _print_json(records)
        return 0
    if not records:
        print("no audit records matched", file=sys.stderr)
    for r in records:
        outcome = r["outcome"] + (f" ({r['reason']})" if r.get("reason") else "")
        where = f"{r.get('client') or '-'} {r.get('request_id') or '-'}"
        key = "-" if r["key"] is None else r["key"]
        # Every field escaped: a key (or a reason) cannot drive the operator's terminal.
        print(
            "\t".join(
                printable(str(v)) for v in (_when(r["time"]), r["actor"], r["action"], key, r["file"] or "-", outcome, where)
            )
        )
    return 0


def _report(verb: str, keys: list[str], failed: list[dict[str, str]]) -> int:
    """One line per key done, one per failure (on stderr); 1 if anything failed."""
    for key in keys:
        print(f"{verb} {printable(key)}")
    for failure in failed:
        print(f"failed {printable(failure['key'])}: {printable(failure['reason'])}", file=sys.stderr)
    return 1 if failed else 0


def _filter_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--prefix", help="keys starting with this")
    sub.add_argument("--older-than", type=duration, metavar="AGE", help="not updated for AGE (e.g. 30d)")
    sub.add_argument("--newer-than", type=duration, metavar="AGE", help="updated within AGE")
    sub.add_argument("--min-messages", type=int, metavar="N")
    sub.add_argument("--max-messages", type=int, metavar="N")


def build_parser() -> argparse.ArgumentParser:
    """The commands and their options."""
    p = argparse.ArgumentParser(prog="sessionctl", description="List, show, delete, restore and export sessions on a sessiond.")
    p.add_argument("--version", action="version", version=f"sessionctl {__version__}")
    p.add_argument(
        "--url",
        default=os.environ.get("SESSIOND_URL", "http://127.0.0.1:8080"),
        help="daemon address (env SESSIOND_URL; default http://127.0.0.1:8080)",
    )
    p.add_argument("--unix", metavar="PATH", help="talk to the daemon's unix socket instead (e.g. /run/sessiond/sessiond.sock)")
    p.add_argument(
        "--token-file",
        default=os.environ.get("SESSIOND_TOKEN_FILE"),
        help="file holding the API token (env SESSIOND_TOKEN_FILE; or set SESSIOND_TOKEN)",
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format (default text)")
    commands = p.add_subparsers(dest="command", required=True)
    ls = commands.add_parser("ls", help="list sessions")
    _filter_options(ls)
    ls.add_argument("--sort", choices=("key", "created_at", "updated_at", "message_count"), default="key")
    ls.add_argument("--desc", action="store_true", help="descending order")
    ls.add_argument("-l", "--long", action="store_true", help="key, messages, updated, bytes (tab-separated)")
    show = commands.add_parser("show", help="one session's metadata")
    show.add_argument("keys", nargs="+", metavar="KEY")
    rm = commands.add_parser("rm", help="delete sessions by key or by filter")
    _filter_options(rm)
    rm.add_argument("keys", nargs="*", metavar="KEY")
    rm.add_argument("--dry-run", action="store_true", help="show what would be deleted")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask before deleting for good (trash off)")
    rm.add_argument("--max", type=int, default=1000, help="refuse if more than this many match (default 1000)")
    restore = commands.add_parser("restore", help="bring trashed sessions back (newest version of each key)")
    restore.add_argument("keys", nargs="+", metavar="KEY")
    export = commands.add_parser("export", help="one session's file as stored, or NDJSON of a filter, to stdout")
    _filter_options(export)
    export.add_argument("key", nargs="?", metavar="KEY")
    export.add_argument(
        "--markdown", action="store_true", help="the conversation as Markdown to read and share (one KEY; roles as headings)"
    )
    trash = commands.add_parser(
        "trash", help="list the trash (id, key, deleted, messages, bytes; newest first), or show one entry's file"
    )
    trash.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    trash.add_argument("id", nargs="?", metavar="ID", help="with show: the entry's id, from the list")
    commands.add_parser("invalid", help="files in the sessions folder that are not sessions: name, bytes, modified, reason")
    search = commands.add_parser("search", help='full-text search: words, "a phrase", prefix*, -word, a OR b')
    search.add_argument("query", metavar="QUERY")
    _filter_options(search)
    search.add_argument("--role", help="only hits in messages of this role (user, assistant, tool, ...)")
    search.add_argument("-n", "--limit", type=int, default=20, help="most sessions shown (default 20)")
    commands.add_parser("health", help="version, uptime and index figures")
    audit = commands.add_parser(
        "audit",
        help="the audit trail, newest first: time, actor, action, key, file, outcome, client and request id (admin token)",
    )
    audit.add_argument("--prefix", help="keys starting with this")
    audit.add_argument("--actor", help="a token's name, retention, or 'trash purge'")
    audit.add_argument("--since", type=duration, metavar="AGE", help="records of the last AGE (e.g. 1d)")
    audit.add_argument("-n", "--limit", type=int, default=100, help="most records shown (default 100)")
    commands.add_parser("retention", help="the retention rules, the last and next run, and what it would delete")
    return p


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ClientError(f"cannot read token file {args.token_file}: {exc.strerror}") from None
        if not token:
            raise ClientError(f"token file {args.token_file} is empty")
        return token
    token = os.environ.get("SESSIOND_TOKEN", "")
    if not token:
        raise ClientError("no token: set SESSIOND_TOKEN or pass --token-file")
    return token


COMMANDS: dict[str, Callable[[Api, argparse.Namespace], int]] = {
    "ls": _ls,
    "show": _show,
    "rm": _rm,
    "restore": _restore,
    "trash": _trash,
    "invalid": _invalid,
    "export": _export,
    "search": _search,
    "health": _health,
    "retention": _retention,
    "audit": _audit,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sessionctl` console script."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](Api(args.url, _token(args), args.unix), args)
    except ClientError as exc:
        print(f"sessionctl: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `sessionctl ls | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())

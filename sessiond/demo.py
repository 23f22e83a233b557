"""`python -m sessiond.demo DIR`: the demo behind `make run`.

It writes, once, a workspace that shows every feature of the API and the page:
a few hundred sessions over the last 30 days (and some older) across channels,
with summaries, tool calls, long contents in several scripts, one invalid file
and one collision; a config with the trash on and retention rules as a dry run;
and a token (mode 0600). With --serve it then runs the daemon on them and, once
it is ready, prints the token and the page's URL last.

Everything but the times is a pure function of SEED, so the docs' examples print
the same on every machine; the times are counted back from when the workspace is
written, so the page's 30-day charts are always full.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from sessiond.core.names import file_name_for

SEED = 20261130
DAY = 86400

# Sessions the docs' examples name; the rest are generated around them.
DEMO_KEYS = (
    "api:a3f9c2e8b1d4",
    "user:alice:project-planning",
    "cli:default",
    "telegram:123456789",
    "discord:987654321",
    "slack:U01234ABCDE",
)
# Idle for longer than 30 days: what retention and `--older-than 30d` find.
OLD_KEYS = ("telegram:123456789", "discord:987654321", "slack:U01234ABCDE")
# Two files that claim one key (the agent's copy and a stray backup of it).
COLLISION_KEY = "telegram:555000111"
COLLISION_COPY = "telegram_555000111.backup.json"
# A session the agent was writing in place when it stopped: not valid JSON.
INVALID_FILE = "cli_scratch.json"

# How many generated sessions each channel gets, and the shape of its keys.
CHANNELS = {"telegram": 80, "discord": 55, "api": 60, "cli": 20, "slack": 30, "user": 25, "cron": 15, "webhook": 15}
OLD_SHARE = 0.1  # of the generated sessions, idle for 31-120 days

CONFIG = """\
# The demo's settings (written once by `make run`; edit freely, or delete to get them back).
# Flags and SESSIOND_* variables still win over this file.

# Deleted sessions stay restorable for a week (the page's Trash view, sessionctl restore).
trash_days = 7

# Retention rules, as a dry run: the overview shows what a run would delete, nothing is.
retention_dry_run = true

[[retention]]
prefix = "telegram:"
idle_days = 30

[[retention]]
prefix = "api:"
idle_days = 60
keep_at_most = 50
"""

USER_LINES = (
    "Can you summarise yesterday's thread?",
    "What changed in the deployment since Friday?",
    "Draft a reply to the customer, polite but firm.",
    "Why does the nightly job take twice as long now?",
    "Find the invoice from March and tell me the total.",
    "Translate this paragraph into German.",
    "Remind me what we agreed about the API limits.",
    "Is the staging database still on version 15?",
    "Give me three options for the team offsite.",
    "Check the weather in Lisbon for next week.",
)
ASSISTANT_LINES = (
    "Here is a short summary: the team agreed to ship on Thursday and to keep the old endpoint for a month.",
    "Three things changed: the worker pool, the cache TTL and the log format.",
    "Done. I kept it to four sentences and left the refund question open.",
    "The job now reads every file twice; the second pass came with last week's change.",
    "The March invoice totals 1,240.50 EUR, paid on the 14th.",
    "Sure, here it is in German.",
    "We agreed on 60 requests a minute per token, with a higher limit for the dashboard.",
    "Yes, 15.4; the upgrade is planned for the next maintenance window.",
    "Porto, a cabin near Sintra, or a day in Lisbon itself.",
    "Mostly sunny, 19-23 °C, a chance of rain on Wednesday.",
)
SUMMARIES = (
    "The user is planning a product launch; open points: pricing page, the beta list, a date for the press note.",
    "Support conversation about a failed payment; the card was replaced and the order re-sent.",
    "Debugging a slow nightly export: the cause is a second read pass added last week; a fix is drafted.",
    "Weekly check-ins about the garden project; the user prefers short answers with links.",
    "Travel planning for a team offsite in Portugal in May, budget about 6,000 EUR.",
)
TOOLS: dict[str, Callable[[random.Random], dict[str, object]]] = {
    "web_search": lambda rng: {"query": rng.choice(("lisbon weather may", "postgres 16 release notes", "offsite venues porto"))},
    "read_file": lambda rng: {"path": rng.choice(("reports/march.csv", "notes/meeting.md", "src/export.py"))},
    "run_shell": lambda rng: {"command": rng.choice(("df -h /srv", "systemctl status export.timer", "git log -3 --oneline"))},
    "send_message": lambda rng: {"channel": "#ops", "text": "Export fixed, next run at 02:00."},
    "calendar_add": lambda rng: {"title": "Offsite planning", "start": "2026-12-14T10:00:00Z", "minutes": 45},
}
TOOL_RESULTS = {
    "web_search": "1. Lisbon in May: 17-24 °C, little rain\n2. Visit Lisbon: events calendar\n3. Weather history",
    "read_file": "month,invoices,total\n2026-03,12,1240.50\n",
    "run_shell": "Filesystem  Size  Used Avail Use% Mounted on\n/dev/vdb    200G  151G   49G  76% /srv",
    "send_message": '{"ok": true, "ts": "1733400000.000100"}',
    "calendar_add": '{"id": "evt_81f2", "status": "confirmed"}',
}
# Long contents: code, and text in several scripts (the page folds them).
CODE = '''```python
import csv
from pathlib import Path


def totals(folder: Path) -> dict[str, float]:
    """Sum the invoices of every month found in *folder*."""
    result: dict[str, float] = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                result[row["month"]] = result.get(row["month"], 0.0) + float(row["total"])
    return result
```
'''
SCRIPTS = (
    "日本語: 会議の議事録をまとめました。次回のリリースは木曜日の予定です。",
    "Русский: Ночная выгрузка теперь читает каждый файл дважды; исправление готово.",
    "العربية: تم تأكيد الحجز، وسيصلك البريد الإلكتروني خلال ساعة.",
    "Ελληνικά: Η αναφορά είναι έτοιμη και στάλθηκε στην ομάδα.",
    "中文: 我已经把报告发给团队了, 请查收。",
    "हिन्दी: रिपोर्ट तैयार है और टीम को भेज दी गई है।",
    "emoji: 🚀 shipped · ✅ tests green · 🐛 one bug left",
)


@dataclass
class Workspace:
    """What `populate` wrote: the figures the docs and the tests rely on."""

    sessions: int = 0  # distinct keys
    files: int = 0  # session files (a collision is two files, one key)
    keys: list[str] = field(default_factory=list)


def write_session(folder: Path, session: dict[str, object], name: str | None = None) -> Path:
    """Write a session the way the agent does: a temp file renamed over the target."""
    target = folder / (name or file_name_for(str(session["key"])))
    tmp = target.with_name(target.stem + ".tmp")
    tmp.write_bytes(orjson.dumps(session, option=orjson.OPT_INDENT_2))
    os.replace(tmp, target)
    return target


def long_content(rng: random.Random) -> str:
    """A multi-KB answer: prose, a code block, and lines in several scripts."""
    parts = ["Here is the whole report, as asked.\n"]
    while sum(len(p.encode()) for p in parts) < 5000:
        parts.append(rng.choice(ASSISTANT_LINES) + "\n")
        parts.append(rng.choice(SCRIPTS) + "\n")
        if len(parts) % 7 == 0:
            parts.append(CODE)
    return "\n".join(parts)


def conversation(rng: random.Random, turns: int, tools: bool, long: bool) -> list[dict[str, object]]:
    """*turns* exchanges; some with a tool call and its result, one with a long answer if *long*."""
    messages: list[dict[str, object]] = []
    long_at = rng.randrange(turns) if long and turns else -1
    for turn in range(turns):
        messages.append({"role": "user", "content": rng.choice(USER_LINES)})
        if tools and rng.random() < 0.4:
            name = rng.choice(sorted(TOOLS))
            call_id = f"call_{rng.getrandbits(48):012x}"
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(TOOLS[name](rng))}}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": TOOL_RESULTS[name]})
        content = long_content(rng) if turn == long_at else rng.choice(ASSISTANT_LINES)
        messages.append({"role": "assistant", "content": content})
    return messages


def generated_key(rng: random.Random, channel: str, i: int) -> str:
    """A key of the shape the agent gives sessions of *channel*."""
    if channel == "telegram":
        return f"telegram:{rng.randrange(10**8, 10**10)}" if i % 5 else f"telegram:-100{rng.randrange(10**9, 10**10)}"
    if channel == "discord":
        return f"discord:{rng.randrange(10**17, 10**18)}"
    if channel == "api":
        return f"api:{rng.getrandbits(48):012x}"
    if channel == "slack":
        return f"slack:U{rng.getrandbits(40):010X}"
    if channel == "cli":
        return f"cli:{rng.choice(('deploy', 'notes', 'review', 'scratchpad', 'research'))}-{i}"
    if channel == "user":
        return f"user:{rng.choice(('alice', 'bob', 'chen', 'dana'))}:{rng.choice(('taxes', 'garden', 'trip', 'reading'))}-{i}"
    return f"{channel}:{rng.choice(('daily-report', 'backup-check', 'inbox', 'github', 'stripe'))}-{i}"


def make_session(rng: random.Random, key: str, now: int, old: bool) -> dict[str, object]:
    """One generated session: its times counted back from *now*, the rest from *rng*."""
    idle = rng.randrange(31 * DAY, 120 * DAY) if old else rng.randrange(60, 29 * DAY + DAY // 2)
    lifetime = rng.randrange(0, 20 * DAY)
    turns = rng.choice((0, 1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 14, 20, 30, 45, 70))
    messages = conversation(rng, turns, tools=rng.random() < 0.35, long=rng.random() < 0.06)
    if turns == 1 and rng.random() < 0.5:
        messages = messages[:1]  # saved after the user spoke, before the answer
    session: dict[str, object] = {
        "key": key,
        "messages": messages,
        "summary": rng.choice(SUMMARIES) if turns >= 6 and rng.random() < 0.6 else None,
        "created_at": float(now - idle - lifetime),
        "updated_at": float(now - idle),
    }
    return session


def named_session(key: str, now: int, rng: random.Random) -> dict[str, object]:
    """The sessions the docs name, each with a fixed shape."""
    old = key in OLD_KEYS
    idle = (40 + 10 * OLD_KEYS.index(key)) * DAY if old else (DEMO_KEYS.index(key) + 1) * 3600
    turns = {"user:alice:project-planning": 6, "api:a3f9c2e8b1d4": 3, "cli:default": 4}.get(key, 2)
    session: dict[str, object] = {
        "key": key,
        "messages": conversation(rng, turns, tools=key != "cli:default", long=key == "user:alice:project-planning"),
        "summary": SUMMARIES[0] if key == "user:alice:project-planning" else None,
        "created_at": float(now - idle - 3 * DAY),
        "updated_at": float(now - idle),
    }
    return session


def populate(folder: Path, now: int) -> Workspace:
    """Write the demo sessions into *folder*, each file last written when its session was."""
    rng = random.Random(SEED)
    written = Workspace()

    def put(session: dict[str, object], name: str | None = None) -> None:
        path = write_session(folder, session, name)
        stamp = float(session["updated_at"])  # type: ignore[arg-type]
        os.utime(path, (stamp, stamp))
        written.files += 1

    sessions = [named_session(key, now, rng) for key in DEMO_KEYS]
    seen = set(DEMO_KEYS)
    for channel, count in CHANNELS.items():
        for i in range(count):
            key = generated_key(rng, channel, i)
            if key in seen:
                continue
            seen.add(key)
            sessions.append(make_session(rng, key, now, old=rng.random() < OLD_SHARE))
    collision = make_session(rng, COLLISION_KEY, now, old=False)
    sessions.append(collision)
    for session in sessions:
        put(session)
    # The collision: an older copy of the same key under another name (the newer one is served).
    older = {**collision, "messages": collision["messages"][:1], "updated_at": float(collision["updated_at"]) - DAY}  # type: ignore[index,arg-type]
    put(older, COLLISION_COPY)
    (folder / INVALID_FILE).write_bytes(b'{"key": "cli:scratch", "messages": [{"role": "user", "content": "half-writ')
    written.sessions = len(sessions)
    written.keys = sorted(str(s["key"]) for s in sessions)
    return written


def prepare(root: Path) -> tuple[Path, Path, bool]:
    """Create root/workspace/sessions (once), root/sessiond.toml (once) and root/token (0600, once)."""
    sessions = root / "workspace" / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    if not any(sessions.glob("*.json")):
        populate(sessions, int(time.time()))
    config = root / "sessiond.toml"
    if not config.exists():
        config.write_text(CONFIG)
    token_path = root / "token"
    created = not token_path.exists()
    if created:
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return sessions.parent, token_path, created


def banner(root: Path, url: str, token: str) -> str:
    """What `make run` prints once the daemon is ready; the token and the page's URL last."""
    token_path = root / "token"
    return "\n".join(
        (
            f"sessiond demo: workspace {root / 'workspace'}, settings {root / 'sessiond.toml'} (trash on, retention as a dry run)",
            f'Try: curl -H "Authorization: Bearer $(cat {token_path})" "{url}/api/v1/sessions?limit=5"',
            "Press Ctrl-C to stop.",
            f"API token (in {token_path}, mode 0600): {token}",
            f"Web page: {url}/ui/ (sign in with the token above)",
        )
    )


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 60) -> bool:
    """True once *url*/readyz answers 200; False if the daemon exits or *timeout* passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    return False


def wait_searchable(url: str, token: str, timeout: float = 15) -> None:
    """Until the search index is complete (its "complete" line is logged by then), search is off,
    or *timeout* passes: the first run builds it just after ready, and its log line would
    otherwise land below the banner."""
    deadline = time.monotonic() + timeout
    ask = urllib.request.Request(url + "/api/v1/search?q=demo&limit=1", headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ask, timeout=2) as resp:
                if json.loads(resp.read()).get("complete"):
                    return
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return  # search = false
        except (OSError, ValueError):
            pass
        time.sleep(0.1)


def serve(root: Path, host: str, port: int) -> int:
    """Run the daemon on the demo; print the banner once it is ready; exit as it does."""
    command = [sys.executable, "-m", "sessiond", "--config", str(root / "sessiond.toml")]
    command += ["--workspace", str(root / "workspace"), "--token-file", str(root / "token"), "--host", host, "--port", str(port)]
    (root / "state").mkdir(exist_ok=True)
    env = {"SESSIOND_STATE_DIR": str(root / "state"), **os.environ}
    proc = subprocess.Popen(command, env=env)
    # Ctrl-C reaches the daemon from the terminal itself; a TERM or HUP sent to us alone is passed on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: proc.send_signal(number))
    url = f"http://{host}:{port}"
    if wait_ready(proc, url):
        token = (root / "token").read_text().strip()
        wait_searchable(url, token)
        time.sleep(0.3)  # the access line of the last probe first: the banner is the last thing on screen
        print(banner(root, url, token), flush=True)
    return proc.wait()


def main() -> None:
    """Prepare the demo; with --serve, run the daemon on it."""
    parser = argparse.ArgumentParser(description="The demo workspace, settings and token behind `make run`.")
    parser.add_argument("root", type=Path, help="where the demo lives (make run: .run)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--serve", action="store_true", help="then run the daemon and print how to reach it")
    args = parser.parse_args()
    prepare(args.root)
    if args.serve:
        raise SystemExit(serve(args.root, args.host, args.port))
    token = (args.root / "token").read_text().strip()
    print(banner(args.root, f"http://{args.host}:{args.port}", token))


if __name__ == "__main__":
    main()

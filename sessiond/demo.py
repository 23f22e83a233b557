"""`python -m sessiond.demo DIR`: a demo workspace and token for `make run`."""

from __future__ import annotations

import argparse
import os
import secrets
import time
from pathlib import Path

import orjson

from sessiond.core.names import file_name_for

DEMO_KEYS = (
    "api:a3f9c2e8b1d4",
    "user:alice:project-planning",
    "cli:default",
    "telegram:123456789",
    "discord:987654321",
    "slack:U01234ABCDE",
)
# The README's examples need old sessions as well as new ones: these three last
# changed in 2025 (before updated_before=1764000000, and older than 30 days),
# with fixed times so their files are the same on every `make run`.
OLD_KEYS = {"telegram:123456789": 1_762_000_000.0, "discord:987654321": 1_761_000_000.0, "slack:U01234ABCDE": 1_760_000_000.0}


def write_session(folder: Path, session: dict[str, object]) -> Path:
    """Write a session the way the agent does: a temp file renamed over the target."""
    target = folder / file_name_for(str(session["key"]))
    tmp = target.with_name(target.stem + ".tmp")
    tmp.write_bytes(orjson.dumps(session, option=orjson.OPT_INDENT_2))
    os.replace(tmp, target)
    return target


def demo_session(key: str, n: int, now: float) -> dict[str, object]:
    """A small, plausible conversation of 2*n messages, last updated n minutes before *now*."""
    messages: list[dict[str, object]] = []
    for i in range(n):
        messages.append({"role": "user", "content": f"Question {i + 1} for {key}?"})
        messages.append({"role": "assistant", "content": f"Answer {i + 1}."})
    created = now - 86400 * (n + 1)
    return {"key": key, "messages": messages, "summary": None, "created_at": created, "updated_at": now - 60 * n}


def prepare(root: Path) -> tuple[Path, Path, bool]:
    """Create root/workspace/sessions with demo sessions (once) and root/token (0600, once)."""
    sessions = root / "workspace" / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    now = time.time()
    if not any(sessions.glob("*.json")):
        for i, key in enumerate(DEMO_KEYS):
            session = demo_session(key, i + 1, OLD_KEYS.get(key, now))
            path = write_session(sessions, session)
            stamp = float(session["updated_at"])  # type: ignore[arg-type]
            os.utime(path, (stamp, stamp))  # the file last written when the session was
    token_path = root / "token"
    created = not token_path.exists()
    if created:
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return sessions.parent, token_path, created


def main() -> None:
    """Prepare the demo workspace and print how to reach the daemon."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    workspace, token_path, created = prepare(args.root)
    token = token_path.read_text().strip()
    url = f"http://{args.host}:{args.port}"
    print(f"sessiond demo workspace: {workspace}")
    if created:
        print(f"API token (generated now, stored with mode 0600 in {token_path}):\n  {token}")
    else:
        print(f"API token: in {token_path}")
    print(f"Web page: {url}/ui/ (sign in with the token above)")
    print(f"Listening on {url} — try:")
    print(f'  curl -H "Authorization: Bearer $(cat {token_path})" {url}/api/v1/sessions')
    print(f"  curl {url}/health")
    print("Press Ctrl-C to stop.", flush=True)


if __name__ == "__main__":
    main()

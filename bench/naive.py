"""The baseline sessiond replaces: glob and parse every file on each list.

Like grip-ai's own implementation, a list request globs ``sessions/*.json``
and parses every file with the stdlib ``json`` (on the event loop, as the
original does); a detail request turns the key into a file name and reads and
parses that one file.

    python -m bench.naive --workspace WS --port 8703
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from aiohttp import web

from bench.gen import safe_file_name


def list_keys(sessions_dir: Path) -> list[str]:
    """Every session key, read from every file, sorted."""
    keys = []
    for path in sessions_dir.glob("*.json"):
        with open(path, encoding="utf-8") as handle:
            keys.append(json.load(handle)["key"])
    return sorted(keys)


def create_app(workspace: Path) -> web.Application:
    """The naive Sessions API over ``workspace``."""
    sessions_dir = workspace / "sessions"

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def sessions(request: web.Request) -> web.Response:
        keys = list_keys(sessions_dir)
        return web.json_response({"sessions": keys, "count": len(keys)})

    async def session(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        path = sessions_dir / safe_file_name(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return web.json_response({"detail": "Session not found"}, status=404)
        return web.json_response(
            {
                "key": data["key"],
                "message_count": len(data["messages"]),
                "created_at": data["created_at"],
                "updated_at": data["updated_at"],
                "age_seconds": round(time.time() - data["created_at"], 1),
            }
        )

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/api/v1/sessions", sessions)
    app.router.add_get("/api/v1/sessions/{key:.+}", session)
    return app


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    args = parser.parse_args(argv)
    app = create_app(args.workspace)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

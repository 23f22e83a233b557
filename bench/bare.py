"""The ceiling: a bare aiohttp handler serving fixed bytes from memory.

It serves, for the list and for any detail path, the very bytes sessiond
answered (saved to files by ``bench.run``), with the same content type, and
does nothing else: no auth, no middleware, no access log.

    python -m bench.bare --port 8702 --list-body L --detail-body D --content-type T
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web


def create_app(list_body: bytes, detail_body: bytes, content_type: str) -> web.Application:
    """An app answering the list and every detail with the given bytes."""
    headers = {"Content-Type": content_type}

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def sessions(request: web.Request) -> web.Response:
        return web.Response(body=list_body, headers=headers)

    async def session(request: web.Request) -> web.Response:
        return web.Response(body=detail_body, headers=headers)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/api/v1/sessions", sessions)
    app.router.add_get("/api/v1/sessions/{key:.+}", session)
    return app


def bodies_parser(doc: str) -> argparse.ArgumentParser:
    """The options of a server given the list's and a detail's bytes (this one, bench/contract.py)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--list-body", type=Path, required=True)
    parser.add_argument("--detail-body", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = bodies_parser(__doc__)
    parser.add_argument("--content-type", required=True)
    args = parser.parse_args(argv)
    app = create_app(args.list_body.read_bytes(), args.detail_body.read_bytes(), args.content_type)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

"""What the contract alone costs per request: a plain aiohttp handler doing only its parts.

Beside the bare handler (bench/bare.py: prepared bytes, nothing else) and sessiond,
this serves the same list and detail doing, per request, only what the contract
asks of sessiond and nothing of its structure: the per-IP and the per-token
limit (sessiond's RateLimiter: aiolimiter's buckets), the token looked up
by its SHA-256, a request id (a per-process prefix and a counter), the five
headers every JSON answer carries, a count by route and status; for the list,
the cached body and its ETag (304 on If-None-Match); for a detail, one `lstat`
of the session's file (as fresh as the disk) and its JSON made with orjson (the
age changes every tenth of a second). How far sessiond is from bare that this is
not, is sessiond's own work; what this is from bare, the contract's.

    python -m bench.contract --port 8703 --list-body L --detail-body D --detail-file F
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from pathlib import Path

import orjson
from aiohttp import web

from bench.bare import bodies_parser
from bench.servers import TOKEN
from sessiond.web.front.ratelimit import RateLimiter

PER_MINUTE = 1_000_000  # as the bench sets sessiond's limits: far above what wrk sends


def create_app(list_body: bytes, detail_body: bytes, detail_file: Path) -> web.Application:
    """An app answering the list and every detail as the contract asks, and no more."""
    tokens = {hashlib.sha256(TOKEN.encode()).digest(): "bench"}
    per_ip, per_token = RateLimiter(PER_MINUTE), RateLimiter(PER_MINUTE)  # sessiond's own: aiolimiter's buckets
    prefix, counter = os.urandom(6).hex(), itertools.count(1)
    counts: dict[tuple[str, int], int] = {}
    json_headers = {
        "Content-Type": "application/json",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'",
    }
    etag = '"' + hashlib.blake2b(list_body, digest_size=12).hexdigest() + '"'
    detail = orjson.loads(detail_body)
    path = str(detail_file)

    def admit(request: web.Request) -> web.Response | None:
        if not per_ip.allow(request.remote or "-"):
            return web.Response(status=429)
        header = request.headers.get("Authorization", "")
        name = tokens.get(hashlib.sha256(header.partition(" ")[2].encode()).digest())
        if name is None:
            return web.Response(status=401)
        if not per_token.allow(name):
            return web.Response(status=429)
        return None

    def answered(route: str, response: web.Response) -> web.Response:
        response.headers["X-Request-ID"] = f"{prefix}{next(counter):010x}"
        key = (route, response.status)
        counts[key] = counts.get(key, 0) + 1
        return response

    async def sessions(request: web.Request) -> web.Response:
        refused = admit(request)
        if refused is not None:
            return answered("list", refused)
        if request.headers.get("If-None-Match") == etag:
            return answered("list", web.Response(status=304, headers={"ETag": etag}))
        return answered("list", web.Response(body=list_body, headers={**json_headers, "ETag": etag}))

    async def session(request: web.Request) -> web.Response:
        refused = admit(request)
        if refused is not None:
            return answered("detail", refused)
        try:
            os.lstat(path)
        except OSError:
            return answered("detail", web.Response(status=404))
        body = orjson.dumps({**detail, "age_seconds": round(time.time() - detail["created_at"], 1)})
        return answered("detail", web.Response(body=body, headers=json_headers))

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)  # what the bench polls until a server is ready
    app.router.add_get("/api/v1/sessions", sessions)
    app.router.add_get("/api/v1/sessions/{key:[\\s\\S]+}", session)
    return app


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = bodies_parser(__doc__)
    parser.add_argument("--detail-file", type=Path, required=True, help="the detail's session file (stat per request)")
    args = parser.parse_args(argv)
    app = create_app(args.list_body.read_bytes(), args.detail_body.read_bytes(), args.detail_file)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

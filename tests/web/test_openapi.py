"""The OpenAPI document is true: it lists exactly the app's routes, and the live daemon conforms to it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient

from sessiond.web.api.openapi import DOCUMENT
from tests.support import AUTH, TOKEN, Daemon, session_doc

CONFIG = Path(__file__).parents[1] / "schemathesis.toml"


def app_routes(client: TestClient) -> set[tuple[str, str]]:
    routes = set()
    for route in client.server.app.router.routes():  # type: ignore[union-attr]
        # aiohttp adds HEAD beside every GET; the route of unknown paths answers only 404 and 405.
        if route.method not in ("HEAD", "*"):
            routes.add((route.method.lower(), re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.resource.canonical)))
    return routes


async def test_document_lists_exactly_the_app_routes(client: TestClient) -> None:
    resp = await client.get("/api/v1/openapi.json", headers=AUTH)
    assert resp.status == 200 and resp.content_type == "application/json"
    doc = await resp.json()
    assert doc == orjson.loads(orjson.dumps(DOCUMENT)) and doc["openapi"].startswith("3.1")
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert documented == app_routes(client)
    assert (await client.get("/api/v1/openapi.json")).status == 401


def test_every_reference_resolves() -> None:
    text = orjson.dumps(DOCUMENT).decode()
    for name in re.findall(r'"#/components/schemas/(\w+)"', text):
        assert name in DOCUMENT["components"]["schemas"], name


@pytest.mark.slow
def test_live_daemon_conforms(workspace: Path) -> None:
    """schemathesis against a real daemon: no 5xx; statuses, content types, headers and bodies as documented."""
    for i, key in enumerate(["telegram:123456789", "slack:a", "cli:default", "a/b c", "events"]):
        (workspace / "sessions" / f"s{i}.json").write_bytes(orjson.dumps(session_doc(key, messages=i)))
    env = {
        "SESSIOND_RATE_LIMIT_PER_IP": "0",
        "SESSIOND_RATE_LIMIT_PER_TOKEN": "0",
        "SESSIOND_TRASH_DAYS": "1",
        "SESSIOND_ACCESS_LOG": "0",
    }
    with Daemon(workspace, env=env) as daemon:
        daemon.wait_ready()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--no-color",
                "--config-file",
                str(CONFIG),
                "run",
                f"{daemon.url}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--exclude-path",
                "/api/v1/events",  # never ends by design; tested in test_events.py
                # One worker: schemathesis's coverage phase is not thread-safe (hypothesis AST cache).
                "--max-examples",
                "50",
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--seed",
                os.environ.get("SESSIOND_SCHEMATHESIS_SEED", "20251129"),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
            cwd=workspace.parent,
        )
        report = run.stdout[-20000:] + run.stderr[-5000:]
        assert run.returncode == 0, report
        # Our own errors only: aiohttp logs the malformed-HTTP probes it refuses (a NUL in a header).
        assert not re.search(r"(ERROR|CRITICAL) sessiond", daemon.output()), daemon.output()

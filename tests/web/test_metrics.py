"""/metrics: names, request counts by route template, the duration histogram."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.support import AUTH, eventually, store_of, write_atomic


async def scrape(client: TestClient) -> str:
    resp = await client.get("/metrics", headers=AUTH)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    return await resp.text()


async def test_requests_counted_by_route_template(client: TestClient) -> None:
    for _ in range(2):
        assert (await client.get("/api/v1/sessions", headers=AUTH)).status == 200
    for key in ("a", "b/c", "d%20e"):
        assert (await client.get(f"/api/v1/sessions/{key}", headers=AUTH)).status == 404
    assert (await client.get("/api/v1/nothing", headers=AUTH)).status == 404
    text = await scrape(client)
    assert 'sessiond_requests_total{method="GET",route="/api/v1/sessions",status="200"} 2.0' in text
    assert 'sessiond_requests_total{method="GET",route="/api/v1/sessions/{key}",status="404"} 3.0' in text
    assert 'route="unmatched",status="404"} 1.0' in text
    assert "b/c" not in text  # keys never become label values
    assert 'sessiond_request_duration_seconds_count{route="/api/v1/sessions/{key}"} 3.0' in text
    buckets = [
        float(v)
        for v in re.findall(
            r'sessiond_request_duration_seconds_bucket\{le="[^"]+",route="/api/v1/sessions/\{key\}"\} (\S+)', text
        )
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 3.0  # cumulative, +Inf holds all
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert names and all(name.startswith("sessiond_") for name in names)
    assert {"sessiond_sessions", "sessiond_watcher_up", "sessiond_ready"} <= names


async def test_one_route_is_counted_under_each_method_it_was_asked_with(client: TestClient) -> None:
    """The front door works a route's labels out once, per method: a HEAD after a GET is not counted as a GET."""
    for method in ("GET", "HEAD", "GET", "DELETE"):
        assert (await client.request(method, "/api/v1/sessions/a", headers=AUTH)).status == 404
    assert (await client.request("PUT", "/api/v1/sessions", headers=AUTH)).status == 405
    text = await scrape(client)
    assert 'sessiond_requests_total{method="GET",route="/api/v1/sessions/{key}",status="404"} 2.0' in text
    assert 'sessiond_requests_total{method="HEAD",route="/api/v1/sessions/{key}",status="404"} 1.0' in text
    assert 'sessiond_requests_total{method="DELETE",route="/api/v1/sessions/{key}",status="404"} 1.0' in text
    assert 'sessiond_requests_total{method="PUT",route="unmatched",status="405"} 1.0' in text


async def test_the_sessions_held_as_objects_are_counted_and_a_restart_folds_them_back(start_client: Any, sessions: Path) -> None:
    """What a start finds lives in the index's columns; a session changed since is held as an
    object (~470 bytes against ~240): the gauge tells an operator when a restart would give it back."""
    for i in range(3):
        write_atomic(sessions, f"m:{i}")
    client = await start_client()
    assert "sessiond_index_objects 0.0" in (await scrape(client)).splitlines()
    write_atomic(sessions, "m:1", messages=4)
    await eventually(lambda: store_of(client).index.get("m:1").message_count == 4)
    assert "sessiond_index_objects 1.0" in (await scrape(client)).splitlines()
    await client.close()
    again = await start_client()
    assert "sessiond_index_objects 0.0" in (await scrape(again)).splitlines()

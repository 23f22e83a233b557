"""What the disk says, read independently of sessiond's loader, to compare the API against."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from aiohttp.test_utils import TestClient

from tests.support import AUTH


def disk_model(folder: Path) -> dict[str, int]:
    """key -> message_count of every valid session file now in *folder* (collisions: newest wins)."""
    best: dict[str, tuple[tuple[float, str], int]] = {}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return {}
    for name in names:
        path = folder / name
        if not name.endswith(".json") or path.is_symlink() or not path.is_file():
            continue
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), str) or not doc["key"]:
            continue
        if not isinstance(doc.get("messages"), list):
            continue
        updated = doc.get("updated_at")
        rank = (float(updated) if isinstance(updated, (int, float)) else 0.0, name)
        if doc["key"] not in best or rank > best[doc["key"]][0]:
            best[doc["key"]] = (rank, len(doc["messages"]))
    return {key: count for key, (_, count) in best.items()}


async def api_model(client: TestClient) -> dict[str, int]:
    """key -> message_count as the API answers it."""
    listing = await (await client.get("/api/v1/sessions", headers=AUTH)).json()
    out = {}
    for key in listing["sessions"]:
        resp = await client.get("/api/v1/sessions/" + quote(key, safe=""), headers=AUTH)
        if resp.status == 200:
            out[key] = (await resp.json())["message_count"]
    return out


async def api_equals_disk(client: TestClient, folder: Path, details: bool = True) -> bool:
    """True when the API lists exactly the disk's keys and (with *details*) their message counts."""
    expected = disk_model(folder)
    resp = await client.get("/api/v1/sessions", headers=AUTH)
    if resp.status != 200:  # e.g. 503 while a swapped-in folder is rescanned: not in step yet
        return False
    listing = await resp.json()
    if listing["sessions"] != sorted(expected):
        return False
    return not details or await api_model(client) == expected

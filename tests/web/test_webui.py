"""The web page's files: served from the package, public, cacheable, with a strict CSP; data still needs the token."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from sessiond.web.pagefiles import CSP, PageAssets
from tests.support import AUTH, eventually, store_of, write_atomic

UI = Path(resources.files("sessiond.web").joinpath("ui"))  # type: ignore[arg-type]
ROOT = Path(__file__).resolve().parents[2]
EXPECTED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'"
)


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(v/[0-9a-f]+/[\w.]+)"', html)


async def test_page_and_its_files_are_public_with_strict_security_headers(client: TestClient) -> None:
    resp = await client.get("/ui/")
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    headers = resp.headers
    assert headers["Content-Security-Policy"] == EXPECTED_CSP == CSP
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "no-cache"
    urls = asset_urls(html)
    names = {path.name for path in UI.iterdir()} - {"index.html"}
    assert {url.rsplit("/", 1)[1] for url in urls} == names  # every module preloaded, none missing
    types = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
    for url in urls:
        asset = await client.get("/ui/" + url)
        assert asset.status == 200, url
        assert asset.content_type == types[url.rsplit(".", 1)[1]]
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert asset.headers["Content-Security-Policy"] == CSP and asset.headers["X-Content-Type-Options"] == "nosniff"
        assert await asset.read() == (UI / url.rsplit("/", 1)[1]).read_bytes()


async def test_ui_without_a_slash_redirects_to_the_page_relatively(client: TestClient) -> None:
    """Location is relative ("ui/"), so /agents/a/ui behind a proxy that strips /agents/a
    lands on /agents/a/ui/, not on the proxy's /ui/."""
    resp = await client.get("/ui", allow_redirects=False)
    assert resp.status == 308 and resp.headers["Location"] == "ui/"
    assert (await client.get("/ui")).url.path == "/ui/"  # where a client following it arrives


def test_the_page_names_its_files_relatively() -> None:
    """Nothing in index.html points at an absolute path: the page works under any prefix."""
    html = (UI / "index.html").read_text()
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert urls and all(not url.startswith(("/", "http:", "https:")) for url in urls), urls


async def test_page_and_files_revalidate_with_their_etags(client: TestClient) -> None:
    first = await client.get("/ui/")
    again = await client.get("/ui/", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and again.headers["ETag"] == first.headers["ETag"] and not await again.read()
    url = "/ui/" + asset_urls(await first.text())[0]
    asset = await client.get(url)
    assert (await client.get(url, headers={"If-None-Match": asset.headers["ETag"]})).status == 304


async def test_unknown_or_outdated_files_are_json_404s(client: TestClient) -> None:
    version = PageAssets.from_package().version
    for path in (f"/ui/v/{version}/nope.js", f"/ui/v/{'0' * 16}/app.js", f"/ui/v/{version}/index.html"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert "detail" in await resp.json()
    # A path outside the page's routes is any unknown path: the token first, then the 404.
    assert (await client.get("/ui/app.js")).status == 401
    resp = await client.get("/ui/app.js", headers=AUTH)
    assert resp.status == 404 and "detail" in await resp.json()


async def test_paths_under_ui_never_reach_the_data_without_a_token(client: TestClient, sessions: Path) -> None:
    write_atomic(sessions, "secret:1")
    await eventually(lambda: "secret:1" in store_of(client).index)
    for path in (
        "/ui/../api/v1/sessions",
        "/ui/%2e%2e/api/v1/sessions",
        "/ui/..%2Fapi/v1/sessions",
        "/ui/v/x/..%2F..%2F..%2Fapi/v1/sessions/secret:1",
        "/ui/./../api/v1/export?key=secret:1",
    ):
        resp = await client.get(path)
        body = await resp.read()
        assert resp.status in (401, 404), (path, resp.status)
        assert b"secret:1" not in body, path
    assert (await client.get("/api/v1/sessions")).status == 401


def test_every_module_the_page_imports_is_shipped() -> None:
    names = {path.name for path in UI.iterdir()}
    for script in UI.glob("*.js"):
        for target in re.findall(r'^import .* from "\./([\w.]+)";$', script.read_text(), re.M):
            assert target in names, f"{script.name} imports {target}"
    assets = PageAssets.from_package()
    assert set(assets.assets) == names - {"index.html"}
    assert b"{assets}" not in assets.index.body


def test_no_script_can_turn_text_into_markup_or_code() -> None:
    """The page builds every element with createElement/textContent; no HTML parsing, no eval."""
    comments = re.compile(r"^\s*//.*$|/\*.*?\*/", re.M | re.S)
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setTimeout\(\s*[\"'`]")
    for script in UI.glob("*.js"):
        found = forbidden.search(comments.sub("", script.read_text()))
        assert found is None, f"{script.name}: {found.group(0) if found else ''}"
    html = (UI / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script in index.html"
    assert not re.search(r"\sstyle=|\son\w+=", html), "inline style or handler in index.html"


async def test_the_page_files_are_not_rate_limited_but_the_api_is(start_client: Any) -> None:
    client = await start_client(rate_limit_per_ip=2)
    html = await (await client.get("/ui/")).text()
    for _ in range(3):  # a few first visits: a dozen files each, far past the per-IP allowance
        for path in ["/ui", "/ui/", *("/ui/" + url for url in asset_urls(html))]:
            resp = await client.get(path, allow_redirects=False)
            assert resp.status in (200, 308), (path, resp.status)
    statuses = [(await client.get("/api/v1/stats", headers=AUTH)).status for _ in range(3)]
    assert statuses == [200, 200, 429]

"""The page through the shipped nginx sites: served, signed in, and live (the feed is not buffered),
also under an agent's path prefix (/agents/NAME/ui/, config/nginx/sessiond-agents.conf)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.nginx import NGINX, Agents, Nginx, agents_behind_nginx, daemon_behind_nginx
from tests.support import TOKEN, write_atomic

from .conftest import DEFAULT_ENV, PageUnderTest, needs_browser

needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run does)")
pytestmark = [needs_browser, needs_nginx]


@pytest.fixture
def proxy(workspace: Path, tmp_path: Path) -> Iterator[Nginx]:
    with daemon_behind_nginx(workspace, tmp_path, dict(DEFAULT_ENV)) as nginx:
        yield nginx


def test_the_page_works_through_the_shipped_nginx_site(
    proxy: Nginx, open_page: Callable[..., PageUnderTest], sessions: Path
) -> None:
    write_atomic(sessions, "via:nginx:1")
    ui = open_page(proxy.url)
    response = ui.page.goto(f"{proxy.url}/ui")  # nginx passes the redirect to /ui/ through
    assert response is not None and response.url == f"{proxy.url}/ui/"
    assert response.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    ui.sign_in()
    expect(ui.row("via:nginx:1")).to_be_visible()
    write_atomic(sessions, "via:nginx:2")  # arrives through nginx's unbuffered feed location
    expect(ui.row("via:nginx:2")).to_be_visible(timeout=3000)


@pytest.fixture
def agents(workspace: Path, tmp_path: Path) -> Iterator[Agents]:
    """Agent a on the test's workspace, agent b on another, behind the agents site."""
    other = tmp_path / "b" / "workspace"
    (other / "sessions").mkdir(parents=True)
    write_atomic(other / "sessions", "only:in:b")
    stack = {"a": (workspace, TOKEN), "b": (other, "b-token-0123456789abcdef")}
    with agents_behind_nginx(tmp_path, stack, dict(DEFAULT_ENV)) as (nginx, _):
        yield nginx


def test_the_page_works_under_an_agents_path_prefix(
    agents: Agents, open_page: Callable[..., PageUnderTest], sessions: Path
) -> None:
    """Sign in, list, open a session and follow live events, all under /agents/a/: the page's
    redirect, files, API calls and change feed are relative to where it is mounted."""
    write_atomic(sessions, "user:alice:1", messages=3)
    base = f"{agents.url}/agents/a"
    ui = open_page(base)
    response = ui.page.goto(f"{base}/ui")
    assert response is not None and response.url == f"{base}/ui/"
    assert response.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    ui.sign_in()
    expect(ui.row("user:alice:1")).to_be_visible()
    assert ui.keys() == ["user:alice:1"]  # a's workspace only: b's session is b's
    write_atomic(sessions, "user:alice:2")  # through the agents site's unbuffered feed location
    expect(ui.row("user:alice:2")).to_be_visible(timeout=3000)
    ui.row("user:alice:1").get_by_role("link").click()
    expect(ui.page.get_by_role("heading", level=1)).to_have_text("user:alice:1")
    expect(ui.page.get_by_role("list", name="Messages").locator("article")).to_have_count(3)
    urls = [request.url for request in ui.requests]
    assert any("/api/v1/events" in url for url in urls) and any("/api/v1/export?key=" in url for url in urls)
    assert all(url.startswith(f"{base}/") for url in urls), [u for u in urls if not u.startswith(f"{base}/")]

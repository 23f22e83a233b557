"""The page through the shipped nginx site: served, signed in, and live (the feed is not buffered)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.nginx import NGINX, Nginx, daemon_behind_nginx
from tests.support import write_atomic

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

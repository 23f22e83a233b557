"""The operators' web page's files (sessiond/web/ui/): read once from the package, with their headers.

The handlers that serve them at /ui/ are in page.py. The scripts, styles and icon live
under /ui/v/<version>/, the version being a hash of their content: browsers keep them
for a year without asking again (so a page load costs one request, for index.html) and
a new release changes the URL. index.html is revalidated with its ETag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib import resources
from typing import NamedTuple

ASSET_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
INDEX = "index.html"
PLACEHOLDER = b"{assets}"

# No inline script or style, no eval, nothing from elsewhere; the page talks only to
# its own origin. Trusted Types make every HTML-parsing sink (innerHTML and friends)
# throw, so no code path can turn a session's text into markup, even by mistake.
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
IMMUTABLE = "public, max-age=31536000, immutable"


class Asset(NamedTuple):
    """One file of the page, ready to send."""

    body: bytes
    content_type: str
    etag: str


def _etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


class PageAssets:
    """The page's files by name, with the content version that their URLs carry."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        if INDEX not in files:
            raise ValueError("the web page has no index.html")
        names = sorted(name for name in files if name != INDEX)
        unknown = [name for name in names if not name.endswith(tuple(ASSET_TYPES))]
        if unknown:
            raise ValueError(f"no content type for {unknown[0]!r}")
        digest = hashlib.blake2b(digest_size=8)
        for name in names:
            digest.update(name.encode() + b"\0" + hashlib.blake2b(files[name]).digest())
        self.version = digest.hexdigest()
        self.assets = {name: Asset(files[name], ASSET_TYPES["." + name.rpartition(".")[2]], _etag(files[name])) for name in names}
        index = files[INDEX].replace(PLACEHOLDER, b"v/" + self.version.encode())
        self.index = Asset(index, "text/html; charset=utf-8", _etag(index))

    @classmethod
    def from_package(cls) -> PageAssets:
        """The files in sessiond/web/ui/ as installed."""
        folder = resources.files("sessiond.web").joinpath("ui")
        return cls({item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()})

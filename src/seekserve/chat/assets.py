"""The chat page's files: read once from the package, gzipped once, answered by URL path.

    GET /              307 to /chat
    GET /chat          static/chat.html
    GET /chat/<file>   static/<file>, for every other file under static/ (a fixed table: no path is
                       joined from the request, so nothing outside static/ can be named)

The server (FastAPI) and the gateway (raw ASGI) both call `page_reply(path, ...)` and turn the
`PageReply` into their own response type, so the page, its headers and its policy exist once.
Every answer carries an ETag (304 when it matches) and `Cache-Control: no-cache`, so a browser
revalidates after an upgrade; a client that accepts gzip gets the body compressed.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from importlib.abc import Traversable

__all__ = ["BUDGET_GZIP_BYTES", "CHAT_PATH", "CSP", "Asset", "PageReply", "assets", "page_reply"]

CHAT_PATH = "/chat"
BUDGET_GZIP_BYTES = 300 * 1024
"""Most bytes, gzipped, of everything the page loads (tests/chat/test_assets.py holds it)."""
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Scripts, styles and images from the page's own origin only, requests to that origin only."""
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}
_PAGE_FILE = "chat.html"
_COMMON_HEADERS = (
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


@dataclass(frozen=True)
class Asset:
    """One file of the page, as served."""

    url_path: str
    content_type: str
    body: bytes
    gzipped: bytes = field(repr=False)
    etag: str


@dataclass(frozen=True)
class PageReply:
    """What to answer: a status, headers (names as written here) and a body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


def _walk(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found += _walk(entry, f"{prefix}{entry.name}/")
        else:
            found.append((prefix + entry.name, entry))
    return found


@cache
def assets() -> dict[str, Asset]:
    """Every file of the page by its URL path (/chat for the page itself)."""
    table: dict[str, Asset] = {}
    for name, entry in _walk(resources.files("seekserve.chat").joinpath("static"), ""):
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        assert suffix in _CONTENT_TYPES, f"static/{name}: give its suffix a content type in _CONTENT_TYPES"
        body = entry.read_bytes()
        url_path = CHAT_PATH if name == _PAGE_FILE else f"{CHAT_PATH}/{name}"
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        table[url_path] = Asset(url_path, _CONTENT_TYPES[suffix], body, gzip.compress(body, 9, mtime=0), etag)
    return table


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def page_reply(path: str, accept_encoding: str = "", if_none_match: str = "") -> PageReply | None:
    """The answer to `GET path` when the page owns that path, else None (the caller's 404)."""
    if path in ("/", f"{CHAT_PATH}/"):
        return PageReply(307, [("Location", CHAT_PATH), ("Cache-Control", "no-cache")])
    asset = assets().get(path)
    if asset is None:
        return None
    headers = [*_COMMON_HEADERS, ("ETag", asset.etag), ("Vary", "Accept-Encoding")]
    if path == CHAT_PATH:
        headers.append(("Content-Security-Policy", CSP))
    if asset.etag in (tag.strip() for tag in if_none_match.split(",")):
        return PageReply(304, headers)
    headers.append(("Content-Type", asset.content_type))
    if _accepts_gzip(accept_encoding):
        return PageReply(200, [*headers, ("Content-Encoding", "gzip")], asset.gzipped)
    return PageReply(200, headers, asset.body)

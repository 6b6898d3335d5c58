"""A page's main text: HTML through trafilatura (navigation, footers, ads and comments left out),
plain text and markdown as they are.

trafilatura comes with `pip install 'seekserve[search]'`. Without it (or where it finds no main text,
as on very short pages) a small stdlib parser reads the HTML instead: it drops script, style,
navigation, header, footer, aside and form elements and keeps <article> or <main> where the page has
one. CPU-bound (about 10 ms for a 100 KB page): call it from a worker thread (asyncio.to_thread).
"""

from __future__ import annotations

import functools
import html as html_lib
import importlib
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from types import ModuleType

from seekserve.search.fetch import Page

__all__ = [
    "HTML_TYPES",
    "Document",
    "clean_lines",
    "decode_body",
    "extract_document",
    "extractor_name",
    "page_document",
]

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
log = logging.getLogger("seekserve.search")

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u3000]+")
_MAX_TITLE_CHARS = 300


@dataclass(frozen=True)
class Document:
    """A page's readable text, ready to be cut into passages."""

    url: str
    title: str
    text: str
    """Main text, one paragraph per line, no blank lines."""


@functools.cache
def _trafilatura() -> ModuleType | None:
    try:
        return importlib.import_module("trafilatura")
    except ImportError as exc:
        if not (isinstance(exc, ModuleNotFoundError) and exc.name == "trafilatura"):
            # installed but broken (a missing dependency of its own): say so rather than hide it
            log.warning("trafilatura cannot be imported (%s); HTML is read by the stdlib extractor", exc)
        return None


def extractor_name() -> str:
    """Which HTML extractor runs: `trafilatura`, or `stdlib` where seekserve[search] is not installed.
    The first call imports trafilatura (about 0.4 s): call it at startup to keep that off a request."""
    return "trafilatura" if _trafilatura() is not None else "stdlib"


def decode_body(body: bytes, charset: str | None, content_type: str) -> str:
    """Text of a body: the header's charset, else a byte-order mark, else (HTML) the page's
    <meta charset>, else UTF-8; undecodable bytes replaced. GBK/Big5 pages declare theirs in <meta>."""
    candidates = [charset] if charset else []
    candidates += [name for bom, name in _BOMS if body.startswith(bom)]
    if content_type in HTML_TYPES:
        candidates += [m.decode("ascii") for m in _META_CHARSET.findall(body, 0, 4096)[:1]]
    for name in [*candidates, "utf-8"]:
        try:
            return body.decode(name, errors="replace")
        except LookupError:
            continue
    raise AssertionError("utf-8 is always a known codec")


def clean_lines(text: str) -> str:
    """Runs of spaces collapsed, each line stripped, empty lines dropped."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _html_title(html: str) -> str:
    match = _TITLE.search(html, 0, 200_000)
    return clean_lines(html_lib.unescape(match.group(1))).replace("\n", " ") if match else ""


def _main_text(html: str, url: str) -> str:
    module = _trafilatura()
    if module is not None:
        text = module.extract(
            html,
            url=url,
            include_comments=False,
            include_tables=True,
            include_images=False,
            include_links=False,
            with_metadata=False,
        )
        if text:
            return clean_lines(text)
    return clean_lines(_StdlibText.read(html))


def extract_document(body: bytes | str, *, content_type: str, url: str, title: str = "") -> Document:
    """The main text of a body of `content_type` (one of fetch.TEXT_TYPES; other types are read as
    plain text). Title: the page's own (<title>, a markdown `#` heading), else `title`, else the URL."""
    text = body if isinstance(body, str) else decode_body(body, None, content_type)
    if content_type in HTML_TYPES:
        own_title = _html_title(text)
        main = _main_text(text, url)
    else:
        heading = _MD_HEADING.search(text) if content_type == "text/markdown" else None
        own_title = heading.group(1) if heading else ""
        main = clean_lines(text)
    chosen = own_title or title or url
    return Document(url=url, title=chosen[:_MAX_TITLE_CHARS], text=main)


def page_document(page: Page, title: str = "") -> Document:
    """extract_document over a fetched page, decoded by decode_body."""
    text = decode_body(page.body, page.charset, page.content_type)
    return extract_document(text, content_type=page.content_type, url=page.url, title=title)


class _StdlibText(HTMLParser):
    """Visible text of an HTML page without boilerplate elements; <article>/<main> when present."""

    SKIP = frozenset(
        {"script", "style", "noscript", "template", "svg", "nav", "header", "footer", "aside", "form"}
    )
    SKIP |= {"button", "select", "iframe", "head", "title"}
    MAIN = frozenset({"article", "main"})
    BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "section", "blockquote", "pre", "dd", "dt", "table", "hr"}
        | {"h1", "h2", "h3", "h4", "h5", "h6", "article", "main", "ul", "ol", "figcaption"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._skip_depth = 0
        self._main_depth = 0
        self._pre_depth = 0
        self._all: list[str] = []
        self._main: list[str] = []

    @classmethod
    def read(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        parser.close()
        main = "".join(parser._main)
        return main if main.strip() else "".join(parser._all)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip_depth += 1
        elif tag in self.MAIN:
            self._main_depth += 1
        self._pre_depth += tag == "pre"
        if tag in self.BLOCK:
            self._add("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self.MAIN:
            self._main_depth = max(0, self._main_depth - 1)
        self._pre_depth = max(0, self._pre_depth - (tag == "pre"))
        if tag in self.BLOCK:
            self._add("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:  # HTML collapses whitespace, newlines included, except in <pre>
            self._add(data if self._pre_depth else _WHITESPACE.sub(" ", data))

    def _add(self, piece: str) -> None:
        self._all.append(piece)
        if self._main_depth:
            self._main.append(piece)

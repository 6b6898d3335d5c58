from __future__ import annotations

import pytest

from search.web import ARTICLE_HTML
from seekserve.search import extract
from seekserve.search.extract import Document, decode_body, extract_document, page_document
from seekserve.search.fetch import Page

ARTICLE_TEXT = (
    "The Kestrel Bridge reopens\n"
    "The Kestrel Bridge over the river Lune reopened on Tuesday after two years of repairs. Engineers "
    "replaced all 412 rivets of the main span and repainted the railings in the original green.\n"
    "The bridge was designed in 1887 by the engineer Margaret Holloway, who also designed the harbour "
    "lighthouse at Glasson. It carries about nine thousand vehicles a day.\n"
    "Local shops hope the reopening will bring back the visitors they lost while the bridge was closed, "
    "and the town council plans a festival on the bridge next spring."
)
TITLE = "The Kestrel Bridge reopens - Lune Valley News"


def test_trafilatura_keeps_the_article_and_drops_nav_header_aside_and_footer() -> None:
    assert extract.extractor_name() == "trafilatura", "trafilatura is in the test extra (seekserve[search])"
    doc = extract_document(ARTICLE_HTML.encode(), content_type="text/html", url="http://web.test/article")
    assert doc == Document("http://web.test/article", TITLE, ARTICLE_TEXT)


def test_without_trafilatura_the_stdlib_parser_reads_the_article(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "_trafilatura", lambda: None)
    assert extract.extractor_name() == "stdlib"
    doc = extract_document(ARTICLE_HTML, content_type="text/html", url="http://web.test/article")
    assert doc == Document("http://web.test/article", TITLE, ARTICLE_TEXT)
    page = (
        "<html><body><nav>menu</nav><div>Hello <b>world</b>&amp; all</div><script>x()</script></body></html>"
    )
    assert extract_document(page, content_type="text/html", url="u").text == "Hello world& all"


def test_a_page_without_main_text_for_trafilatura_falls_back_to_the_parser() -> None:
    doc = extract_document(
        "<html><body><p>short</p></body></html>", content_type="text/html", url="u", title="T"
    )
    assert (doc.title, doc.text) == ("T", "short")


def test_markdown_and_plain_text_pass_through() -> None:
    md = extract_document(
        "# Ferry notes\n\n\nThe ferry leaves at **7:15**.  \n", content_type="text/markdown", url="u"
    )
    assert (md.title, md.text) == ("Ferry notes", "# Ferry notes\nThe ferry leaves at **7:15**.")
    plain = extract_document(
        b"Plain facts.\r\n\r\nThe ferry  leaves.", content_type="text/plain", url="u", title="P"
    )
    assert (plain.title, plain.text) == ("P", "Plain facts.\nThe ferry leaves.")
    assert extract_document("x", content_type="text/plain", url="http://u/x").title == "http://u/x"


def test_bodies_are_decoded_by_header_bom_or_meta_charset() -> None:
    gbk_page = (
        '<html><head><meta charset="gbk"><title>大桥</title></head><body><p>大桥重新开放</p></body></html>'
    )
    assert decode_body(gbk_page.encode("gbk"), None, "text/html") == gbk_page
    assert decode_body("héllo".encode("latin-1"), "iso-8859-1", "text/plain") == "héllo"
    assert decode_body("\ufeffhi".encode("utf-16-le"), None, "text/plain") == "\ufeffhi"
    assert decode_body(b"caf\xc3\xa9 \xff", "no-such-codec", "text/plain") == "café \ufffd"


def test_page_document_reads_a_fetched_page() -> None:
    body = '<html><head><meta charset="gbk"><title>大桥</title></head><body><p>大桥重新开放</p></body></html>'
    page = Page(
        "http://web.test/zh",
        "http://web.test/zh",
        200,
        "text/html",
        None,
        body.encode("gbk"),
        ("127.0.0.1",),
        0,
    )
    assert page_document(page) == Document("http://web.test/zh", "大桥", "大桥重新开放")

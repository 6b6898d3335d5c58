"""The chat page's files: what is served at which path, with which headers, within which budget,
by `seekserve serve` and by `seekserve gateway` alike; and the vendored libraries are the published ones."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
from importlib import resources
from pathlib import Path

from fastapi.testclient import TestClient

from chat.page import page_files
from gateway.harness import config_for, running_gateway
from seekserve.chat import BUDGET_GZIP_BYTES, CHAT_PATH, CSP, assets, page_reply
from seekserve.server import ServerConfig, create_app

STATIC = Path(str(resources.files("seekserve.chat").joinpath("static")))


def test_every_static_file_is_served_at_its_path_and_nothing_else() -> None:
    files = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file())
    expected = sorted(CHAT_PATH if f == "chat.html" else f"{CHAT_PATH}/{f}" for f in files)
    assert sorted(assets()) == expected
    for path in expected:
        reply = page_reply(path)
        assert reply is not None and reply.status == 200
        name = "chat.html" if path == CHAT_PATH else path.removeprefix(f"{CHAT_PATH}/")
        assert reply.body == (STATIC / name).read_bytes()
    types = {path: dict(page_reply(path).headers)["Content-Type"] for path in expected}  # type: ignore[union-attr]
    assert types[CHAT_PATH] == "text/html; charset=utf-8"
    assert (
        types["/chat/js/app.js"]
        == types["/chat/vendor/markdown-it.min.mjs"]
        == "text/javascript; charset=utf-8"
    )
    assert types["/chat/chat.css"] == "text/css; charset=utf-8"
    assert types["/chat/vendor/licenses/markdown-it.txt"] == "text/plain; charset=utf-8"
    for outside in (
        "/chat/../server/app.py",
        "/chat/vendor",
        "/chat/js/",
        "/chat.html",
        "/chatx",
        "/v1/models",
    ):
        assert page_reply(outside) is None, outside


def test_redirects_headers_gzip_and_revalidation() -> None:
    for path in ("/", "/chat/"):
        assert page_reply(path) is not None
        assert page_reply(path).status == 307 and ("Location", "/chat") in page_reply(path).headers  # type: ignore[union-attr]
    page = page_reply(CHAT_PATH)
    assert page is not None
    headers = dict(page.headers)
    assert headers["Content-Security-Policy"] == CSP and "connect-src 'self'" in CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    assert headers["Cache-Control"] == "no-cache" and headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Encoding" not in headers
    zipped = page_reply(CHAT_PATH, accept_encoding="br, gzip;q=0.8")
    assert zipped is not None and dict(zipped.headers)["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.body) == page.body
    refused = page_reply(CHAT_PATH, accept_encoding="gzip;q=0, deflate")
    assert refused is not None and refused.body == page.body
    same = page_reply(CHAT_PATH, if_none_match=f'"x", {headers["ETag"]}')
    assert same is not None and same.status == 304 and same.body == b""
    stale = page_reply(CHAT_PATH, if_none_match='"0000"')
    assert stale is not None and stale.status == 200


def test_the_page_and_everything_it_loads_fit_the_budget() -> None:
    sizes = page_files()
    total = sum(sizes.values())
    vendored = sizes["/chat/vendor/markdown-it.min.mjs"] + sizes["/chat/vendor/highlight.min.js"]
    assert total <= BUDGET_GZIP_BYTES, f"the page loads {total} gzipped bytes, over {BUDGET_GZIP_BYTES}"
    assert 60_000 < vendored < total, sizes  # the two libraries, then the page's own files


def test_vendored_libraries_are_the_published_builds() -> None:
    readme = (STATIC / "vendor" / "README.md").read_text()
    published = dict(re.findall(r"^(\S+\.m?js)\n.*?sha256[^:]*: ([0-9a-f]{64})", readme, re.M | re.S))
    assert set(published) == {"markdown-it.min.mjs", "highlight.min.js"}
    # markdown-it's last line, naming a source map that is not shipped, was removed.
    original = {
        "markdown-it.min.mjs": (STATIC / "vendor/markdown-it.min.mjs").read_bytes()
        + b"//# sourceMappingURL=markdown-it.esm.min.mjs.map",
        "highlight.min.js": (STATIC / "vendor/highlight.min.js").read_bytes(),
    }
    for name, data in original.items():
        assert hashlib.sha256(data).hexdigest() == published[name], name
    licences = {p.name for p in (STATIC / "vendor" / "licenses").iterdir()}
    assert licences == {
        "markdown-it.txt",
        "entities.txt",
        "mdurl.txt",
        "oxc-project-runtime.txt",
        "highlight.js.txt",
    }


def test_server_and_gateway_serve_the_same_page() -> None:
    app = create_app(ServerConfig(served_model_name="tiny"), lambda: None)  # type: ignore[arg-type,return-value]
    server = TestClient(app)  # without its lifespan: no engine is loaded
    root = server.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/chat"
    page = server.get("/chat")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
    assert page.content == assets()[CHAT_PATH].body
    assert server.get("/chat/js/app.js").content == assets()["/chat/js/app.js"].body
    assert server.get("/chat/nothing.js").status_code == 404

    async def from_gateway() -> dict[str, tuple[int, bytes, str]]:
        got = {}
        async with running_gateway(config_for(["http://127.0.0.1:9"])) as gw:
            for path in ("/", "/chat", "/chat/js/app.js", "/chat/nothing.js"):
                async with gw.client.get(gw.url + path, allow_redirects=False) as r:
                    got[path] = (r.status, await r.read(), r.headers.get("Location", ""))
            etag = assets()[CHAT_PATH].etag
            async with gw.client.get(gw.url + CHAT_PATH, headers={"If-None-Match": etag}) as r:
                got["revalidated"] = (r.status, await r.read(), "")
            async with gw.client.get(gw.url + CHAT_PATH, auto_decompress=False) as r:
                assert r.headers["Content-Encoding"] == "gzip"  # aiohttp asks for it
                got["gzipped"] = (r.status, gzip.decompress(await r.read()), "")
        return got

    got = asyncio.run(from_gateway())
    assert got["/"] == (307, b"", "/chat")
    assert got["/chat"] == (200, assets()[CHAT_PATH].body, "")
    assert got["gzipped"] == (200, assets()[CHAT_PATH].body, "")
    assert got["/chat/js/app.js"] == (200, assets()["/chat/js/app.js"].body, "")
    assert got["/chat/nothing.js"][0] == 404 and b"/chat" in got["/chat/nothing.js"][1]
    assert got["revalidated"][:2] == (304, b"")

"""The fetcher against a local web on loopback: what it returns, what it refuses and where it connects.

The tests reach their own servers through the allow-list: the name `web.test` (fake DNS -> 127.0.0.1)
is listed; 127.0.0.1 itself, `localhost` and `evil.test` (fake DNS -> 127.0.0.1) are not.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from search.web import ARTICLE_HTML, FakeDns, local_web, serving
from seekserve.search.addresses import Refusal
from seekserve.search.config import SearchConfig
from seekserve.search.errors import (
    FetchError,
    FetchFailed,
    FetchRefused,
    FetchStatus,
    FetchTimeout,
    PageTooLarge,
    TooManyRedirects,
    UnsupportedContent,
)
from seekserve.search.fetch import Fetcher, Page, PinnedResolver, system_lookup

CONFIG = SearchConfig(allow_hosts=("web.test",), page_timeout_s=2.0, max_page_bytes=1024 * 1024)


def dns() -> FakeDns:
    return FakeDns(
        {"web.test": [["127.0.0.1"]], "evil.test": [["127.0.0.1"]], "mixed.test": [["8.8.8.8", "10.0.0.7"]]}
    )


def run_with_web(
    test: Callable[[Fetcher, str], Awaitable[Any]], config: SearchConfig = CONFIG, lookup: Any = None
) -> Any:
    """test(fetcher, base URL of the local web as http://web.test:PORT), in a fresh event loop."""

    async def main() -> Any:
        async with serving(local_web()) as port, Fetcher(config, lookup=lookup or dns()) as fetcher:
            return await test(fetcher, f"http://web.test:{port}")

    return asyncio.run(main())


def fetch(path: str, config: SearchConfig = CONFIG) -> Page:
    return run_with_web(lambda f, base: f.fetch(base + path), config)


def refusal_of(
    url_of: Callable[[str], str], config: SearchConfig = CONFIG, lookup: Any = None
) -> FetchRefused:
    """The FetchRefused of fetching url_of(base URL)."""

    async def test(fetcher: Fetcher, base: str) -> None:
        await fetcher.fetch(url_of(base))

    with pytest.raises(FetchRefused) as caught:
        run_with_web(test, config, lookup)
    return caught.value


def test_an_html_page_is_fetched_whole_with_its_type_and_address() -> None:
    page = fetch("/article")
    assert page.body == ARTICLE_HTML.encode()
    assert (page.status, page.content_type, page.charset, page.addresses) == (
        200,
        "text/html",
        "utf-8",
        ("127.0.0.1",),
    )
    assert page.num_redirects == 0 and page.url == page.requested_url


def test_plain_text_and_markdown_are_fetched() -> None:
    assert fetch("/plain").content_type == "text/plain"
    assert fetch("/notes.md").body == b"# Ferry notes\n\nThe ferry leaves at **7:15**."


def test_five_redirects_are_followed_and_a_sixth_is_an_error() -> None:
    page = fetch("/hops/5")
    assert (page.num_redirects, page.body) == (5, ARTICLE_HTML.encode())
    assert page.url.endswith("/hops/0") and page.requested_url.endswith("/hops/5")
    with pytest.raises(TooManyRedirects, match=r"more than 5 redirects \(max_redirects\)"):
        fetch("/hops/6")
    with pytest.raises(TooManyRedirects, match="more than 0 redirects"):
        fetch("/hops/1", replace(CONFIG, max_redirects=0))


def test_a_relative_redirect_is_joined_to_the_url() -> None:
    page = fetch("/relative")
    assert page.url.endswith("/article") and page.num_redirects == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/article", Refusal.LOOPBACK),
        ("http://[::1]:{port}/", Refusal.LOOPBACK),
        ("http://[::ffff:127.0.0.1]:{port}/", Refusal.LOOPBACK),
        ("http://10.0.0.1/", Refusal.PRIVATE),
        ("http://192.168.1.1/", Refusal.PRIVATE),
        ("http://[fd12::1]/", Refusal.PRIVATE),
        ("http://169.254.169.254/latest/meta-data/", Refusal.METADATA),
        ("http://[fd00:ec2::254]/", Refusal.METADATA),
        ("http://100.100.100.200/", Refusal.METADATA),
        ("http://metadata.google.internal/computeMetadata/v1/", Refusal.METADATA),
        ("http://169.254.1.1/", Refusal.LINK_LOCAL),
        ("http://100.64.0.1/", Refusal.SHARED),
        ("http://224.0.0.1/", Refusal.MULTICAST),
        ("http://0.0.0.0:{port}/", Refusal.UNSPECIFIED),
        ("http://240.0.0.1/", Refusal.RESERVED),
        ("http://evil.test:{port}/article", Refusal.LOOPBACK),
        ("http://mixed.test/", Refusal.PRIVATE),
        ("ftp://web.test/file.txt", Refusal.SCHEME),
        ("file:///etc/passwd", Refusal.SCHEME),
        ("http://user:pw@web.test:{port}/article", Refusal.BAD_URL),
    ],
)
def test_private_and_odd_urls_are_refused_directly(url: str, reason: Refusal) -> None:
    refused = refusal_of(lambda base: url.format(port=base.rsplit(":", 1)[1]))
    assert refused.reason is reason


def test_a_name_the_system_resolves_to_loopback_is_refused() -> None:
    refused = refusal_of(
        lambda base: base.replace("web.test", "localhost") + "/article", lookup=system_lookup
    )
    assert refused.reason is Refusal.LOOPBACK
    pattern = r"localhost \((127\.0\.0\.1|::1)\) is a loopback address: add the host to --search-allow-hosts"
    assert re.search(pattern, str(refused)), str(refused)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://127.0.0.1:{port}/article", Refusal.LOOPBACK),
        ("http://169.254.169.254/latest/meta-data/iam/", Refusal.METADATA),
        ("http://evil.test:{port}/article", Refusal.LOOPBACK),
        ("http://[::1]:{port}/article", Refusal.LOOPBACK),
        ("gopher://web.test:{port}/", Refusal.SCHEME),
    ],
)
def test_redirects_to_private_addresses_are_refused(target: str, reason: Refusal) -> None:
    def url_of(base: str) -> str:
        return f"{base}/to?url={target.format(port=base.rsplit(':', 1)[1])}"

    refused = refusal_of(url_of)
    assert refused.reason is reason
    assert "/to?url=" in refused.url  # the error names the URL asked for, not the hop refused


def test_a_redirect_two_hops_in_is_checked_too() -> None:
    def url_of(base: str) -> str:
        inner = f"{base}/to?url=http://10.1.2.3/admin"
        return f"{base}/to?url={inner.replace('?', '%3F').replace('=', '%3D')}"

    assert refusal_of(url_of).reason is Refusal.PRIVATE


def test_the_allow_list_opens_an_address_but_not_the_metadata_endpoint() -> None:
    config = replace(CONFIG, allow_hosts=("127.0.0.0/8", "169.254.0.0/16"))
    assert (
        run_with_web(lambda f, base: f.fetch(base.replace("web.test", "127.0.0.1") + "/plain"), config).status
        == 200
    )
    refused = refusal_of(lambda base: "http://169.254.169.254/", config)
    assert refused.reason is Refusal.METADATA
    assert "opened only by naming it exactly" in str(refused)


def test_each_hop_is_resolved_once_and_connected_to_the_address_checked() -> None:
    """Server A on 127.0.0.1:P, server B on 127.0.0.2:P; the name answers A first, then B. The page
    comes from A and the name was looked up once: nothing resolved it a second time."""
    rebinding = FakeDns({"web.test": [["127.0.0.1"], ["127.0.0.2"]]})
    config = replace(CONFIG, allow_hosts=("127.0.0.1", "127.0.0.2"))

    async def main() -> tuple[bytes, bytes]:
        async with (
            serving(local_web("A")) as port,
            serving(local_web("B"), "127.0.0.2", port),
            Fetcher(config, lookup=rebinding) as fetcher,
        ):
            first = await fetcher.fetch(f"http://web.test:{port}/whoami")
            assert rebinding.calls == ["web.test"]
            second = await fetcher.fetch(f"http://web.test:{port}/whoami")
            return first.body, second.body

    first, second = asyncio.run(main())
    assert first == b"server A"
    assert rebinding.calls == ["web.test", "web.test"]
    assert second in (b"server A", b"server B")  # a kept-alive connection to A may serve it


def test_a_name_that_rebinds_to_a_refused_address_is_refused_at_its_next_hop() -> None:
    rebinding = FakeDns({"web.test": [["127.0.0.1"], ["169.254.169.254"]]})
    config = replace(CONFIG, allow_hosts=("127.0.0.1",))

    async def test(fetcher: Fetcher, base: str) -> None:
        assert (await fetcher.fetch(base + "/plain")).status == 200
        await fetcher.fetch(base + "/plain")

    with pytest.raises(FetchRefused, match=r"web.test \(169.254.169.254\) is a cloud metadata endpoint"):
        run_with_web(test, config, rebinding)


def test_the_resolver_answers_only_from_pins() -> None:
    async def main() -> None:
        resolver = PinnedResolver()
        with pytest.raises(OSError, match="has no checked address pinned"):
            await resolver.resolve("web.test", 80)
        with resolver.pinned("web.test", ["127.0.0.1"]), resolver.pinned("web.test", ["127.0.0.3"]):
            assert [r["host"] for r in await resolver.resolve("WEB.test.", 80)] == ["127.0.0.1", "127.0.0.3"]
        with pytest.raises(OSError):
            await resolver.resolve("web.test", 80)

    asyncio.run(main())


def test_content_types_other_than_text_are_refused() -> None:
    with pytest.raises(UnsupportedContent, match="content type 'image/png' is not text"):
        fetch("/image.png")


def test_bodies_over_the_cap_are_refused_with_and_without_a_length() -> None:
    with pytest.raises(PageTooLarge, match=r"over 1048576 bytes \(max_page_bytes\)"):
        fetch("/huge")
    with pytest.raises(PageTooLarge):
        fetch("/huge-chunked")


def test_error_statuses_and_a_redirect_without_location_fail() -> None:
    with pytest.raises(FetchStatus, match="HTTP 404") as caught:
        fetch("/missing")
    assert caught.value.status == 404
    with pytest.raises(FetchStatus, match="HTTP 302"):
        fetch("/nolocation")


def test_an_unknown_name_fails_without_being_refused() -> None:
    with pytest.raises(FetchFailed, match=r"nowhere\.test does not resolve"):
        run_with_web(lambda f, base: f.fetch("http://nowhere.test/"))


def test_a_slow_page_times_out_at_the_page_timeout() -> None:
    start = time.monotonic()
    with pytest.raises(FetchTimeout, match=r"no complete page within 0.3 s \(page_timeout_s\)"):
        fetch("/slow", replace(CONFIG, page_timeout_s=0.3))
    assert time.monotonic() - start < 2.5


def test_fetch_many_keeps_the_order_and_stops_at_the_budget() -> None:
    async def test(fetcher: Fetcher, base: str) -> tuple[list[Page | FetchError], float]:
        start = time.monotonic()
        results = await fetcher.fetch_many(
            [base + "/article", base + "/slow", base + "/image.png"], budget_s=0.3
        )
        return results, time.monotonic() - start

    results, elapsed = run_with_web(test, replace(CONFIG, page_timeout_s=10.0))
    assert isinstance(results[0], Page) and results[0].body == ARTICLE_HTML.encode()
    assert isinstance(results[1], FetchTimeout) and isinstance(results[2], UnsupportedContent)
    assert 0.3 <= elapsed < 2.0


def test_no_cookies_are_kept_and_the_user_agent_is_the_configured_one() -> None:
    page = fetch("/cookie", replace(CONFIG, user_agent="grounding-test/1"))
    assert json.loads(page.body) == {"cookie": None, "user-agent": "grounding-test/1"}

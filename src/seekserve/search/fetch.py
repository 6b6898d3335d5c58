"""Fetch search-result pages safely: every hop checked, connected to the address that was checked.

For each hop (the URL, then each redirect, followed by hand, at most max_redirects):

    scheme http/https, no credentials ─► host name resolved ONCE (Lookup) ─► every address checked
    (addresses.refusal) ─► the addresses pinned in PinnedResolver ─► aiohttp connects: its resolver
    answers from the pin only, so no second DNS lookup can swap in another address (DNS rebinding)

then the final 2xx response's content type is checked and its body read up to max_page_bytes. Each
page has page_timeout_s, all of it bounded by the caller's deadline. The one pooled session sends no
cookies (DummyCookieJar) and ignores HTTP(S)_PROXY (a proxy would resolve names itself).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from seekserve.search.addresses import METADATA_NAMES, AllowList, Refusal, normalize_host, refusal
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

__all__ = ["TEXT_TYPES", "Fetcher", "Lookup", "Page", "PinnedResolver", "system_lookup"]

TEXT_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain", "text/markdown"})
"""Content types the fetcher returns (the extractor reads each)."""
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPT = "text/html,application/xhtml+xml;q=0.9,text/plain;q=0.8,text/markdown;q=0.8"
_CHUNK_BYTES = 64 * 1024

Lookup = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the addresses it resolves to, as strings. Called once per hop, never twice."""


async def system_lookup(host: str, port: int) -> list[str]:
    """The system resolver through the event loop (getaddrinfo in its executor)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Page:
    """A fetched page: the body as sent (decompressed), and where it came from."""

    url: str
    """The URL the body came from (after redirects)."""
    requested_url: str
    status: int
    content_type: str
    """Media type, lowercase, without parameters (`text/html`)."""
    charset: str | None
    """The charset the Content-Type header names, if any."""
    body: bytes
    addresses: tuple[str, ...]
    """The last hop's checked addresses: its connection went to one of them (or reused a kept-alive
    connection to an address checked for the same host before)."""
    num_redirects: int


class PinnedResolver(AbstractResolver):
    """aiohttp's resolver for the fetcher's session: answers only with addresses the fetcher checked
    and pinned for the hop in progress, and never asks DNS. An unpinned host is an error (fail closed).

    Concurrent hops to one host pin the union of their checked addresses (each was checked)."""

    def __init__(self) -> None:
        self._pins: dict[str, Counter[str]] = {}

    @contextmanager
    def pinned(self, host: str, addresses: Sequence[str]) -> Iterator[None]:
        pins = self._pins.setdefault(host, Counter())
        pins.update(addresses)
        try:
            yield
        finally:
            pins.subtract(addresses)
            for address in addresses:
                if pins[address] <= 0:
                    del pins[address]
            if not pins:
                del self._pins[host]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._pins.get(normalize_host(host))
        if not addresses:
            raise OSError(f"{host} has no checked address pinned: the fetcher resolves hosts itself")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        self._pins.clear()


class Fetcher:
    """Fetches pages under SearchConfig's rules. Owns one pooled aiohttp session, opened on first use
    in the running loop and closed by aclose() (or `async with`). Safe for concurrent fetches on one
    loop. Raises only FetchError subclasses (and CancelledError)."""

    def __init__(self, config: SearchConfig, *, lookup: Lookup = system_lookup) -> None:
        self.config = config
        self._allow = AllowList.parse(config.allow_hosts)
        self._lookup = lookup
        self._resolver = PinnedResolver()
        self._session: aiohttp.ClientSession | None = None
        self._headers = {"User-Agent": config.user_agent, "Accept": _ACCEPT}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver, use_dns_cache=False, limit=self.config.max_connections
            )
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def fetch(self, url: str, *, deadline: float | None = None) -> Page:
        """The page at `url`, within page_timeout_s and before `deadline` (the loop's clock,
        loop.time()); FetchTimeout when either comes first."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.config.page_timeout_s
        if deadline is not None:
            end = min(end, deadline)
        try:
            async with asyncio.timeout_at(end):
                return await self._follow(url)
        except TimeoutError:
            limit = f"{self.config.page_timeout_s:g} s (page_timeout_s)"
            raise FetchTimeout(url, f"no complete page within {limit} or the search's deadline") from None

    async def fetch_many(
        self, urls: Sequence[str], *, budget_s: float | None = None
    ) -> list[Page | FetchError]:
        """Each URL fetched concurrently, all within `budget_s` (default total_budget_s); results in
        the order of `urls`, a FetchError in place of each page that could not be had."""
        budget = self.config.total_budget_s if budget_s is None else budget_s
        deadline = asyncio.get_running_loop().time() + budget
        results = await asyncio.gather(
            *(self.fetch(u, deadline=deadline) for u in urls), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, FetchError):
                raise result
        return results  # type: ignore[return-value]  # narrowed by the loop above

    async def _follow(self, url: str) -> Page:
        try:
            current = URL(url)
        except ValueError as exc:
            raise FetchRefused(url, Refusal.BAD_URL, f"the URL does not parse ({exc})") from None
        for hop in range(self.config.max_redirects + 1):
            host, addresses = await self._check(url, current)
            try:
                with self._resolver.pinned(host, addresses):
                    response = await self._open().get(current, headers=self._headers, allow_redirects=False)
            except (aiohttp.ClientError, OSError) as exc:
                raise FetchFailed(url, f"{current.host}: {type(exc).__name__}: {exc}") from None
            try:
                if response.status in _REDIRECTS:
                    current = self._next_hop(url, current, response)
                    continue
                return await self._read(url, current, response, hop, addresses)
            finally:
                response.release()
        raise TooManyRedirects(url, self.config.max_redirects)

    async def _check(self, url: str, current: URL) -> tuple[str, list[str]]:
        """(host, its addresses) of one hop, every address allowed; FetchRefused otherwise."""
        if current.scheme not in ("http", "https"):
            raise FetchRefused(url, Refusal.SCHEME, f"{str(current)[:200]!r} is not an http or https URL")
        if current.user is not None or current.password is not None:
            raise FetchRefused(url, Refusal.BAD_URL, "URLs with credentials are not fetched")
        host = normalize_host(current.raw_host or "")
        if not host:
            raise FetchRefused(url, Refusal.BAD_URL, f"{str(current)[:200]!r} has no host")
        if host in METADATA_NAMES and host not in self._allow.names:
            raise FetchRefused(url, Refusal.METADATA, f"{host} is a cloud metadata endpoint")
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            addresses = await self._resolve(url, host, current.port or 80)
        for address in addresses:
            reason = refusal(host, ipaddress.ip_address(address.partition("%")[0]), self._allow)
            if reason is not None:
                shown = host if host == address else f"{host} ({address})"
                raise FetchRefused(url, reason, _refusal_detail(shown, reason))
        return host, addresses

    async def _resolve(self, url: str, host: str, port: int) -> list[str]:
        try:
            addresses = await self._lookup(host, port)
        except OSError as exc:
            raise FetchFailed(url, f"{host} does not resolve: {exc}") from None
        if not addresses:
            raise FetchFailed(url, f"{host} resolves to no address")
        return addresses

    def _next_hop(self, url: str, current: URL, response: aiohttp.ClientResponse) -> URL:
        location = response.headers.get("Location")
        if not location:
            raise FetchStatus(url, response.status)
        try:
            return current.join(URL(location))
        except ValueError as exc:
            raise FetchRefused(url, Refusal.BAD_URL, f"redirect to {location[:200]!r} ({exc})") from None

    async def _read(
        self, url: str, current: URL, response: aiohttp.ClientResponse, hops: int, addresses: list[str]
    ) -> Page:
        if not 200 <= response.status < 300:
            raise FetchStatus(url, response.status)
        content_type = response.content_type.lower()
        if content_type not in TEXT_TYPES:
            raise UnsupportedContent(url, content_type)
        limit = self.config.max_page_bytes
        if response.content_length is not None and response.content_length > limit:
            raise PageTooLarge(url, limit)
        body = bytearray()
        try:
            async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                body += chunk
                if len(body) > limit:
                    raise PageTooLarge(url, limit)
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchFailed(url, f"body cut: {type(exc).__name__}: {exc}") from None
        return Page(
            url=str(current),
            requested_url=url,
            status=response.status,
            content_type=content_type,
            charset=response.charset,
            body=bytes(body),
            addresses=tuple(addresses),
            num_redirects=hops,
        )


def _refusal_detail(host: str, reason: Refusal) -> str:
    if reason is Refusal.METADATA:
        return (
            f"{host} is a cloud metadata endpoint (opened only by naming it exactly in --search-allow-hosts)"
        )
    return (
        f"{host} is a {reason.value.replace('_', '-')} address: add the host to --search-allow-hosts "
        f"(search.allow_hosts) if it is an intranet site meant to be read"
    )

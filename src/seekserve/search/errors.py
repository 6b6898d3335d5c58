"""What can go wrong while grounding an answer in search results.

    SeekserveError
     └── SearchError                       grounding failed: the answer goes on without it
          ├── SearchBudgetExceeded         the request's total search budget ran out
          ├── ProviderError                a search provider gave no usable answer
          │    ├── ProviderUnreachable     connect error, reset, or no answer within the budget
          │    ├── ProviderStatus          an HTTP error status (status, body excerpt)
          │    │    └── JsonFormatDisabled SearXNG's 403: `json` missing from settings.yml search.formats
          │    ├── ProviderAnswerError     a body that is not the provider's documented JSON
          │    └── EnginesUnresponsive     SearXNG found nothing because its engines failed (engines)
          └── FetchError                   a page could not be fetched (url)
               ├── FetchRefused            the URL, or an address on its way, is not allowed (reason)
               └── FetchFailed             the page was allowed but could not be had
                    ├── FetchTimeout       no complete page within the per-page timeout or the deadline
                    ├── FetchStatus        the last hop's status is not 2xx (status)
                    ├── TooManyRedirects   more redirects than max_redirects
                    ├── PageTooLarge       a body over max_page_bytes
                    └── UnsupportedContent a content type that is not text (content_type)

A provider that lacks what it needs (folder, URL, API key) raises seekserve.errors.ConfigError when
it is built. None of these reaches a client as an error: the caller answers without search and
reports the message (`search_error`) and the class (a metric label).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seekserve.errors import SeekserveError

if TYPE_CHECKING:
    from seekserve.search.addresses import Refusal

__all__ = [
    "EnginesUnresponsive",
    "FetchError",
    "FetchFailed",
    "FetchRefused",
    "FetchStatus",
    "FetchTimeout",
    "JsonFormatDisabled",
    "PageTooLarge",
    "ProviderAnswerError",
    "ProviderError",
    "ProviderStatus",
    "ProviderUnreachable",
    "SearchBudgetExceeded",
    "SearchError",
    "TooManyRedirects",
    "UnsupportedContent",
]


class SearchError(SeekserveError):
    """Base of every search, fetch and extraction failure; the message says what and how to fix it."""


class SearchBudgetExceeded(SearchError):
    """The request's total search budget (SearchConfig.total_budget_s) ran out."""

    def __init__(self, budget_s: float, stage: str) -> None:
        super().__init__(
            f"search took longer than its budget of {budget_s:g} s (during {stage}); the answer goes on "
            f"without it: raise --search-budget-s or use a faster provider"
        )
        self.budget_s = budget_s
        self.stage = stage


class ProviderError(SearchError):
    """A search provider gave no usable answer; `provider` names it (`searxng`, `brave`, ...)."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"search provider {provider}: {message}")
        self.provider = provider


class ProviderUnreachable(ProviderError):
    """The provider could not be reached, or did not answer within the time limit."""


class ProviderStatus(ProviderError):
    """The provider answered with an HTTP error status."""

    def __init__(self, provider: str, status: int, body: bytes, hint: str = "") -> None:
        excerpt = body[:200].decode(errors="replace").strip()
        super().__init__(provider, f"HTTP {status}" + (f": {excerpt}" if excerpt else "") + hint)
        self.status = status


class JsonFormatDisabled(ProviderStatus):
    """SearXNG refuses `format=json` (403) because JSON output is not enabled in its settings."""

    def __init__(self, url: str, body: bytes) -> None:
        super().__init__(
            "searxng",
            403,
            body,
            f" (SearXNG at {url} has JSON output disabled: add `json` to `search.formats` in its "
            f"settings.yml, e.g. `formats: [html, json]`, and restart it)",
        )


class ProviderAnswerError(ProviderError):
    """The provider's body is not the JSON its documentation describes."""


class EnginesUnresponsive(ProviderError):
    """SearXNG answered 200 with no results while engines failed: `engines` is [(name, reason)]."""

    def __init__(self, engines: list[tuple[str, str]]) -> None:
        listed = ", ".join(f"{name} ({reason})" for name, reason in engines)
        super().__init__(
            "searxng",
            f"no results because its engines failed: {listed}; check the instance's network access, "
            f"or enable other engines in its settings.yml",
        )
        self.engines = engines


class FetchError(SearchError):
    """A page could not be fetched; `url` is the URL asked for."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"fetching {url}: {message}")
        self.url = url


class FetchRefused(FetchError):
    """The URL or an address on its way is not allowed; nothing was sent to it. `reason` is the rule."""

    def __init__(self, url: str, reason: Refusal, detail: str) -> None:
        super().__init__(url, f"refused: {detail}")
        self.reason = reason


class FetchFailed(FetchError):
    """The page was allowed but could not be had (network error, name not found, or a subclass)."""


class FetchTimeout(FetchFailed):
    """No complete page within the per-page timeout or before the overall deadline."""


class FetchStatus(FetchFailed):
    """The last hop's status is not 2xx (or a redirect without a Location)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(url, f"HTTP {status}")
        self.status = status


class TooManyRedirects(FetchFailed):
    """The page redirected more often than max_redirects allows."""

    def __init__(self, url: str, max_redirects: int) -> None:
        super().__init__(
            url,
            f"more than {max_redirects} redirects (max_redirects): the site loops or the chain is too "
            f"long; fetch its final URL instead",
        )
        self.max_redirects = max_redirects


class PageTooLarge(FetchFailed):
    """The body is larger than max_page_bytes; reading stopped there."""

    def __init__(self, url: str, max_page_bytes: int) -> None:
        super().__init__(
            url, f"the body is over {max_page_bytes} bytes (max_page_bytes): raise --search-max-page-bytes"
        )
        self.max_page_bytes = max_page_bytes


class UnsupportedContent(FetchFailed):
    """The content type is not one the extractor reads (HTML, XHTML, plain text, markdown)."""

    def __init__(self, url: str, content_type: str) -> None:
        super().__init__(
            url,
            f"content type {content_type!r} is not text: only text/html, application/xhtml+xml, "
            f"text/plain and text/markdown pages are read",
        )
        self.content_type = content_type

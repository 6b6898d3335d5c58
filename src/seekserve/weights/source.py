"""Where a pull gets a model's files: the `Source` contract, a mirror, and the JSON requests both make."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from seekserve.errors import PullError
from seekserve.weights.manifest import FileEntry, parse_manifest

__all__ = ["MANIFEST_TIMEOUT", "MirrorSource", "Source", "get_json"]

MANIFEST_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=3600)
"""A mirror hashes a folder it has not seen before answering (minutes for hundreds of GB)."""


class Source(Protocol):
    """A model's files over HTTP. `manifest` lists them with their checksums; `url(path)` answers
    GET with Range (206 and Content-Range) for each; `headers` go with every request."""

    description: str
    """What to call it in messages: 'mirror http://mirror:8080', 'the hub (https://huggingface.co)'."""
    headers: Mapping[str, str]
    revision: str | None
    """The commit the files are from, where the source names one (after `manifest`)."""

    async def manifest(self, session: aiohttp.ClientSession) -> list[FileEntry]: ...

    def url(self, path: str) -> str: ...


async def get_json(
    session: aiohttp.ClientSession, url: str, what: str, headers: Mapping[str, str] | None = None
) -> tuple[Any, aiohttp.ClientResponse]:
    """(parsed JSON, the response) of a GET that must answer 200 with JSON; PullError otherwise,
    naming `what` was asked for. 401, 403 and 404 come back as the response (status set, JSON None)
    for the caller to explain."""
    try:
        async with session.get(url, headers=headers, timeout=MANIFEST_TIMEOUT) as response:
            if response.status in (401, 403, 404):
                return None, response
            if response.status != 200:
                body = (await response.text())[:200]
                raise PullError(f"{what}: GET {url} answered {response.status}: {body}")
            try:
                return await response.json(content_type=None), response
            except ValueError as e:
                raise PullError(f"{what}: GET {url} did not answer JSON ({e})") from e
    except (TimeoutError, aiohttp.ClientError) as e:
        raise PullError(
            f"{what}: cannot reach {url} ({e or type(e).__name__}); check the URL and the network"
        ) from e


class MirrorSource:
    """A `seekserve mirror serve` (or any server with the same layout): `{base}/{model}/manifest.json`
    and `{base}/{model}/{path}`."""

    def __init__(self, base_url: str, model: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.description = f"mirror {self.base_url}"
        self.headers: Mapping[str, str] = {}
        self.revision: str | None = None

    async def manifest(self, session: aiohttp.ClientSession) -> list[FileEntry]:
        url = f"{self.base_url}/{quote(self.model)}/manifest.json"
        data, response = await get_json(session, url, f"the manifest of {self.model}")
        if data is None:
            raise PullError(
                f"{self.description} has no model {self.model!r} (GET {url}: {response.status}); "
                f"GET {self.base_url}/ lists the models it serves"
            )
        return parse_manifest(data, f"{self.model} on {self.description}")

    def url(self, path: str) -> str:
        return f"{self.base_url}/{quote(self.model)}/{quote(path)}"

"""The Hugging Face hub as a pull's source, through its HTTP API.

    GET {endpoint}/api/models/{model}/revision/{revision}        -> {"sha": commit, ...}
    GET {endpoint}/api/models/{model}/tree/{commit}?recursive=true -> [{type, path, size, oid, lfs?}]
                                                                      (pages linked by Link: rel="next")
    GET {endpoint}/{model}/resolve/{commit}/{path}                 -> the file (a redirect to a CDN
                                                                      that answers Range requests)

The revision (a branch, tag or commit) is resolved to its commit first, so every file comes from
one commit even if the branch moves during the pull. LFS files carry their SHA-256 (`lfs.oid`);
small files only their git blob id (`oid`), which the pull checks instead. The endpoint is
HF_ENDPOINT's, as for huggingface_hub; the token is huggingface_hub's (HF_TOKEN, or `hf auth login`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urljoin

import aiohttp

from seekserve.errors import PullError
from seekserve.weights.manifest import FileEntry
from seekserve.weights.source import get_json

__all__ = ["HubSource", "hub_token"]

_COMMIT = re.compile(r"[0-9a-f]{40}")


def hub_token() -> str | None:
    """huggingface_hub's token: HF_TOKEN, else the one `hf auth login` saved; None without either."""
    from huggingface_hub import get_token

    return get_token()


class HubSource:
    def __init__(self, endpoint: str, model: str, revision: str = "main", token: str | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.requested = revision
        self.description = f"the hub ({self.endpoint})"
        self.headers: Mapping[str, str] = {"Authorization": f"Bearer {token}"} if token else {}
        self.revision: str | None = None

    async def manifest(self, session: aiohttp.ClientSession) -> list[FileEntry]:
        what = f"model {self.model} on {self.description}"
        url = f"{self.endpoint}/api/models/{self.model}/revision/{quote(self.requested, safe='')}"
        info, response = await get_json(session, url, what, self.headers)
        if info is None:
            raise self._refused(response.status)
        commit = info.get("sha") if isinstance(info, dict) else None
        if not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
            raise PullError(f"{what}: GET {url} gave no commit id (sha) for revision {self.requested!r}")
        self.revision = commit
        entries: list[FileEntry] = []
        page: str | None = f"{self.endpoint}/api/models/{self.model}/tree/{commit}?recursive=true"
        while page is not None:
            items, response = await get_json(session, page, what, self.headers)
            if not isinstance(items, list):
                raise (
                    self._refused(response.status)
                    if items is None
                    else PullError(f"{what}: {page} is not a list")
                )
            entries += [self._entry(item, what) for item in items if item.get("type") == "file"]
            link = response.links.get("next")
            page = urljoin(page, str(link["url"])) if link else None
        return entries

    def url(self, path: str) -> str:
        assert self.revision is not None, "url() before manifest() resolved the revision"
        return f"{self.endpoint}/{self.model}/resolve/{self.revision}/{quote(path)}"

    @staticmethod
    def _entry(item: Mapping[str, Any], what: str) -> FileEntry:
        lfs = item.get("lfs")
        try:
            if isinstance(lfs, dict):
                return FileEntry(str(item["path"]), int(item["size"]), str(lfs["oid"]))
            return FileEntry(str(item["path"]), int(item["size"]), None, str(item["oid"]))
        except (KeyError, TypeError, ValueError) as e:
            raise PullError(f"{what}: the file list has an entry without path, size or oid: {item}") from e

    def _refused(self, status: int) -> PullError:
        page = f"{self.endpoint}/{self.model}"
        if status == 401:
            return PullError(
                f"{self.model} on {self.description} needs a login (it is private or gated, 401): set "
                f"HF_TOKEN or run `hf auth login`; check the spelling if it should be public"
            )
        if status == 403:
            return PullError(
                f"{self.model} on {self.description} is gated (403): accept its terms on {page}, then "
                f"set HF_TOKEN or run `hf auth login`"
            )
        return PullError(
            f"{self.description} has no model {self.model!r} at revision {self.requested!r} (404): "
            f"check the name and the revision on {page}"
        )

"""Fetching a model's files: several at once, large ones in ranges, resumed, verified, renamed.

Per file: take its lock (`.seekserve/locks/`, so a second pull of the same folder waits for the
file instead of writing it too), skip it if it is there with the right checksum, else open its
part (resuming from the record) and fetch the missing bytes in ranges of `range_bytes`, in file
order, over up to `connections` requests, while a thread hashes the part's done prefix as it
grows (so verifying costs little beyond the download); then rename it into place. A checksum
mismatch discards the part and fetches the file once more (`max_fetches`), then refuses it. A
dropped connection or a 5xx resumes the range where it stopped, after a backoff; `max_attempts`
tries in a row without a byte of progress give up, and the part stays for the next pull.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import filelock

from seekserve.errors import ChecksumError, PullError
from seekserve.weights.checksums import STATE_DIR, ChecksumCache
from seekserve.weights.config import PullConfig
from seekserve.weights.manifest import FileEntry, RunningDigest, hash_file
from seekserve.weights.parts import PartFile, pieces
from seekserve.weights.source import Source

__all__ = ["Downloader", "NullProgress", "Progress", "PullConfig"]

log = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class Progress(Protocol):
    def begin(self, total_bytes: int, num_files: int) -> None: ...

    def advance(self, num_bytes: int) -> None:
        """Bytes done (fetched, resumed or already there); negative when a file is fetched again."""

    def file_done(self, path: str) -> None: ...


class NullProgress:
    def begin(self, total_bytes: int, num_files: int) -> None:
        pass

    def advance(self, num_bytes: int) -> None:
        pass

    def file_done(self, path: str) -> None:
        pass


class _Transient(Exception):
    """A failure worth another try: a 5xx or 429 answer, a body cut short."""


_RETRYABLE = (aiohttp.ClientError, TimeoutError, _Transient)


@dataclass
class _Span:
    pos: int
    end: int


class Downloader:
    def __init__(
        self,
        source: Source,
        dest: Path,
        config: PullConfig,
        session: aiohttp.ClientSession,
        progress: Progress,
    ) -> None:
        self.source, self.dest, self.config = source, dest, config
        self.session, self.progress = session, progress
        self.checksums = ChecksumCache(dest)
        self.fetched_bytes = 0
        """Bytes received over the network by this pull."""
        self.fetched_files: list[str] = []
        self._requests = asyncio.Semaphore(config.connections)
        self._files = asyncio.Semaphore(config.connections)

    async def fetch_all(self, entries: list[FileEntry]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for entry in entries:
                    group.create_task(self._file(entry))
        except BaseExceptionGroup as group:
            raise _one_error(group, self.dest) from None
        finally:
            self.checksums.save()

    async def _file(self, entry: FileEntry) -> None:
        async with self._files, self._lock(entry.path):
            target = self.dest / entry.path
            if await self._present(target, entry):
                self.progress.advance(entry.size)
                self.progress.file_done(entry.path)
                return
            for _ in range(self.config.max_fetches):
                part = PartFile(target, entry)
                self.progress.advance(part.open())
                digest = RunningDigest(entry.size, git_blob=entry.sha256 is None)
                try:
                    await self._fetch(part, digest)
                finally:
                    part.close()  # records the ranges done, however this ends
                digests = digest.digests()
                if entry.matches(digests):
                    part.finish()
                    self.checksums.record(entry.path, digests.sha256)
                    self.fetched_files.append(entry.path)
                    self.progress.file_done(entry.path)
                    return
                log.warning(
                    "%s from %s fails its checksum; fetching it again", entry.path, self.source.description
                )
                part.discard()
                self.progress.advance(-entry.size)
        expected = f"SHA-256 {entry.sha256}" if entry.sha256 else f"git blob {entry.git_sha1}"
        raise ChecksumError(
            f"{entry.path} from {self.source.description} failed its checksum ({expected}) "
            f"{self.config.max_fetches} times: the source holds a damaged copy, or something on the way "
            f"rewrites it; nothing was kept"
        )

    async def _fetch(self, part: PartFile, digest: RunningDigest) -> None:
        """Fetch the part's missing bytes and hash it whole (its done prefix as it grows)."""
        queue = deque(pieces(part.missing(), self.config.range_bytes))
        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.config.connections, len(queue))):
                group.create_task(self._worker(part, queue))
            group.create_task(self._follow(part, digest))

    async def _worker(self, part: PartFile, queue: deque[tuple[int, int]]) -> None:
        while queue:
            start, end = queue.popleft()
            await self._range(part, _Span(start, end))

    async def _follow(self, part: PartFile, digest: RunningDigest) -> None:
        """Hash the part's bytes as its done prefix grows, in a thread; ends when all are hashed."""
        while digest.position < part.entry.size:
            if part.prefix_bytes <= digest.position:
                part.prefix_grew.clear()
                await part.prefix_grew.wait()
            await asyncio.to_thread(digest.update_from, part.fd, part.prefix_bytes)

    async def _present(self, target: Path, entry: FileEntry) -> bool:
        """Whether the file is already there with the right content (its recorded hash, else hashed)."""
        if not target.is_file() or target.stat().st_size != entry.size:
            return False
        recorded = self.checksums.lookup(entry.path)
        if entry.sha256 is not None and recorded == entry.sha256:
            return True
        digests = await asyncio.to_thread(hash_file, target, entry.sha256 is None)
        if entry.matches(digests):
            self.checksums.record(entry.path, digests.sha256)
            return True
        log.warning("%s differs from %s's copy; fetching it", target, self.source.description)
        return False

    @asynccontextmanager
    async def _lock(self, path: str) -> AsyncIterator[None]:
        """The file's lock, shared by every pull into this folder (polled, so the loop runs on)."""
        locks = self.dest / STATE_DIR / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:16]
        lock = filelock.FileLock(str(locks / f"{name}.lock"))
        waited = False
        while True:
            try:
                lock.acquire(timeout=0)
                break
            except filelock.Timeout:
                if not waited:
                    log.info("%s: another pull is fetching it; waiting", path)
                    waited = True
                await asyncio.sleep(self.config.lock_poll_s)
        try:
            yield
        finally:
            lock.release()

    async def _range(self, part: PartFile, span: _Span) -> None:
        failures = 0
        while span.pos < span.end:
            before = span.pos
            try:
                async with self._requests:
                    await self._get(part, span)
            except _RETRYABLE as e:
                failures = 1 if span.pos > before else failures + 1
                why = str(e) or type(e).__name__
                if failures >= self.config.max_attempts:
                    tries = "1 try" if failures == 1 else f"{failures} tries in a row"
                    raise PullError(
                        f"{part.entry.path}: {why}; {tries} without progress at byte {span.pos} from "
                        f"{self.source.description}; run the same pull again to resume"
                    ) from e
                delay = self.config.retry_base_s * 2 ** (failures - 1)
                log.info("%s: %s at byte %d; retrying in %.1f s", part.entry.path, why, span.pos, delay)
                await asyncio.sleep(delay)

    async def _get(self, part: PartFile, span: _Span) -> None:
        url = self.source.url(part.entry.path)
        headers = {"Range": f"bytes={span.pos}-{span.end - 1}", "Accept-Encoding": "identity"}
        async with self.session.get(url, headers=headers) as response:
            self._check(response, url, part.entry, span)
            async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                n = min(len(chunk), span.end - span.pos)
                part.write(span.pos, chunk[:n])
                part.mark(span.pos, span.pos + n)
                span.pos += n
                self.fetched_bytes += n
                self.progress.advance(n)
                if span.pos >= span.end:
                    return
        if span.pos < span.end:
            raise _Transient(f"the connection closed at byte {span.pos} of {span.end}")

    def _check(self, response: aiohttp.ClientResponse, url: str, entry: FileEntry, span: _Span) -> None:
        status = response.status
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if match is None or int(match[1]) != span.pos or int(match[3]) != entry.size:
                raise PullError(
                    f"{url} answered bytes {response.headers.get('Content-Range')!r} for "
                    f"bytes={span.pos}-{span.end - 1} of a {entry.size}-byte file: it changed on the "
                    f"source since its manifest was read; pull again"
                )
            return
        if status == 200 and span.pos == 0 and span.end == entry.size:
            return  # the whole file, as asked (a server that ignores Range)
        if status == 200:
            raise PullError(
                f"{url} ignores Range requests (200 for bytes={span.pos}-), so it can neither resume nor "
                f"split a file: delete {entry.path}.part in the destination and pull with --connections 1"
            )
        if status == 416:
            raise PullError(
                f"{url} is shorter than the {entry.size} bytes its manifest says (416): it changed on the "
                f"source; pull again"
            )
        if status >= 500 or status == 429:
            raise _Transient(f"{url} answered {status}")
        raise PullError(f"GET {url} answered {status}: {response.reason}")


def _one_error(group: BaseExceptionGroup[BaseException], dest: Path) -> BaseException:
    """The error to report from a failed pull's task group: the first PullError, else a write that
    failed (a full disk) as a PullError, else the group itself."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        e = pending.pop(0)
        if isinstance(e, BaseExceptionGroup):
            pending[:0] = list(e.exceptions)
        else:
            leaves.append(e)
    for e in leaves:
        if isinstance(e, PullError):
            return e
    for e in leaves:
        if isinstance(e, OSError):
            return PullError(f"cannot write the files into {dest}: {e}")
    return group

"""`seekserve mirror serve DIR`: model folders over HTTP, as a site's edge cache of weights.

    GET /                              {"models": [{"model": "org/name", "num_files": 7, "num_bytes": ...}]}
    GET /{model}/manifest.json         [{"path", "size", "sha256"}, ...] of every file of DIR/{model}
    GET /{model}/{path}                the file, with Range (206 + Content-Range, 416 past the end),
                                       If-Range, ETag and Last-Modified (starlette's FileResponse)

A manifest hashes each file once: its checksum is kept by size and modification time in memory and
in `DIR/{model}/.seekserve/checksums.json`, where a `seekserve pull` into DIR has already written
what it verified. Hidden paths (`.seekserve/`), partial files of a pull in progress and anything
outside DIR are never served. Symbolic links inside DIR are followed: the operator put them there.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from seekserve.weights.checksums import ChecksumCache
from seekserve.weights.manifest import check_relative_path, model_files

__all__ = ["MANIFEST", "create_mirror_app", "serve_mirror"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_MODEL_MARKERS = ("config.json",)
_MODEL_SUFFIXES = (".gguf", ".safetensors")
_MAX_DEPTH = 3


class _File(FileResponse):
    chunk_size = 1 << 20  # starlette's 64 KiB costs throughput on fast links


class Mirror:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._checksums: dict[str, ChecksumCache] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def index(self, request: Request) -> Response:
        models = await asyncio.to_thread(self._models)
        return JSONResponse({"models": models})

    def _models(self) -> list[dict[str, object]]:
        """Folders up to three levels down that hold config.json, a .gguf or a .safetensors file."""
        found = []
        for folder in self._folders():
            files = model_files(folder)
            found.append(
                {
                    "model": folder.relative_to(self.root).as_posix(),
                    "num_files": len(files),
                    "num_bytes": sum((folder / f).stat().st_size for f in files),
                }
            )
        return found

    def _folders(self) -> list[Path]:
        folders, frontier = [], [self.root]
        for _ in range(_MAX_DEPTH):
            frontier = [
                c for f in frontier for c in sorted(f.iterdir()) if c.is_dir() and not c.name.startswith(".")
            ]
            for folder in frontier:
                names = [p.name for p in folder.iterdir() if p.is_file()]
                if any(n in _MODEL_MARKERS or n.endswith(_MODEL_SUFFIXES) for n in names):
                    folders.append(folder)
        return sorted(folders)

    async def get(self, request: Request) -> Response:
        path = request.path_params["path"]
        try:
            check_relative_path(path)
        except ValueError:
            return _not_found(path)
        model, _, name = path.rpartition("/")
        if name == MANIFEST and model and (self.root / model).is_dir():
            return await self._manifest(model)
        target = self.root / path
        if target.is_file():
            return _File(target)
        return _not_found(path)

    async def _manifest(self, model: str) -> Response:
        async with self._locks.setdefault(model, asyncio.Lock()):  # one hashing pass for many callers
            checksums = self._checksums.get(model)
            if checksums is None:
                checksums = self._checksums[model] = ChecksumCache(self.root / model)
            checksums.reload()
            entries = await asyncio.to_thread(checksums.manifest)
        if not entries:
            return _not_found(f"{model}/{MANIFEST}", f"{model} holds no files")
        return JSONResponse([e.to_json() for e in entries])


def _not_found(path: str, why: str = "no such file or model folder here") -> Response:
    return JSONResponse({"error": f"{path}: {why}; GET / lists the models served"}, status_code=404)


def create_mirror_app(root: Path) -> Starlette:
    """The mirror's ASGI app over the model folders under root."""
    mirror = Mirror(root)
    return Starlette(
        routes=[
            Route("/", mirror.index, methods=["GET", "HEAD"]),
            Route("/{path:path}", mirror.get, methods=["GET", "HEAD"]),
        ]
    )


def serve_mirror(root: Path, host: str, port: int, log_level: str = "info") -> None:
    """Serve until interrupted."""
    import uvicorn

    uvicorn.run(create_mirror_app(root), host=host, port=port, log_level=log_level, lifespan="off")

"""`seekserve pull` from a `seekserve mirror serve` on loopback: throughput by connections, and resume.

    python benchmarks/pull.py                      # a 1 GiB folder, 1 / 4 / 8 connections
    python benchmarks/pull.py --size-mib 4096 --connections 1,8 --capped-mbs 0

The mirror runs in its own process (as on a real site) over a generated folder: config.json, one
large weight file (3/4 of the size) and two smaller ones. Each run pulls into an empty folder and
counts everything a pull does: manifest, ranged GETs, writes, the SHA-256 of every file, renames.
The source files sit in the page cache after the first run and the network is loopback, so the
uncapped figures are the client's and server's own ceiling on this machine's cores, not a disk's
or a link's. The capped runs serve each connection at most --capped-mbs MB/s (as one TCP stream
gets on a long path: a 4 MiB window over a 160 ms round trip is 26 MB/s), where parallel ranges
are what makes a pull fast. Then a pull is interrupted at half the bytes and run again: the
resumed run fetches only the rest. Prints a table and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from common import CACHE, REPO, machine, median, print_table, write_json
from seekserve.weights.config import PullConfig
from seekserve.weights.download import NullProgress
from seekserve.weights.manifest import hash_file
from seekserve.weights.pull import PullRequest, pull, pull_async

MIB = 1 << 20
MODEL = "bench/model"


def make_folder(root: Path, size_mib: int) -> Path:
    """config.json and three weight files of `size_mib` in all (generated once, then reused)."""
    folder = root / MODEL
    sizes = {"model-00001.safetensors": size_mib * 3 // 4, "model-00002.safetensors": size_mib // 8}
    sizes["model-00003.safetensors"] = size_mib - sum(sizes.values())
    if all((folder / n).is_file() and (folder / n).stat().st_size == s * MIB for n, s in sizes.items()):
        return root
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    block = os.urandom(MIB)
    for name, mib in sizes.items():
        with (folder / name).open("wb") as f:
            for i in range(mib):
                f.write(block[i % 251 :] + block[: i % 251])  # a distinct MiB each time
    return root


class Capped:
    """ASGI: each response's body paced to at most `bytes_per_s` (one slow TCP stream)."""

    def __init__(self, app: Any, bytes_per_s: float) -> None:
        self.app, self.bytes_per_s = app, bytes_per_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        start, sent = time.perf_counter(), 0

        async def paced(message: dict[str, Any]) -> None:
            nonlocal sent
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                await asyncio.sleep(max(0.0, sent / self.bytes_per_s - (time.perf_counter() - start)))
            await send(message)

        await self.app(scope, receive, paced)


def serve_capped(root: Path, port: int, mbs: float) -> None:
    import uvicorn

    from seekserve.weights.mirror import create_mirror_app

    app = Capped(create_mirror_app(root), mbs * 1e6)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def start_mirror(root: Path, capped_mbs: float = 0.0) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if capped_mbs:
        cmd = [sys.executable, __file__, "--serve-capped", str(root), str(port), str(capped_mbs)]
    else:
        cmd = [sys.executable, "-m", "seekserve", "mirror", "serve", str(root), "--port", str(port)]
        cmd += ["--log-level", "warning"]
    process = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{url}/{MODEL}/manifest.json", timeout=600).raise_for_status()  # hashes once
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the mirror did not start")


def timed_pull(url: str, dest: Path, connections: int) -> tuple[float, int]:
    shutil.rmtree(dest, ignore_errors=True)
    result = pull(PullRequest(MODEL, mirror=url, dest=dest), PullConfig(connections=connections))
    return result.seconds, result.fetched_bytes


class _StopAtHalf(NullProgress):
    def __init__(self) -> None:
        self.done = self.total = 0
        self.half = asyncio.Event()

    def begin(self, total_bytes: int, num_files: int) -> None:
        self.total = total_bytes

    def advance(self, num_bytes: int) -> None:
        self.done += num_bytes
        if self.done >= self.total // 2:
            self.half.set()


async def interrupted_pull(url: str, dest: Path, connections: int) -> int:
    """Start a pull and cancel it at half the bytes (as Ctrl-C does); the bytes it had fetched."""
    shutil.rmtree(dest, ignore_errors=True)
    progress = _StopAtHalf()
    task = asyncio.create_task(
        pull_async(PullRequest(MODEL, mirror=url, dest=dest), PullConfig(connections=connections), progress)
    )
    await progress.half.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return progress.done


def throughput(url: str, dest: Path, connections: list[int], runs: int, label: str) -> list[list[Any]]:
    rows = []
    for n in connections:
        timings = [timed_pull(url, dest, n) for _ in range(runs)]
        seconds = median([t for t, _ in timings])
        rows.append([f"{label}, {n} connections", seconds, timings[0][1] / 1e9 / seconds])
    return rows


def resume(url: str, dest: Path) -> tuple[list[Any], dict[str, Any]]:
    fetched_before = asyncio.run(interrupted_pull(url, dest, 8))
    resumed = pull(PullRequest(MODEL, mirror=url, dest=dest), PullConfig(connections=8))
    row = ["resume after half, 8 connections", resumed.seconds, resumed.fetched_bytes / 1e9 / resumed.seconds]
    record = {
        "fetched_before_interrupt": fetched_before,
        "fetched_on_resume": resumed.fetched_bytes,
        "seconds": resumed.seconds,
    }
    return row, record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--connections", default="1,4,8")
    ap.add_argument("--runs", type=int, default=3, help="runs of each uncapped setting (the median is shown)")
    ap.add_argument("--capped-mbs", type=float, default=25.0, help="MB/s per connection; 0: no capped runs")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "pull.json")
    ap.add_argument("--serve-capped", nargs=3, metavar=("ROOT", "PORT", "MBS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_capped:
        serve_capped(Path(args.serve_capped[0]), int(args.serve_capped[1]), float(args.serve_capped[2]))
        return
    root = make_folder(CACHE / "pull-mirror", args.size_mib)
    dest = CACHE / "pull-dest"
    connections = [int(c) for c in args.connections.split(",")]
    process, url = start_mirror(root)
    try:
        rows = throughput(url, dest, connections, args.runs, "loopback")
        row, record = resume(url, dest)
        rows.append(row)
    finally:
        process.terminate()
        process.wait(10)
    if args.capped_mbs:
        process, url = start_mirror(root, args.capped_mbs)
        try:
            rows += throughput(url, dest, connections, 1, f"{args.capped_mbs:g} MB/s per connection")
        finally:
            process.terminate()
            process.wait(10)
    big = root / MODEL / "model-00001.safetensors"
    start = time.perf_counter()
    hash_file(big)
    hash_s = time.perf_counter() - start
    rows.append(["SHA-256 of the largest file alone", hash_s, big.stat().st_size / 1e9 / hash_s])
    title = f"seekserve pull of {args.size_mib} MiB from a mirror on loopback"
    print_table(title, ["what", "s", "GB/s"], rows)
    print(
        f"resume: {record['fetched_before_interrupt'] / 1e9:.2f} GB fetched before the interrupt, "
        f"{record['fetched_on_resume'] / 1e9:.2f} GB on resume"
    )
    payload = {"machine": machine(), "size_mib": args.size_mib, "rows": rows, "resume": record}
    write_json(args.json, payload)


if __name__ == "__main__":
    main()

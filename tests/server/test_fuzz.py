"""Schema fuzzing: requests generated from /openapi.json, valid and not, never get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from server.live import LiveServer, engine_loader, start_server

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzz_server(llama_dir: Path) -> Iterator[LiveServer]:
    """A short context and a small batch keep every generated request cheap."""
    live = start_server(engine_loader(llama_dir, max_model_len=32, max_num_seqs=8))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case: Any, fuzz_server: LiveServer) -> None:
    response = case.call(timeout=30)
    case.validate_response(response, checks=[not_a_server_error])

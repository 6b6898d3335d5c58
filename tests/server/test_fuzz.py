"""Schema fuzzing: requests generated from the server's /openapi.json, valid and not, never get a
5xx, and every 4xx is an OpenAI error object. (The gateway's: tests/gateway/test_openapi.py.)"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error

from fuzzing import budget, openai_error_shape
from server.live import LiveServer

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def api_schema(fuzz_server: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@budget(MAX_EXAMPLES)
def test_no_generated_request_gets_a_server_error(case: Any, fuzz_server: LiveServer) -> None:
    response = case.call(timeout=60)
    case.validate_response(response, checks=[not_a_server_error, openai_error_shape])
    fuzz_server.wait_idle(timeout_s=60)

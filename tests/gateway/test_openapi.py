"""Schema fuzzing of the gateway: requests generated from its own /openapi.json, and from the server's
schema sent through it, valid and not, never get a 5xx, and every 4xx is an OpenAI error object.

A real gateway process runs in front of the tiny model's server (the session's `fuzz_server`), so a
request the gateway lets through is answered by a real engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from fuzzing import budget, openai_error_shape
from gateway.processes import GatewayProcess, gateway_config, gateway_processes
from server.live import LiveServer

MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def gateway(fuzz_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = gateway_config(
        [{"name": "server", "url": f"{fuzz_server.base_url}/v1"}],
        timeouts={"first_byte_s": 60, "inter_token_s": 60},
    )
    with gateway_processes([config], tmp_path_factory.mktemp("gateway-openapi")) as (process,):
        yield process


@pytest.fixture(scope="module")
def gateway_schema(gateway: GatewayProcess) -> Any:
    return schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")


@pytest.fixture(scope="module")
def server_schema(fuzz_server: LiveServer) -> Any:
    """The server's completion routes, with the coverage phase left to tests/server/test_fuzz.py."""
    config = SchemathesisConfig()
    config.projects.default.phases.coverage.enabled = False
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json", config=config)
    return schema.include(path_regex=r"^/v1/(chat/)?completions$")


gateway_routes = schemathesis.pytest.from_fixture("gateway_schema")
server_routes = schemathesis.pytest.from_fixture("server_schema")


@gateway_routes.parametrize()
@budget(MAX_EXAMPLES)
def test_no_request_generated_from_the_gateway_schema_gets_a_server_error(case: Any) -> None:
    response = case.call(timeout=60)
    case.validate_response(response, checks=[not_a_server_error, openai_error_shape])


@server_routes.parametrize()
@budget(MAX_EXAMPLES)
def test_no_request_generated_from_the_server_schema_gets_a_server_error_through_the_gateway(
    case: Any, gateway: GatewayProcess
) -> None:
    if isinstance(case.body, dict):
        case.body["model"] = (
            "tiny"  # the gateway needs a model it routes; the server's schema has it optional
        )
    response = case.call(base_url=gateway.url, timeout=60)
    case.validate_response(response, checks=[not_a_server_error, openai_error_shape])


def test_the_document_names_the_served_model(gateway: GatewayProcess) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    body = document["paths"]["/v1/completions"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert body["properties"]["model"] == {"type": "string", "enum": ["tiny"]}
    assert document["openapi"] == "3.1.0" and "securitySchemes" not in document["components"]

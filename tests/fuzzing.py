"""What every fuzz test shares: its budget, and the check that 4xx answers are OpenAI errors.

A budget is a fixed number of examples, derandomized, without an example database: CI runs the
same examples on every run (a failure reproduces from the commit alone) in a bounded time; raise
`max_examples` locally to search further.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, Response
from schemathesis.checks import CheckContext

__all__ = ["budget", "openai_error_shape"]


def budget(max_examples: int) -> settings:
    """Settings for a fuzz test: `max_examples` fixed examples, no deadline (shared CI machines vary)."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@schemathesis.check
def openai_error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx answer is OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, (
        f"a {response.status_code} without an error object"
    )
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str), error
    assert all(error[k] is None or isinstance(error[k], str) for k in ("param", "code")), error
    return None

"""The budget of every hypothesis test: a fixed number of examples, derandomized, no example database.

CI runs the same examples on every run (a failure reproduces from the commit alone) in a bounded
time; raise `max_examples` locally to search further.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

__all__ = ["budget"]


def budget(max_examples: int) -> settings:
    """Settings for a fuzz test: `max_examples` fixed examples, no deadline (shared CI machines vary)."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )

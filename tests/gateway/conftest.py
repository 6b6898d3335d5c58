from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.services import memcached_server, redis_server


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def memcached_url() -> Iterator[str]:
    with memcached_server() as url:
        yield url

"""Shared fixtures: the core runs its tests on both anyio backends; Redis tests get a prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every anyio test on asyncio and on trio."""
    return str(request.param)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of its own on the real Redis (started if need be); its keys go afterwards."""
    from tests import redis_server

    redis_server.ensure_redis()
    prefix = redis_server.new_prefix()
    try:
        yield prefix
    finally:
        redis_server.delete_prefix(prefix)

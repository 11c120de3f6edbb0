"""RedisStore: the shared store conformance suite, plus what only a real Redis can show."""

from __future__ import annotations

import pytest

from jobwarden.store import JobStore
from jobwarden.store.redis import RedisStore
from tests.redis_server import URL
from tests.store.conformance import StoreConformance


class TestRedisStore(StoreConformance):
    """The conformance suite against a Redis store under a key prefix of its own."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        """redis-py is asyncio-only."""
        return "asyncio"

    @pytest.fixture(autouse=True)
    def _prefix(self, redis_prefix: str) -> None:
        self.prefix = redis_prefix

    async def make_store(self) -> JobStore:
        return RedisStore(f"{URL}?prefix={self.prefix}")

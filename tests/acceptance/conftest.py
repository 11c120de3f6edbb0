"""Acceptance tests drive real server processes over loopback sockets."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp is asyncio-only: the acceptance tests run on asyncio alone."""
    return "asyncio"

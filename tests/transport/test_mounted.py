"""create_app mounted under a prefix in another aiohttp application, served over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from jobwarden import Supervisor, builtin
from jobwarden.transport import ServerSettings, create_app
from jobwarden.transport.openapi import build_spec
from tests.transport.conftest import KEYRING, auth, served

pytestmark = pytest.mark.anyio
PREFIX = "/jobs-api"


@asynccontextmanager
async def mounted(settings: ServerSettings, *, host_limit: int = 1 << 20) -> AsyncIterator[str]:
    """A host app (with its own body limit) holding jobwarden under PREFIX; yields its base URL."""
    async with Supervisor(plugins=[builtin]) as sup:
        host = web.Application(client_max_size=host_limit)
        host.add_subapp(PREFIX, create_app(sup, settings, KEYRING))
        async with served(host) as base:
            yield base


async def test_openapi_names_the_mount_point_as_its_server() -> None:
    """Mounted, /openapi.json says its paths sit under the prefix; unmounted it names none."""
    async with (
        mounted(ServerSettings()) as base,
        aiohttp.ClientSession() as http,
        http.get(f"{base}{PREFIX}/openapi.json") as response,
    ):
        spec = await response.json()
    assert spec["servers"] == [{"url": PREFIX}]
    assert "/v1/jobs" in spec["paths"]
    assert "servers" not in build_spec()


async def test_jobs_and_websocket_work_under_the_prefix() -> None:
    """A submit and the job's websocket stream answer under the prefix, as unmounted."""
    async with (
        mounted(ServerSettings()) as base,
        aiohttp.ClientSession(headers=auth("alice")) as http,
    ):
        body = {"tool": "builtin.echo", "input": {"text": "hi"}}
        async with http.post(f"{base}{PREFIX}/v1/jobs?wait=5", json=body) as response:
            assert response.status == 200
            job = (await response.json())["job"]
        async with http.ws_connect(f"{base}{PREFIX}/v1/jobs/{job['id']}/events") as ws:
            types = [message.json()["type"] async for message in ws]
    assert types[-1] == "jobwarden.job.succeeded"


async def test_the_apps_own_body_limit_holds_below_the_hosts() -> None:
    """A body over jobwarden's max_body_bytes is a 413 envelope even when the host allows more."""
    settings = ServerSettings(max_body_bytes=1_000)
    async with mounted(settings) as base, aiohttp.ClientSession(headers=auth("alice")) as http:
        body = {"tool": "builtin.echo", "input": {"text": "x" * 2_000}}
        async with http.post(f"{base}{PREFIX}/v1/jobs", json=body) as response:
            assert response.status == 413
            assert (await response.json())["error"]["type"] == "payload_too_large"


async def test_the_apps_own_body_limit_holds_above_the_hosts() -> None:
    """A body within jobwarden's max_body_bytes is accepted even when the host allows less."""
    settings = ServerSettings(max_body_bytes=100_000)
    async with (
        mounted(settings, host_limit=1_000) as base,
        aiohttp.ClientSession(headers=auth("alice")) as http,
    ):
        body = {"tool": "builtin.echo", "input": {"text": "x" * 2_000}}
        async with http.post(f"{base}{PREFIX}/v1/jobs?wait=5", json=body) as response:
            assert response.status == 200

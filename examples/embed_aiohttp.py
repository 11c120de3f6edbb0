"""Mount jobwarden's API inside an existing aiohttp application, under ``/jobs-api``.

Run it: ``python examples/embed_aiohttp.py``. It serves the combined application on a free
loopback port, calls it as a client would (the host app's own route, a submit, a websocket, the
OpenAPI document), then stops and exits 0. To keep serving, replace ``exercise`` with
``web.run_app(build_app())``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web

from jobwarden import Supervisor, builtin
from jobwarden.transport import KeyRing, ServerSettings, create_app

PREFIX = "/jobs-api"
KEYS = KeyRing.from_toml(
    """
[[keys]]
key = "example-key-1"
principal = "host-app"
scopes = ["jobs:submit", "jobs:read", "jobs:cancel"]
"""
)


async def hello(request: web.Request) -> web.Response:
    """The host application's own route: jobwarden lives beside it, not in front of it."""
    return web.json_response({"app": "host"})


def build_app() -> web.Application:
    """The host app; jobwarden's sub-app is added once its supervisor has started."""
    app = web.Application()
    app.router.add_get("/", hello)
    supervisor = Supervisor(plugins=[builtin])
    # create_app only serves the supervisor: starting and stopping it is the host's job. A
    # cleanup context starts it before the first request and stops it after the last one.
    jobs = create_app(supervisor, ServerSettings(max_body_bytes=64 * 1024), KEYS)

    async def supervise(app: web.Application) -> AsyncIterator[None]:
        async with supervisor:
            yield

    app.cleanup_ctx.append(supervise)
    app.add_subapp(PREFIX, jobs)
    return app


async def exercise(base: str) -> None:
    """What a client of the combined app sees: every jobwarden path sits under the prefix."""
    headers = {"Authorization": "Bearer example-key-1"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base}/") as response:
            print("host route:", await response.json())
        submit = {"tool": "builtin.echo", "input": {"text": "mounted"}}
        async with http.post(f"{base}{PREFIX}/v1/jobs?wait=5", json=submit) as response:
            job = (await response.json())["job"]
            print("submit:", response.status, job["state"], job["result"])
        # The job's event stream replays its history and closes after the terminal event.
        async with http.ws_connect(f"{base}{PREFIX}/v1/jobs/{job['id']}/events") as ws:
            async for message in ws:
                print("event:", message.json()["type"])
        async with http.get(f"{base}{PREFIX}/openapi.json") as response:
            spec = await response.json()
            print("openapi servers:", spec["servers"])
        # jobwarden's own body limit holds under the host app, whose default is 1 MiB.
        big = {"tool": "builtin.echo", "input": {"text": "x" * 100_000}}
        async with http.post(f"{base}{PREFIX}/v1/jobs", json=big) as response:
            print("too large:", response.status, (await response.json())["error"]["type"])


async def main() -> None:
    runner = web.AppRunner(build_app())
    await runner.setup()
    try:
        sock = socket.create_server(("127.0.0.1", 0))  # port 0: any free port
        await web.SockSite(runner, sock).start()
        await exercise(f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    # jobwarden logs through structlog (a failing tool logs a warning with its traceback): send it
    # where the host program's logs go. Here: warnings and worse, to stderr.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    asyncio.run(main())

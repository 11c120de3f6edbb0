"""Follow jobwarden's events over a websocket, and resume after a disconnect without a gap.

Run it: ``python examples/ws_client.py``. It starts a server in this process (so it needs
nothing else running), submits jobs over HTTP, reads part of the event stream, drops the
connection, resumes from the last offset it saw, and checks that it got every event exactly
once. It exits 0 when done. Point ``follow`` at a real server's URL to use it as a client.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Any

import aiohttp
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from jobwarden import Supervisor, builtin
from jobwarden.transport import create_app

JOBS = 5  # each echo job makes three events: queued, running, succeeded


async def follow(base: str, since: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Read up to ``limit`` events after offset ``since``; return them and where to resume.

    The server's answer to a client that reads too slowly is close code 1013 (try again later);
    shutdown is 1001. Both mean: reconnect with ``since`` = the last offset seen.
    """
    events: list[dict[str, Any]] = []
    last = since
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/v1/events", heartbeat=30) as ws,
    ):
        # Filters go in the subscribe frame: job, tool, state, since (or in the query string).
        await ws.send_json({"op": "subscribe", "tool": "builtin.echo", "since": since})
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                break
            event = message.json()
            if event["type"] == "subscribed":
                # Not an event: where the stream starts. Resuming from it loses nothing even if
                # the connection drops before the first event.
                last = event["since"]
                continue
            if event["type"] == "jobwarden.stream.reset":
                # The history we asked for was purged: the events before first_retained are gone.
                print("reset: resuming from", event["data"]["first_retained"])
            events.append(event)
            last = int(event["id"])  # ids are strictly increasing offsets
            if len(events) == limit:
                break  # as if the network dropped: leaving the block closes the socket
    if ws.close_code in (WSCloseCode.TRY_AGAIN_LATER, WSCloseCode.GOING_AWAY):
        print("server closed with", ws.close_code, "- resume with since =", last)
    return events, last


async def submit_jobs(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for n in range(JOBS):
            body = {"tool": "builtin.echo", "input": {"text": f"job {n}"}}
            async with http.post(f"{base}/v1/jobs?wait=5", json=body) as response:
                assert response.status == 200, await response.text()


async def main() -> None:
    async with Supervisor(plugins=[builtin]) as sup:
        # No keys: the API is open, which is only acceptable on loopback, as here.
        runner = web.AppRunner(create_app(sup))
        await runner.setup()
        try:
            sock = socket.create_server(("127.0.0.1", 0))
            await web.SockSite(runner, sock).start()
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            await submit_jobs(base)
            first, resume_at = await follow(base, since=0, limit=7)
            print("first connection:", [e["id"] for e in first])
            rest, _ = await follow(base, since=resume_at, limit=3 * JOBS - len(first))
            print("after resume:   ", [e["id"] for e in rest])
            offsets = [int(e["id"]) for e in first + rest]
            assert offsets == sorted(set(offsets)), "duplicates or disorder"
            assert len(offsets) == 3 * JOBS, "a gap"
            print("every event once, in order:", len(offsets), "events")
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

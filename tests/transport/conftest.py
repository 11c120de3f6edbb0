"""The transport's acceptance harness: a real server on a free port, API keys, plugins, helpers.

``serve()`` starts a ``Supervisor`` and ``create_app`` behind ``aiohttp.web.AppRunner`` +
``TCPSite`` on 127.0.0.1 port 0, and yields a ``Server`` holding the supervisor, the base URL and
an ``aiohttp.ClientSession``. Tests talk to it over real sockets only.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    MutableMapping,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import aiohttp
import anyio
import msgspec
import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from jobwarden import Plugin, Supervisor, ToolContext, builtin
from jobwarden.transport import KeyRing, ServerSettings, create_app, server_logger
from jobwarden.transport.context import SETTINGS
from tests.fakes import Gates, fake_plugin
from tests.transport.openapi_check import OpenApiChecker

T = TypeVar("T")

KEYS = {
    "alice": "alice-key-0001",
    "bob": "bob-key-000002",
    "reader": "reader-key-003",
    "admin": "admin-key-0004",
}
FULL = '["jobs:submit", "jobs:read", "jobs:cancel"]'
KEYS_TOML = f"""
[[keys]]
key = "{KEYS["alice"]}"
principal = "alice"
scopes = {FULL}

[[keys]]
key = "{KEYS["bob"]}"
principal = "bob"
scopes = {FULL}

[[keys]]
key = "{KEYS["reader"]}"
principal = "reader"
scopes = ["jobs:read"]

[[keys]]
key_sha256 = "{hashlib.sha256(KEYS["admin"].encode()).hexdigest()}"
principal = "admin"
scopes = ["admin"]
"""
KEYRING = KeyRing.from_toml(KEYS_TOML, source="tests")

ENVELOPE_FIELDS = {"type", "message", "details", "plugin", "tool", "job_id", "timestamp"}
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp is asyncio-only: the transport tests run on asyncio alone."""
    return "asyncio"


def auth(who: str) -> dict[str, str]:
    """The ``Authorization: Bearer`` header of principal ``who``."""
    return {"Authorization": f"Bearer {KEYS[who]}"}


# --- the `imaging` plugin: the seed routes' shape of input ------------------------------------


class ImageIn(msgspec.Struct, forbid_unknown_fields=True):
    """What the seed routes hand to a tool: the decoded image and its MIME type."""

    image_bytes: bytes
    mime_type: str


class ImageInfo(msgspec.Struct):
    """How big the image was and what it claimed to be."""

    size: int
    mime_type: str


class ImageDigest(msgspec.Struct):
    """The SHA-256 of the image."""

    sha256: str


class UnreadableImage(ValueError):
    """Raised by ``imaging.reject`` on purpose."""


def imaging_plugin(gates: Gates) -> Plugin:
    """A stand-in named like the shipped ``imaging`` plugin, whose FIRST declared tool is
    ``describe`` and whose tools the seed-route tests steer (test_seed_imaging.py runs the real
    one)."""
    plugin = Plugin("imaging", version="2.1.0", description="Looks at images.")

    @plugin.tool(timeout=10)
    async def describe(inp: ImageIn, ctx: ToolContext) -> ImageInfo:
        """Size and MIME type of the image."""
        return ImageInfo(size=len(inp.image_bytes), mime_type=inp.mime_type)

    @plugin.tool(timeout=10)
    async def digest(inp: ImageIn, ctx: ToolContext) -> ImageDigest:
        """SHA-256 of the image."""
        return ImageDigest(sha256=hashlib.sha256(inp.image_bytes).hexdigest())

    @plugin.tool(timeout=30)
    async def hold(inp: ImageIn, ctx: ToolContext) -> ImageInfo:
        """Wait at the gate named by the MIME type, then describe the image."""
        await gates.pass_through(inp.mime_type)
        return ImageInfo(size=len(inp.image_bytes), mime_type=inp.mime_type)

    @plugin.tool(timeout=10)
    async def reject(inp: ImageIn, ctx: ToolContext) -> ImageInfo:
        """Always fail: the image cannot be read."""
        raise UnreadableImage(f"cannot read a {inp.mime_type}")

    return plugin


def default_plugins(gates: Gates) -> list[Plugin]:
    """builtin, the runtime tests' ``fake`` plugin and ``imaging``, all sharing ``gates``."""
    return [builtin, fake_plugin(gates), imaging_plugin(gates)]


# --- the server -------------------------------------------------------------------------------


@dataclass
class Server:
    """A running server: its supervisor, runner, base URL, an HTTP session, and the tools' gates."""

    sup: Supervisor
    runner: web.AppRunner
    base: str
    http: aiohttp.ClientSession
    gates: Gates
    stopped: bool = field(default=False)
    logs: list[MutableMapping[str, Any]] = field(default_factory=list)

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``, the Host header the server sees."""
        return self.base.removeprefix("http://")

    def url(self, path: str) -> str:
        """The absolute http:// URL of ``path``."""
        return self.base + path

    def ws_url(self, path: str) -> str:
        """The absolute ws:// URL of ``path``."""
        return "ws://" + self.host + path

    async def stop(self) -> None:
        """Stop the HTTP side as the CLI does (``runner.cleanup()``); the supervisor stays up."""
        if not self.stopped:
            self.stopped = True
            await self.runner.cleanup()

    async def submit(
        self,
        who: str | None,
        tool: str,
        input: Mapping[str, Any] | None = None,
        *,
        wait: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """POST /v1/jobs as ``who`` (None: no key) and return the job; asserts a 200 or 202."""
        body: dict[str, Any] = {"tool": tool, "input": dict(input or {}), **extra}
        params = {} if wait is None else {"wait": str(wait)}
        headers = auth(who) if who else {}
        async with self.http.post(
            self.url("/v1/jobs"), json=body, params=params, headers=headers
        ) as resp:
            payload = await resp.json()
            assert resp.status in (200, 202), payload
            job: dict[str, Any] = payload["job"]
            assert resp.status == (200 if job["state"] in TERMINAL else 202)
            return job

    async def get_json(self, who: str | None, path: str, status: int = 200, **kw: Any) -> Any:
        """GET ``path`` as ``who`` and return the JSON body; asserts the status."""
        headers = auth(who) if who else {}
        async with self.http.get(self.url(path), headers=headers, **kw) as resp:
            payload = await resp.json()
            assert resp.status == status, payload
            return payload

    async def job(self, who: str, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{id}."""
        body = await self.get_json(who, f"/v1/jobs/{job_id}")
        job: dict[str, Any] = body["job"]
        return job

    async def finished(self, job_id: str) -> dict[str, Any]:
        """Wait (on the supervisor, not a clock) until the job is terminal; return it over HTTP."""
        await self.sup.wait(job_id, timeout=10)
        return await self.job("admin", job_id)

    async def hold(self, who: str | None, key: str, **extra: Any) -> dict[str, Any]:
        """Submit ``fake.gate`` with ``key`` and wait until it is running at that gate."""
        job = await self.submit(who, "fake.gate", {"key": key}, **extra)
        await self.gates.wait_entered(key)
        return job


@asynccontextmanager
async def serve(
    *,
    keys: KeyRing | None = KEYRING,
    settings: ServerSettings | None = None,
    plugins: Callable[[Gates], Iterable[Plugin]] = default_plugins,
    concurrency: int = 8,
    **supervisor_kw: Any,
) -> AsyncIterator[Server]:
    """A real server on a free port of 127.0.0.1; ``keys=None`` runs it open (no API keys).

    Teardown closes the client session first, then the runner, then the supervisor (which
    cancels any job still held at a gate). DESIGN.md: the last-resort middleware may turn an
    unexpected exception into a 500, but "the tests and the fuzz run must never see one" — so when
    the ``async with`` block exits without an exception, teardown fails the test if the server
    logged an unhandled error or answered a 500 meanwhile, or if any JSON answer did not match
    what /openapi.json documents for its route and status.
    """
    gates = Gates()
    checker = OpenApiChecker()
    with capture_logs(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.format_exc_info]
    ) as logs:
        async with Supervisor(
            plugins=plugins(gates), concurrency=concurrency, shutdown_grace_s=0, **supervisor_kw
        ) as sup:
            app = create_app(sup, settings, keys)
            app.middlewares.insert(0, checker.middleware)
            # As jobwarden.server runs it: aiohttp's parse errors logged through server_logger,
            # connections that never finish a request closed after read_timeout_s.
            runner = web.AppRunner(
                app,
                access_log=None,
                logger=server_logger(),
                keepalive_timeout=app[SETTINGS].read_timeout_s,
            )
            await runner.setup()
            server: Server | None = None
            try:
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                host, port = runner.addresses[0][:2]
                async with aiohttp.ClientSession() as http:
                    server = Server(sup, runner, f"http://{host}:{port}", http, gates, logs=logs)
                    yield server
            finally:
                if server is not None:
                    await server.stop()
                else:
                    await runner.cleanup()
    internal = [
        entry
        for entry in logs
        if entry.get("event") == "unhandled error"
        or (entry.get("event") == "request" and entry.get("status") == 500)
    ]
    assert not internal, f"the server hit its last-resort error handler: {internal}"
    assert not checker.problems, "responses that break /openapi.json:\n" + "\n".join(
        checker.problems
    )


# --- assertions -------------------------------------------------------------------------------


def check_envelope(body: Any, error_type: str) -> dict[str, Any]:
    """Assert ``body`` is ``{"error": {...}}`` with every envelope field and ``error_type``."""
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ENVELOPE_FIELDS, error
    assert error["type"] == error_type, error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    assert isinstance(error["details"], dict), error
    datetime.fromisoformat(error["timestamp"].replace("Z", "+00:00"))
    return dict(error)


async def expect_error(
    resp: aiohttp.ClientResponse, status: int, error_type: str
) -> dict[str, Any]:
    """Assert an error response: ``status``, JSON content type, the envelope, no traceback."""
    text = await resp.text(errors="replace")
    assert resp.status == status, (resp.status, text[:500])
    assert resp.content_type == "application/json", (resp.content_type, text[:500])
    assert "Traceback" not in text
    assert 'File "' not in text
    return check_envelope(msgspec.json.decode(text), error_type)


# --- server-sent events -----------------------------------------------------------------------


@dataclass
class SseEvent:
    """One server-sent event: its id, event name and decoded data."""

    id: str | None
    event: str | None
    data: Any


class Lines(Protocol):
    """What an SSE stream is read from: an aiohttp response's content, or an asyncio stream."""

    async def readline(self) -> bytes: ...


async def next_sse(resp: aiohttp.ClientResponse) -> SseEvent | None:
    """The next event of an SSE response (comments skipped), or None at the end of the stream."""
    return await next_sse_from(resp.content)


async def next_sse_from(lines: Lines) -> SseEvent | None:
    """``next_sse``, reading the stream's lines from ``lines``.

    As EventSource does, it dispatches no event for a block without data (the stream's opening
    ``id:`` line): ``sse_start`` reads that one.
    """
    fields: dict[str, list[str]] = {}
    while True:
        with anyio.fail_after(10):
            raw = await lines.readline()
        if not raw:
            return None
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in fields:
                data = "\n".join(fields["data"])
                ids, events = fields.get("id"), fields.get("event")
                return SseEvent(
                    id=ids[-1] if ids else None,
                    event=events[-1] if events else None,
                    data=msgspec.json.decode(data) if data else None,
                )
            fields.clear()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))


def is_start(frame: Any) -> bool:
    """Whether a decoded websocket frame is a subscription's ``subscribed`` notice."""
    return (
        isinstance(frame, dict)
        and set(frame) == {"type", "since"}
        and frame["type"] == "subscribed"
    )


async def receive_json(ws: aiohttp.ClientWebSocketResponse) -> Any:
    """The next websocket frame other than a ``subscribed`` notice, decoded (bounded wait)."""
    while is_start(frame := await ws.receive_json(timeout=10)):
        pass
    return frame


async def sse_start(resp: aiohttp.ClientResponse) -> int:
    """The offset an SSE stream says it starts after: its first block, one ``id:`` line alone
    (comments before it skipped)."""
    block: list[str] = []
    while True:
        with anyio.fail_after(10):
            raw = await resp.content.readline()
        assert raw, f"the stream ended after {block}"
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            continue
        if not line:
            break
        block.append(line)
    assert len(block) == 1, block
    assert block[0].startswith("id: "), block
    return int(block[0].removeprefix("id: "))


async def read_sse_until(
    resp: aiohttp.ClientResponse, stop: Callable[[SseEvent], bool]
) -> list[SseEvent]:
    """SSE events up to and including the first one ``stop`` accepts."""
    got: list[SseEvent] = []
    while True:
        event = await next_sse(resp)
        assert event is not None, f"stream ended early after {[e.id for e in got]}"
        got.append(event)
        if stop(event):
            return got


async def slow_socket(srv: Server) -> socket.socket:
    """A connected TCP socket with a tiny, fixed receive buffer (so the kernel holds little)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    host, port = srv.host.split(":")
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return sock


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """``app`` served on a free port of 127.0.0.1 until the block ends; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        sock = socket.create_server(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


async def big_jobs_until_a_reader_is_dropped(
    srv: Server, seen_end: Callable[[str], Awaitable[list[T]]]
) -> list[T]:
    """Submit ``builtin.echo`` jobs whose results are 256 KiB, one at a time, each once
    ``seen_end(job_id)`` returned (a fast reader saw it end), until the server dropped one of its
    two subscribers (a slow reader's buffers filled); all that ``seen_end`` returned, in order."""
    seen: list[T] = []
    submitted = 0
    while srv.sup.statistics().subscribers == 2:
        assert submitted < 160, "the slow reader was never dropped"
        text = os.urandom(128 * 1024).hex() + str(submitted)
        job = await srv.submit("alice", "builtin.echo", {"text": text})
        seen += await seen_end(job["id"])
        submitted += 1
    return seen

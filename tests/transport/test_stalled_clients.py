"""Clients that never finish a request, over raw sockets: each gives its connection back after
``read_timeout_s`` (aiohttp's own default would hold it for an hour), and a stalled body is
answered 400 with no server error."""

from __future__ import annotations

import asyncio
import logging

import anyio
import msgspec
import pytest

from jobwarden.transport import ServerSettings
from tests.transport.conftest import Server, check_envelope, serve
from tests.transport.test_bad_http import ECHO, access, post, serious, split

pytestmark = pytest.mark.anyio

# Short, so that the tests end soon: only for connections that never complete their headers,
# which no test expects an answer on; nothing below waits on a clock for the timeout.
SETTINGS = ServerSettings(read_timeout_s=0.2)
# aiohttp's keep-alive timer starts when the connection opens, so a test that needs an answer
# first gives a loaded machine time to parse the head before the connection is closed.
ANSWERED = ServerSettings(read_timeout_s=3.0)
HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: test\r\n\r\n"


async def connect(srv: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A new raw connection to the server."""
    host, port = srv.host.split(":")
    return await asyncio.open_connection(host, int(port))


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """All the server sends until it closes the connection (a bounded wait)."""
    with anyio.fail_after(10):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def response(reader: asyncio.StreamReader) -> bytes:
    """One whole response, framed by its Content-Length (a bounded wait)."""
    with anyio.fail_after(10):
        head = await reader.readuntil(b"\r\n\r\n")
        _, headers, _ = split(head)
        return head + await reader.readexactly(int(headers["content-length"]))


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /v1/health HTTP/1.1\r\nHost: test\r\nX-Pad: "],
    ids=["nothing", "part-of-the-headers"],
)
async def test_a_connection_that_never_completes_its_headers_is_closed(sent: bytes) -> None:
    """A connection that sends nothing, or never ends its headers, is closed with no answer."""
    async with serve(settings=SETTINGS) as srv:
        reader, writer = await connect(srv)
        try:
            writer.write(sent)
            await writer.drain()
            answer = await closed_by_server(reader)
        finally:
            writer.close()
    assert answer == b""


async def test_headers_trickled_byte_by_byte_do_not_keep_the_connection_open() -> None:
    """A slowloris client, still sending a header byte now and then, is closed all the same:
    the time counts from when the connection opened, not from the last byte."""
    async with serve(settings=SETTINGS) as srv:
        reader, writer = await connect(srv)

        async def trickle() -> None:
            writer.write(b"GET /v1/health HTTP/1.1\r\nHost: test\r\nX-Pad: ")
            while True:
                writer.write(b"a")
                # The attacker's pace, several bytes within each read_timeout_s.
                await anyio.sleep(SETTINGS.read_timeout_s / 4)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(trickle)
                answer = await closed_by_server(reader)
                tg.cancel_scope.cancel()
        finally:
            writer.close()
    assert answer == b""


async def test_an_idle_keep_alive_connection_is_closed_after_its_response() -> None:
    """A kept-alive connection is answered, then closed once it stays idle."""
    async with serve(settings=ANSWERED) as srv:
        reader, writer = await connect(srv)
        try:
            writer.write(HEALTH)
            first = await response(reader)
            rest = await closed_by_server(reader)
        finally:
            writer.close()
    assert split(first)[0] == 200
    assert rest == b""


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/analyze-execution/async"])
async def test_a_body_that_stops_coming_is_a_400_envelope(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A body that stops short of its Content-Length (the client still connected) answers 400
    invalid_request saying so, creates no job and logs no error."""
    caplog.set_level(logging.INFO)
    async with serve(settings=ANSWERED) as srv:
        reader, writer = await connect(srv)
        try:
            writer.write(post(path, ECHO[:20], length=100))
            await writer.drain()
            answer = await response(reader)
        finally:
            writer.close()
        jobs = await srv.get_json("admin", "/v1/jobs")
        statuses = access(srv.logs)
    status, _, body = split(answer)
    assert status == 400, answer
    error = check_envelope(msgspec.json.decode(body), "invalid_request")
    assert error["message"] == (
        f"the body did not all arrive within {ANSWERED.read_timeout_s:g} s: send it without pausing"
    )
    assert jobs["jobs"] == []
    assert statuses[0] == 400
    assert serious(caplog) == []

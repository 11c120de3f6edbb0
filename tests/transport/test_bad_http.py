"""Requests broken below JSON, sent over raw sockets: bodies that do not decode or never end,
and requests aiohttp's HTTP parser refuses. Each is a 400 (or nothing, for a client gone),
and the server logs no error and no traceback for them."""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib
from collections.abc import MutableMapping
from typing import Any

import msgspec
import pytest

from jobwarden.transport.server_logger import NAME, server_logger
from tests.transport.conftest import KEYS, Server, check_envelope, serve

pytestmark = pytest.mark.anyio

ECHO = b'{"tool": "builtin.echo", "input": {"text": "x"}}'
SEED = b'{"plugin": "imaging", "image": "", "mime_type": "image/png"}'


def post(path: str, body: bytes, *headers: str, length: int | None = None) -> bytes:
    """A POST of ``body`` as alice, as raw bytes, with extra header lines; the connection closes
    after it."""
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: test",
        f"Authorization: Bearer {KEYS['alice']}",
        "Content-Type: application/json",
        f"Content-Length: {len(body) if length is None else length}",
        "Connection: close",
        *headers,
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


async def exchange(srv: Server, request: bytes, *, half_close: bool = False) -> bytes:
    """Send ``request`` on a new connection (then shut the write side, if ``half_close``) and
    return all the server sent back until it closed the connection."""
    host, port = srv.host.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        if half_close:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """An HTTP/1.x answer's status, headers (lower-cased names) and body."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def serious(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The stdlib records at warning or above, or carrying a traceback."""
    return [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def access(logs: list[MutableMapping[str, Any]]) -> list[Any]:
    """The statuses of the access log lines."""
    return [entry["status"] for entry in logs if entry.get("event") == "request"]


UNDECODABLE = "the body could not be decoded: Can not decode content-encoding: "
BAD_BODIES = [
    ("gzip", "/v1/jobs", ECHO, "gzip", UNDECODABLE + "gzip"),
    ("deflate", "/v1/jobs", b"\x78\x9c" + ECHO, "deflate", UNDECODABLE + "deflate"),
    # aiohttp decodes what there is; the JSON it gets then ends early.
    ("truncated-gzip", "/v1/jobs", gzip.compress(ECHO)[:-12], "gzip", "invalid request body: "),
    ("seed-gzip", "/v1/analyze-execution", SEED, "gzip", UNDECODABLE + "gzip"),
    ("seed-async-gzip", "/v1/analyze-execution/async", SEED, "gzip", UNDECODABLE + "gzip"),
]


@pytest.mark.parametrize(
    ("path", "body", "encoding", "message"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
async def test_a_body_that_does_not_decode_is_a_400_envelope(
    path: str, body: bytes, encoding: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A body its Content-Encoding cannot decode answers 400 invalid_request ("the body could
    not be decoded"), creates no job, and logs no error or traceback."""
    caplog.set_level(logging.INFO)
    async with serve() as srv:
        answer = await exchange(srv, post(path, body, f"Content-Encoding: {encoding}"))
        jobs = await srv.get_json("admin", "/v1/jobs")
        statuses = access(srv.logs)
    status, headers, payload = split(answer)
    assert (status, headers["content-type"]) == (400, "application/json"), answer
    error = check_envelope(msgspec.json.decode(payload), "invalid_request")
    assert error["message"].startswith(message), error
    assert jobs["jobs"] == []
    assert statuses[0] == 400
    assert serious(caplog) == []


async def test_a_gzip_body_that_decodes_is_accepted() -> None:
    """A well-formed gzip or deflate body is decoded and submitted as usual."""
    async with serve() as srv:
        answers = [
            split(await exchange(srv, post("/v1/jobs", packed, f"Content-Encoding: {name}")))
            for name, packed in (("gzip", gzip.compress(ECHO)), ("deflate", zlib.compress(ECHO)))
        ]
    assert [status for status, _, _ in answers] == [202, 202]
    assert [msgspec.json.decode(body)["job"]["tool"] for _, _, body in answers] == [
        "builtin.echo"
    ] * 2


async def test_a_client_leaving_before_its_body_ended_is_no_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that announces 100 bytes, sends 20 and shuts its side is answered nothing (it
    is gone), logged as a 400 in the access log, with no error and no traceback."""
    caplog.set_level(logging.INFO)
    async with serve() as srv:
        answer = await exchange(srv, post("/v1/jobs", ECHO[:20], length=100), half_close=True)
        after = await srv.submit("alice", "builtin.echo", {"text": "after"}, wait=5)
        statuses = access(srv.logs)
        jobs = await srv.get_json("admin", "/v1/jobs")
    assert answer == b""
    assert statuses[0] == 400
    assert [job["id"] for job in jobs["jobs"]] == [after["id"]]
    assert serious(caplog) == []


UNPARSABLE = [
    ("path-too-long", b"GET /v1/health?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    (
        "header-too-long",
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    ),
    ("space-in-header-name", b"GET /v1/health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n"),
    (
        "duplicate-content-length",
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    ),
    ("raw-ff-in-path", b"GET /v1/\xff HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("brotli", post("/v1/jobs", ECHO, "Content-Encoding: br")),
    ("bad-chunk-size", post("/v1/jobs", b"zz\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked")),
]


@pytest.mark.parametrize(
    "request_bytes", [raw for _, raw in UNPARSABLE], ids=[n for n, _ in UNPARSABLE]
)
async def test_a_request_the_http_parser_refuses_is_one_info_line_without_traceback(
    request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A request aiohttp cannot parse gets its 400, and the server logs it as one info line
    naming the client and the parse error, with no error record and no traceback."""
    caplog.set_level(logging.INFO)
    async with serve() as srv:
        answer = await exchange(srv, request_bytes)
        health = await srv.get_json(None, "/v1/health")
    status, _, body = split(answer)
    assert status == 400, answer
    assert b"Traceback" not in body
    assert health["status"] == "ok"
    assert serious(caplog) == []
    lines = [r for r in caplog.records if r.name == NAME]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    message = lines[0].getMessage()
    assert "\n" not in message
    assert len(message) < 500
    assert message.startswith(
        "bad request from the client (Error handling request from 127.0.0.1): "
    )


def test_the_server_logger_lets_every_other_record_through_unchanged() -> None:
    """Records without a client's parse error (a server-side exception, plain messages) keep
    their level, message and traceback."""
    logger = server_logger()
    assert server_logger() is logger
    assert len(logger.filters) == 1
    try:
        raise RuntimeError("a bug in a handler")
    except RuntimeError as exc:
        bug = logger.makeRecord(
            NAME,
            logging.ERROR,
            __file__,
            1,
            "Error handling request from %s",
            ("::1",),
            (type(exc), exc, exc.__traceback__),
        )
    plain = logger.makeRecord(NAME, logging.WARNING, __file__, 1, "slow %s", ("x",), None)
    for record in (bug, plain):
        before = (record.levelno, record.getMessage(), record.exc_info)
        assert logger.filter(record)
        assert (record.levelno, record.getMessage(), record.exc_info) == before


@pytest.mark.parametrize(
    "header",
    [b"Authorization: Bearer \xff\xfe-key-0001", b"X-API-Key: caf\xe9-key-0001"],
    ids=["bearer", "x-api-key"],
)
@pytest.mark.parametrize("path", ["/v1/jobs", "/metrics", "/v1/analyze-execution/jobs"])
async def test_a_key_that_is_not_utf8_is_a_401(
    header: bytes, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A key header whose bytes are not UTF-8 (Latin-1 text, random bytes) is a key nobody has:
    401 unauthorized, and no error or traceback logged. Before, every route answered 500."""
    caplog.set_level(logging.INFO)
    request = b"\r\n".join(
        [f"GET {path} HTTP/1.1".encode(), b"Host: test", header, b"Connection: close"]
    )
    async with serve() as srv:
        answer = await exchange(srv, request + b"\r\n\r\n")
    status, headers, payload = split(answer)
    assert (status, headers["content-type"]) == (401, "application/json"), answer
    check_envelope(msgspec.json.decode(payload), "unauthorized")
    assert serious(caplog) == []

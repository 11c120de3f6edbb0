"""Requests aiohttp's HTTP parser refuses while they carry a credential: the line the server
logs about them quotes what was wrong, never the credential."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import http_parser
from aiohttp.http import HttpProcessingError

from jobwarden.transport.server_logger import NAME, server_logger
from tests.transport.conftest import serve
from tests.transport.test_bad_http import exchange, split

pytestmark = pytest.mark.anyio

SECRET = "TOPSECRETKEY123"
REDACTED = "<redacted>"
HOST = "Host: x\r\n"
CREDENTIALS = [
    ("authorization", f"GET /v1/jobs HTTP/1.1\r\n{HOST}Authorization: Bearer {SECRET}\x01\r\n\r\n"),
    ("x-api-key", f"GET /v1/jobs HTTP/1.1\r\n{HOST}X-API-Key: {SECRET}\x7f\r\n\r\n"),
    ("x-api-key-lower", f"GET /v1/jobs HTTP/1.1\r\n{HOST}x-api-key: {SECRET}\x7f\r\n\r\n"),
    ("api-key-query", f"GET /v1/events?api_key={SECRET}&x=\x01 HTTP/1.1\r\n{HOST}\r\n"),
    ("api-key-encoded", f"GET /v1/events?x=\x01&API%5Fkey={SECRET} HTTP/1.1\r\n{HOST}\r\n"),
    ("cookie", f"GET /v1/jobs HTTP/1.1\r\n{HOST}Cookie: s={SECRET}\x7f\r\n\r\n"),
    (
        "proxy-authorization",
        f"GET / HTTP/1.1\r\n{HOST}Proxy-Authorization: Basic {SECRET}\x01\r\n\r\n",
    ),
    ("space-before-colon", f"GET / HTTP/1.1\r\n{HOST}Authorization : Bearer {SECRET}\r\n\r\n"),
]


@pytest.mark.parametrize(
    "request_text", [r for _, r in CREDENTIALS], ids=[n for n, _ in CREDENTIALS]
)
async def test_a_refused_request_is_logged_without_its_credential(
    request_text: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A request the parser refuses is a 400 logged as one line in which the key, token or cookie
    it carried is replaced by ``<redacted>``."""
    caplog.set_level(logging.INFO)
    async with serve() as srv:
        answer = await exchange(srv, request_text.encode())
    assert split(answer)[0] == 400, answer
    lines = [r.getMessage() for r in caplog.records if r.name == NAME]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert REDACTED in lines[0]
    assert all(SECRET not in r.getMessage() for r in caplog.records), lines


def pure_python_refusal(request_text: str) -> HttpProcessingError:
    """The error aiohttp's pure-Python parser raises on ``request_text``."""
    loop = asyncio.new_event_loop()
    try:
        parser = http_parser.HttpRequestParserPy(
            None, loop, 2**16, max_line_size=8190, max_field_size=8190
        )
        with pytest.raises(HttpProcessingError) as raised:
            parser.feed_data(request_text.encode())
    finally:
        loop.close()
    return raised.value


@pytest.mark.parametrize(
    "request_text", [r for _, r in CREDENTIALS], ids=[n for n, _ in CREDENTIALS]
)
def test_the_pure_python_parsers_messages_lose_the_credential_too(
    request_text: str, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's pure-Python parser (``AIOHTTP_NO_EXTENSIONS``), which quotes a bad header value
    without its name, has its message redacted as well."""
    error = pure_python_refusal(request_text)
    record = logging.LogRecord(
        NAME,
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("::1",),
        (type(error), error, error.__traceback__),
    )
    caplog.set_level(logging.INFO, logger=NAME)
    assert server_logger().filter(record)
    assert SECRET not in record.getMessage()
    assert REDACTED in record.getMessage()

"""The logger aiohttp's connection handler writes to: client input is one line, not a traceback.

A request aiohttp cannot parse (a request line or header over its limits, a malformed header, a
duplicate Content-Length, a byte that may not be in a path, an unsupported Content-Encoding, a
body that does not decode) never reaches the application, its middlewares or its access log:
aiohttp answers it a text/plain 400 itself and logs ``Error handling request`` at error level
with the parse error's traceback (and ``Unhandled exception`` when it drains a request body
that failed to decode after the application answered). That is the client's doing, not the
server's: through ``server_logger()`` those records become one ``info`` line naming the
client's address and what was wrong, without the traceback; every other record passes as is.

aiohttp's message quotes the offending request line or header line, and a client's credentials
can be in it (a key sent with a stray control byte): the values of ``Authorization``,
``Proxy-Authorization``, ``X-API-Key`` and ``Cookie`` and of an ``api_key`` query parameter are
replaced by ``<redacted>`` before the line is logged.

aiohttp takes the logger as the documented ``logger`` argument of ``web.AppRunner`` (passed on
to each connection's ``RequestHandler``)::

    runner = web.AppRunner(app, access_log=None, logger=server_logger())

The 400 stays aiohttp's text/plain one: it is written by ``RequestHandler.handle_error``, and
aiohttp offers no public way to replace it (the handler class is fixed inside ``web.Server``).
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.http import HttpProcessingError
from aiohttp.http_exceptions import InvalidHeader

from jobwarden.errors import printable

NAME = "aiohttp.server.jobwarden"
"""A child of ``aiohttp.server``: its records reach whatever handles aiohttp's own."""
MAX_DETAIL = 300
"""Characters of the parse error's message kept (aiohttp quotes the offending line in it)."""
REDACTED = "<redacted>"
# A credential header's value runs to the end of its line in the message, where the quote that
# closes aiohttp's bytes repr is kept; "authorization" also matches Proxy-Authorization.
_SECRET_HEADER = re.compile(
    r"""((?:authorization|x-api-key|cookie)\s*:\s*)[^\n]*?(['"]?)$""", re.IGNORECASE | re.MULTILINE
)
# The key's value ends where the query's next parameter, the fragment or the URL does
# (``%5F`` is the same name percent-encoded, which the key lookup decodes).
_SECRET_QUERY = re.compile(r"(api(?:_|%5f)key=)[^&#\s]*", re.IGNORECASE)


def server_logger() -> logging.Logger:
    """The logger to hand aiohttp (``web.AppRunner(..., logger=server_logger())``)."""
    logger = logging.getLogger(NAME)
    if not any(isinstance(f, ClientInputFilter) for f in logger.filters):
        logger.addFilter(ClientInputFilter())
    return logger


def client_input_error(exc: BaseException | None) -> HttpProcessingError | None:
    """The parse error, if ``exc`` is aiohttp refusing what the client sent (directly, or as
    the ``RequestPayloadError`` wrapping it); None for anything else."""
    if isinstance(exc, web.RequestPayloadError):
        exc = exc.__cause__
    if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
        return exc
    return None


class ClientInputFilter(logging.Filter):
    """Rewrites a record carrying a client's parse error into one ``info`` line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record, lowered to info when it is about client input (and dropped then if
        the logger does not log info)."""
        error = client_input_error(record.exc_info[1] if record.exc_info else None)
        if error is None:
            return True
        detail = " ".join(printable(redact(error)).split())
        if len(detail) > MAX_DETAIL:
            detail = detail[:MAX_DETAIL] + "..."
        what = f"{type(error).__name__}: {detail}"
        record.msg = f"bad request from the client ({record.getMessage()}): {what}"
        record.args = None
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.exc_info, record.exc_text = None, None
        # The level was checked before the filter ran: a logger set above info drops it.
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def redact(error: HttpProcessingError) -> str:
    """The parse error's message with the client's credentials in it replaced by ``REDACTED``."""
    if isinstance(error, InvalidHeader) and _lone_value(error.args[0]):
        # aiohttp's pure-Python parser quotes a header value alone, without its name: a value
        # is all it quotes holding a control character, and whose value it is cannot be told.
        return f"Invalid HTTP header: {REDACTED} (a value with a control character)"
    text = _SECRET_HEADER.sub(rf"\1{REDACTED}\2", str(error.message))
    return _SECRET_QUERY.sub(rf"\1{REDACTED}", text)


def _lone_value(quoted: object) -> bool:
    return isinstance(quoted, bytes) and any(byte < 0x20 or byte == 0x7F for byte in quoted)

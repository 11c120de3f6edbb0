"""The HTTP side of the client commands: one aiohttp session to the server, errors translated.

Every failure leaves here as a ``CommandError`` carrying its exit code: an error envelope through
``server_refused``, a connection that cannot be made as "cannot connect to <url>".
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aiohttp
import msgspec
import yarl

from jobwarden.cli.outcomes import CommandError, ExitCode, Unreachable, server_refused

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10)
# The session's own timeout bounds only connecting: an event stream stays open for hours.
SESSION_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10)
WS_HEARTBEAT_S = 20.0


def server_url(text: str) -> yarl.URL:
    """``text`` as the URL of a server, parsed as aiohttp will; ValueError saying why it cannot
    be one (not http or https, no host, a port outside 0..65535, a malformed address or name, a
    query or a fragment)."""
    try:
        url = yarl.URL(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid URL: {exc}") from exc
    host = url.raw_host
    if url.scheme not in {"http", "https"} or not host:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    if url.raw_query_string or url.raw_fragment or "?" in text or "#" in text:
        # Every request's path goes after the base URL's: a query or fragment there would end
        # up in the middle of it.
        raise ValueError(f"{text!r} has a query or fragment; give the server's base URL only")
    try:
        host.encode("idna")  # as the resolver will: an empty or overlong label fails there
    except UnicodeError as exc:
        raise ValueError(f"{text!r} is not a valid URL: {host!r} is not a host name") from exc
    return url


def path_segment(text: str) -> str:
    """``text`` as one segment of a URL's path: percent-encoded, dots of a ``.`` or ``..``
    segment included, so that no job id or tool name can reach another route than its own."""
    quoted = urllib.parse.quote(text, safe="")
    return "%2E" * len(quoted) if quoted in {".", ".."} else quoted


class ApiClient:
    """Requests to the jobwarden server at ``base_url``, with ``api_key`` sent as a Bearer token."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=SESSION_TIMEOUT)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session; only inside ``async with``."""
        assert self._session is not None, "use ApiClient inside async with"
        return self._session

    def url(self, path: str) -> yarl.URL:
        """The absolute URL of ``path`` (already percent-encoded: see ``path_segment``) on this
        server; a base URL that cannot be one is a usage error."""
        try:
            base = server_url(self.base_url)
        except ValueError as exc:
            raise CommandError(ExitCode.USAGE, str(exc)) from exc
        return yarl.URL(str(base) + path, encoded=True)

    def unreachable(self, exc: BaseException) -> Unreachable:
        """The error for a server that cannot be reached (or stopped answering)."""
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, aiohttp.ClientConnectorError):
            # asyncio's own text ("Connect call failed (...)") hides the reason the OS gave.
            code, text = exc.os_error.errno or 0, exc.os_error.strerror
            reason = os.strerror(code) if code > 0 else text or reason
        elif isinstance(exc, TimeoutError):
            reason = "no answer in time"
        return Unreachable(f"cannot connect to {self.base_url}: {reason}")

    async def get(
        self, path: str, params: Mapping[str, str] | None = None, *, shape: type | None = None
    ) -> Any:
        """GET ``path`` and return its JSON body, checked against ``shape`` if given."""
        return await self._request("GET", path, shape, params=params)

    async def post(self, path: str, body: Any = None, *, shape: type | None = None) -> Any:
        """POST ``body`` as JSON to ``path`` and return the JSON answer, checked against
        ``shape`` if given."""
        data = None if body is None else msgspec.json.encode(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        return await self._request("POST", path, shape, data=data, headers=headers)

    async def _request(self, method: str, path: str, shape: type | None, **kwargs: Any) -> Any:
        try:
            async with self.session.request(
                method, self.url(path), timeout=REQUEST_TIMEOUT, **kwargs
            ) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise self.unreachable(exc) from exc
        try:
            body = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            # msgspec raises the second for a string holding bytes that are not UTF-8: JSON from
            # a server writing latin-1 is no more jobwarden's than a page of HTML.
            body = None
        if status >= 400:
            raise self.refused(status, body, retry_after)
        if body is None:
            raise CommandError(
                ExitCode.FAILED,
                f"{self.url(path)} answered {status} without JSON: is it jobwarden?",
            )
        if shape is not None:
            try:
                # Checked, not kept: --json prints the answer exactly as the server sent it.
                msgspec.convert(body, shape)
            except msgspec.ValidationError as exc:
                raise CommandError(
                    ExitCode.FAILED,
                    f"{self.url(path)} answered {status} with JSON that is not jobwarden's"
                    f" ({exc}): is it jobwarden?",
                ) from exc
        return body

    def refused(self, status: int, body: Any, retry_after: str | None = None) -> CommandError:
        """The error for an error answer: its envelope, or the bare status without one, with
        when to retry if the answer said."""
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            error = {"type": "http_error", "message": f"HTTP {status} without an error envelope"}
        return server_refused(self.base_url, error, retry_after)

    async def websocket(
        self, path: str, params: Mapping[str, str]
    ) -> aiohttp.ClientWebSocketResponse:
        """A websocket to ``path``; a refused handshake is an error with the status's meaning."""
        try:
            return await self.session.ws_connect(
                self.url(path), params=params, heartbeat=WS_HEARTBEAT_S, timeout=_WS_TIMEOUT
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise self.refused(exc.status, {"error": _HANDSHAKE_ERRORS.get(exc.status)}) from exc
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise self.unreachable(exc) from exc


_WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)

# The handshake error carries no body: the callers check the job or tool first with a plain
# request, so these only name what changed in between.
_HANDSHAKE_ERRORS = {
    401: {"type": "unauthorized", "message": "the event stream needs an API key"},
    403: {"type": "forbidden", "message": "the event stream was refused"},
    404: {"type": "not_found", "message": "no such job or tool"},
}

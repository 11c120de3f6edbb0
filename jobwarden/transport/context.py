"""What the handlers share: the app's typed keys and the authorisation check."""

from __future__ import annotations

import math
import time
from typing import TypeVar

import anyio
import msgspec
from aiohttp import web
from aiohttp.http import HttpProcessingError

from jobwarden.actors.supervisor import Supervisor
from jobwarden.errors import JobNotFinished, printable
from jobwarden.logs import bind_principal, bind_request_job
from jobwarden.records import JobRecord
from jobwarden.transport.auth import OPEN_PRINCIPAL, KeyRing, Principal
from jobwarden.transport.origins import local_host, normalise_origin, origin_host
from jobwarden.transport.responses import ApiError

T = TypeVar("T")


class ServerSettings(msgspec.Struct, frozen=True):
    """Limits and behaviour of the HTTP adapter."""

    max_body_bytes: int = 1 << 20
    max_wait_s: float = 60.0
    ws_queue: int = 1_000
    heartbeat_s: float = 15.0
    allowed_origins: frozenset[str] = frozenset()
    # Longer than the 60 s idle timeout of common proxies and load balancers in front (nginx,
    # AWS ALB), so they close an idle keep-alive connection first and never send a request on
    # one this server is closing; short enough that clients which never finish a request give
    # their connections back within a minute or so, not after aiohttp's default hour.
    read_timeout_s: float = 75.0

    def __post_init__(self) -> None:
        # aiohttp reads a body limit of 0 as none at all; a negative one refuses every body.
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, not {self.max_body_bytes}")
        if not self.max_wait_s >= 0:  # NaN too
            raise ValueError(f"max_wait_s must be a number >= 0, not {self.max_wait_s}")
        if self.ws_queue < 1:
            raise ValueError(f"ws_queue must be >= 1, not {self.ws_queue}")
        for origin in self.allowed_origins:
            # Compared as browsers send them: a value written otherwise would never match.
            if normalise_origin(origin) != origin:
                raise ValueError(
                    f"allowed origin {origin!r} is not as a browser sends it:"
                    f" give {normalise_origin(origin)!r}"
                )
        if not 0 < self.heartbeat_s < math.inf:
            raise ValueError(f"heartbeat_s must be a number > 0, not {self.heartbeat_s}")
        if not 0 < self.read_timeout_s < math.inf:
            raise ValueError(f"read_timeout_s must be a number > 0, not {self.read_timeout_s}")


SUPERVISOR = web.AppKey("supervisor", Supervisor)
KEYS = web.AppKey("keys", KeyRing)
SETTINGS = web.AppKey("settings", ServerSettings)
STARTED = web.AppKey("started", float)
WEBSOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("websockets")


def now() -> float:
    """Monotonic seconds, for uptimes."""
    return time.monotonic()


async def read_body(
    request: web.Request, decoder: msgspec.json.Decoder[T], settings: ServerSettings
) -> T:
    """The JSON body decoded and validated: 415 for another media type, 400 when it is wrong or
    has not all come within ``settings.read_timeout_s``.

    ``settings`` are the app's (``request.app[SETTINGS]``, which the caller has at hand)."""
    # The header as clients send it is compared first: aiohttp parses it on every request.
    raw = request.headers.get("Content-Type")
    if raw != "application/json" and request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "the body must be application/json")
    limit = settings.max_body_bytes
    # aiohttp sizes every request by the root application's limit: when this app is mounted in
    # another one, read with our own limit instead.
    reader = request if request.client_max_size == limit else request.clone(client_max_size=limit)
    try:
        if request.content.is_eof():
            # All of it has come already (a small body arrives with its headers): no timer.
            data = await reader.read()
        else:
            # aiohttp's keep-alive timeout closes connections that never finish their headers;
            # one that stalls in its body is the handler's to give up on.
            with anyio.fail_after(settings.read_timeout_s):
                data = await reader.read()
    except TimeoutError as exc:
        seconds = f"{settings.read_timeout_s:g}"
        message = f"the body did not all arrive within {seconds} s: send it without pausing"
        raise ApiError(400, "invalid_request", message) from exc
    except web.RequestPayloadError as exc:  # Content-Encoding or chunked framing gone wrong
        cause = exc.__cause__
        reason = cause.message if isinstance(cause, HttpProcessingError) else str(exc)
        message = f"the body could not be decoded: {printable(reason)}"
        raise ApiError(400, "invalid_request", message) from exc
    except ConnectionResetError as exc:
        # The client went away before its whole body came: nobody is left to answer, and
        # nothing went wrong in the server (no error logged, no 500 in the access log).
        message = "the body ended early: the client closed the connection"
        raise ApiError(400, "invalid_request", message) from exc
    return decode_json(decoder, data, "invalid request body: ")


def decode_json(decoder: msgspec.json.Decoder[T], data: bytes | str, prefix: str = "") -> T:
    """JSON a client sent, decoded and validated; 400 ``invalid_request`` saying why it is not.

    Every decode of client JSON goes through here: msgspec raises ``RecursionError``, not
    ``DecodeError``, for nesting deeper than the stack allows, and that is the client's doing."""
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_request", f"{prefix}{exc}") from exc
    except RecursionError as exc:
        raise ApiError(400, "invalid_request", f"{prefix}JSON nested too deeply") from exc


def int_param(request: web.Request, name: str, low: int, high: int) -> int | None:
    """A query parameter as an int in [low, high]; None when absent; 400 when anything else."""
    raw = request.query.get(name)
    if raw is None:
        return None
    value = int_in_range(raw, low, high)
    if value is None:
        raise ApiError(400, "invalid_request", f"{name} must be an integer in [{low}, {high}]")
    return value


def int_in_range(raw: str, low: int, high: int) -> int | None:
    """``raw`` as an int in [low, high] (decimal ASCII digits, ``low`` >= 0); None otherwise.

    Leading zeros are allowed; the digits are counted before any are converted, so that text
    longer than ``high`` is refused without converting it (``int`` refuses over 4,300 digits).
    """
    if not (raw.isascii() and raw.isdigit()):
        return None
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(high)):
        return None
    value = int(digits)
    return value if low <= value <= high else None


def presented_key(request: web.Request) -> str | None:
    """The API key from ``Authorization: Bearer``, ``X-API-Key`` or ``?api_key=``."""
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key") or request.query.get("api_key")


def authorize(request: web.Request, scope: str) -> Principal:
    """The caller, if it holds ``scope``: 401 without a valid key, 403 without the scope; on an
    open server (no keys), 403 for a request naming a host other than loopback's (see
    ``origins``) or an allowed origin's."""
    keys = request.app[KEYS]
    if keys.open:
        _check_open_host(request)
    principal = OPEN_PRINCIPAL if keys.open else keys.authenticate(presented_key(request))
    if principal is None:
        raise ApiError(401, "unauthorized", "a valid API key is required")
    bind_principal(principal.name)
    if not principal.can(scope):
        raise ApiError(403, "forbidden", f"this key lacks the {scope!r} scope")
    return principal


def _check_open_host(request: web.Request) -> None:
    host = request.headers.get("Host")
    if host is None or local_host(host):  # a browser always sends one
        return
    allowed = request.app[SETTINGS].allowed_origins
    if host.lower() in {origin_host(origin) for origin in allowed}:
        return
    raise ApiError(
        403,
        "forbidden",
        f"this server has no API keys and answers only to loopback host names, not"
        f" {printable(host)!r} (DNS rebinding); configure API keys, or allow that origin",
    )


def log_job(record: JobRecord) -> JobRecord:
    """Bind the job's id and tool to the request's log context: its access log line shows them."""
    bind_request_job(record)
    return record


async def visible_job(request: web.Request, scope: str) -> JobRecord:
    """The job named in the path, if the caller holds ``scope`` and may see it (else 404)."""
    principal = authorize(request, scope)
    sup = request.app[SUPERVISOR]
    return log_job(await sup.get(request.match_info["id"], owner=principal.owner_filter))


async def finished_within(request: web.Request, record: JobRecord, seconds: float) -> JobRecord:
    """The job once terminal, or as it stands after ``seconds`` if it has not finished by then;
    ``record`` (as submitted) if the supervisor stopped first, leaving it for the next start."""
    sup = request.app[SUPERVISOR]
    try:
        return await sup.wait(record.id, timeout=seconds)
    except TimeoutError:
        return await sup.get(record.id)
    except JobNotFinished:
        return record

"""``redis://[user:password@]host[:port][/db][?prefix=name&socket_timeout=S&...]``, parsed.

``rediss://`` is the same over TLS. ``prefix`` (default ``jobwarden``) starts every key the store
writes, so several independent deployments (or tests) can share one Redis database. Nodes sharing a
prefix form one cluster: ``lease_s`` (default 15) is how long a node's claim on a job lasts
without renewal before another node takes the job over, ``max_deliveries`` (default 3) how many
times one job is handed to a node before it is given up on as the thing killing its nodes.
"""

from __future__ import annotations

import re
import urllib.parse

import msgspec

from jobwarden.errors import StoreError

DEFAULT_PREFIX = "jobwarden"
DEFAULT_PORT = 6379
# Keys are built as ``<prefix>:<kind>:...``: no spaces or control characters, no glob specials
# (a prefix is also a SCAN pattern when keys are listed or cleaned up).
_PREFIX = re.compile(r"[A-Za-z0-9_.:{}/-]{1,64}")
_NUMBER = re.compile("[0-9]{1,18}")  # isdigit() would take "²", which int() refuses
_TIMEOUTS = ("socket_timeout", "socket_connect_timeout", "lease_s")


class RedisSettings(msgspec.Struct, frozen=True):
    """Where the Redis store connects, and the key prefix it writes under."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    prefix: str = DEFAULT_PREFIX
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 5.0
    lease_s: float = 15.0
    max_deliveries: int = 3

    @property
    def url(self) -> str:
        """The URL without its password: safe for logs and error messages."""
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.username or ''}:***@" if self.password else ""
        if self.username and not self.password:
            user = f"{self.username}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}/{self.db}?prefix={self.prefix}"


def parse_redis_url(url: str) -> RedisSettings:
    """The settings ``url`` names; ``StoreError`` saying what is wrong with it otherwise."""
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError as exc:  # a host in brackets that is not one: "Invalid IPv6 URL"
        raise StoreError(f"not a valid redis URL: {exc}") from None
    if parsed.scheme not in ("redis", "rediss"):
        raise StoreError(f"not a redis URL (redis:// or rediss://): {url!r}")
    try:
        port = parsed.port or DEFAULT_PORT
    except ValueError as exc:
        raise StoreError(f"bad port in redis URL: {exc}") from None
    db_text = parsed.path.strip("/") or "0"
    if not _NUMBER.fullmatch(db_text):
        raise StoreError(f"the database in a redis URL is a number (/0, /1, ...), not {db_text!r}")
    params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    unknown = set(params) - {"prefix", "max_deliveries", *_TIMEOUTS}
    if unknown:
        raise StoreError(f"unknown redis store option(s): {', '.join(sorted(unknown))}")
    prefix = params.get("prefix", DEFAULT_PREFIX)
    if not _PREFIX.fullmatch(prefix):
        raise StoreError(
            f"the key prefix {prefix!r} must be 1-64 letters, digits or _ . : {{ }} / -"
        )
    timeouts = {name: _seconds(name, params[name]) for name in _TIMEOUTS if name in params}
    deliveries = params.get("max_deliveries", "3")
    if not _NUMBER.fullmatch(deliveries) or int(deliveries) < 1:
        raise StoreError(f"max_deliveries must be a whole number >= 1, not {deliveries!r}")
    return RedisSettings(
        host=parsed.hostname or "127.0.0.1",
        port=port,
        db=int(db_text),
        username=_unquoted(parsed.username),
        password=_unquoted(parsed.password),
        tls=parsed.scheme == "rediss",
        prefix=prefix,
        max_deliveries=int(deliveries),
        **timeouts,
    )


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise StoreError(f"{name} must be a positive number of seconds, not {text!r}")
    return value


def _unquoted(text: str | None) -> str | None:
    return None if text is None else urllib.parse.unquote(text)

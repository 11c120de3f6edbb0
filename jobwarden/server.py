"""Running the HTTP server: settings from flags and JOBWARDEN_* variables, startup and shutdown."""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
import tomllib
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import structlog
from aiohttp import web

from jobwarden.actors.retention import Retention
from jobwarden.actors.supervisor import Supervisor
from jobwarden.errors import StoreError
from jobwarden.logs import configure_logging
from jobwarden.plugins.builtin import builtin
from jobwarden.plugins.discovery import build_registry, discover
from jobwarden.plugins.imaging import imaging
from jobwarden.plugins.registry import PluginRegistry
from jobwarden.store.base import JobStore
from jobwarden.store.memory import MemoryStore
from jobwarden.store.sqlite import store_from_url as sqlite_store_from_url
from jobwarden.transport import KeyRing, ServerSettings, create_app, server_logger
from jobwarden.transport.origins import normalise_origin

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = structlog.get_logger("jobwarden.server")


DEFAULT_STORE = "sqlite:///jobwarden.db"
GC_YOUNG_THRESHOLD = 10_000
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ServeOptions(msgspec.Struct, frozen=True):
    """Everything ``jobwarden serve`` needs, after flags and environment are merged."""

    host: str = "127.0.0.1"
    port: int = 8080
    store: str = DEFAULT_STORE
    plugins: tuple[str, ...] = ()
    builtin: bool = True
    config: str | None = None
    entry_points: bool = True
    keys_file: str | None = None
    log_format: str = "console"
    log_level: str = "info"
    max_body_bytes: int = 1 << 20
    max_wait_s: float = ServerSettings().max_wait_s
    retention_age_s: float = 7 * 24 * 3600.0
    retention_jobs: int = 1_000_000
    tracing: bool = False
    concurrency: int = 64
    allowed_origins: tuple[str, ...] = ()


class ListenError(Exception):
    """The server cannot listen where it was told to (the port is taken, say)."""


class ConfigError(Exception):
    """The server cannot start with this configuration; the message says why."""


def load_keys(options: ServeOptions) -> KeyRing:
    """Keys from the keys file, else from JOBWARDEN_KEYS (TOML text), else none (open mode)."""
    if options.keys_file:
        path = Path(options.keys_file)
        return _parse_keys(_read_toml(path, "keys file"), str(path))
    inline = os.environ.get("JOBWARDEN_KEYS")
    if not inline:
        return KeyRing()
    try:
        inline.encode()
    except UnicodeEncodeError as exc:
        # os.environ holds bytes that are not UTF-8 as lone surrogates (PEP 383).
        line = inline.count("\n", 0, exc.start) + 1
        raise ConfigError(
            f"JOBWARDEN_KEYS is not valid TOML: invalid UTF-8 at line {line}"
        ) from exc
    return _parse_keys(inline, "JOBWARDEN_KEYS")


def _read_toml(path: Path, what: str) -> str:
    """The text of the TOML file ``path`` (``what`` names it in errors): UTF-8, as TOML is."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{what} {path} is not valid TOML: invalid UTF-8 at line {line} (byte {exc.start})"
        ) from exc


def _parse_keys(text: str, source: str) -> KeyRing:
    try:
        return KeyRing.from_toml(text, source=source)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def config_plugins(path: str | None) -> list[str]:
    """The ``plugins = ["module:attr", ...]`` of a TOML config file (none without a file)."""
    if path is None:
        return []
    text = _read_toml(Path(path), "config file")
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(config) - {"plugins"})
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {', '.join(unknown)}")
    plugins = config.get("plugins", [])
    if not (isinstance(plugins, list) and all(isinstance(p, str) for p in plugins)):
        raise ConfigError(f'config file {path}: plugins must be a list of "module:attr" strings')
    return plugins


def load_registry(options: ServeOptions) -> PluginRegistry:
    """The plugins shipped with jobwarden, ``builtin`` and ``imaging`` (unless disabled), the
    installed entry points (unless disabled), and each ``module:attr`` from the flags and the
    config file; one that fails is registered as failed with its reason, and the rest load."""
    specs = [*options.plugins, *config_plugins(options.config)]
    found = discover(specs, entry_points=options.entry_points)
    return build_registry([builtin, imaging] if options.builtin else [], found)


def open_store(url: str) -> JobStore:
    """The store a URL names: ``memory://``, ``sqlite:///path`` (relative; four slashes for an
    absolute path) with ``?synchronous=full|normal``, or ``redis://host:port/db?prefix=name``."""
    if url == "memory://":
        return MemoryStore()
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError as exc:  # a host in brackets that is not one: "Invalid IPv6 URL"
        raise ConfigError(f"{_without_password(url)!r} is not a URL: {exc}") from exc
    if parsed.scheme in ("redis", "rediss"):
        return _redis_store(url)
    if parsed.scheme == "sqlite" and not parsed.netloc and parsed.path.startswith("/"):
        path = parsed.path[1:]
        if not path:
            raise ConfigError(f"{url!r} names no file: use sqlite:///jobwarden.db")
        params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        try:
            return sqlite_store_from_url(path, params)
        except StoreError as exc:
            raise ConfigError(f"{url!r}: {exc}") from exc
    raise ConfigError(
        f"unsupported store URL {url!r}: use memory://, sqlite:///path/to/file.db"
        " or redis://host:port/db?prefix=name"
    )


def _redis_store(url: str) -> JobStore:
    # Imported here: redis is an optional extra, and only this store needs it.
    try:
        from jobwarden.store.redis import RedisStore
    except ImportError as exc:
        raise ConfigError(
            f"{url!r} needs the redis client: pip install 'jobwarden[redis]' ({exc})"
        ) from exc
    from jobwarden.store.redis_url import parse_redis_url

    try:
        return RedisStore(parse_redis_url(url))
    except StoreError as exc:
        raise ConfigError(f"{_without_password(url)}: {exc}") from exc


def _without_password(url: str) -> str:
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        # Not a URL urllib can take apart: hide whatever follows a user name up to an "@".
        return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url, count=1)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))


def retention(options: ServeOptions) -> Retention:
    """The retention policy from the options; 0 turns a criterion off."""
    try:
        return Retention(
            max_age_s=options.retention_age_s or None,
            max_jobs=options.retention_jobs or None,
        )
    except ValueError as exc:
        raise ConfigError(f"retention: {exc}") from exc


def allowed_origins(options: ServeOptions) -> frozenset[str]:
    """The ``--allowed-origin`` values as browsers send an origin (lower case, no default port);
    ``ConfigError`` for one that is not an origin."""
    try:
        return frozenset(normalise_origin(origin) for origin in options.allowed_origins if origin)
    except ValueError as exc:
        raise ConfigError(f"--allowed-origin: {exc}") from exc


def check_bind(host: str, keys: KeyRing) -> None:
    """Open mode (no keys) is refused on anything but a loopback address."""
    if not keys.open:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"no API keys configured: refusing to serve openly on {host}")


def tracer_provider(options: ServeOptions) -> TracerProvider | None:
    """The OpenTelemetry provider ``--tracing`` asks for (configured by ``OTEL_*``), or None."""
    if not options.tracing:
        return None
    try:
        # Imported only when asked for: opentelemetry is an optional extra.
        from jobwarden import tracing
    except ImportError as exc:
        raise ConfigError(
            f"--tracing needs the tracing extra (pip install 'jobwarden[tracing]'): {exc}"
        ) from exc
    try:
        return tracing.provider_from_env()
    except tracing.TracingConfigError as exc:
        raise ConfigError(str(exc)) from exc


def _bind_failure(exc: OSError) -> str:
    """Why the server could not listen, as the system names it (asyncio wraps a bind's error
    in a longer text holding the address again)."""
    if isinstance(exc, socket.gaierror) or not exc.errno:
        return exc.strerror or str(exc)
    return os.strerror(exc.errno).lower()


def _authority(host: str, port: int) -> str:
    """``host:port`` as a URL writes it: an IPv6 address in brackets, its zone as %25."""
    if ":" in host:
        host = "[" + host.replace("%", "%25") + "]"
    return f"{host}:{port}"


def _base_url(address: tuple[Any, ...]) -> str:
    """The URL of a listening socket's address."""
    return "http://" + _authority(*address[:2])


def _end_on_the_next_signal() -> None:
    """From now on SIGINT or SIGTERM says so in one line and ends the process by that signal.

    Cancelling the shutdown instead (what the event loop does on Ctrl-C) is not something the
    supervisor's exit survives: it failed with a cancel-scope error or hung. A process ended by
    a signal is what the stores are built to survive: the next start finds the jobs that were
    still running ``interrupted`` (SQLite; the memory store loses everything anyway).
    """

    def end_now(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        sys.stderr.write(
            f"jobwarden serve: a second {name} while stopping: stopped at once, as a crash would"
            " (a restart on a durable store finds the jobs that were running interrupted)\n"
        )
        sys.stderr.flush()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, end_now)


async def serve(options: ServeOptions) -> None:
    """Run the server until SIGINT or SIGTERM, then shut down cleanly.

    The signals are received from the start: one that comes while the server starts stops it
    as soon as it has started (the event loop's own handler would cancel the start half-way,
    which the SQLite store's start swallows). A second signal while it stops ends the process
    at once, by that signal, as a crash would (see ``_end_on_the_next_signal``).
    """
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        with contextlib.ExitStack() as receiving:
            signals = receiving.enter_context(anyio.open_signal_receiver(*STOP_SIGNALS))
            await _serve(options, signals, stop_receiving=receiving.close)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


async def _serve(
    options: ServeOptions, signals: AsyncIterator[int], *, stop_receiving: Callable[[], None]
) -> None:
    level = logging.getLevelNamesMapping().get(options.log_level.upper())
    if level is None or options.log_format not in {"json", "console"}:
        raise ConfigError(
            f"unknown log level or format: {options.log_level!r}, {options.log_format!r}"
        )
    configure_logging(options.log_format, level)
    keys = load_keys(options)
    check_bind(options.host, keys)
    registry = load_registry(options)
    store = open_store(options.store)
    if keys.open:
        log.warning(
            "NO API KEYS CONFIGURED: the API is open to anyone who can reach it",
            host=options.host,
        )
    settings = ServerSettings(
        max_body_bytes=options.max_body_bytes,
        max_wait_s=options.max_wait_s,
        allowed_origins=allowed_origins(options),
    )
    provider = tracer_provider(options)  # the SDK shuts it down, exporting all, at exit
    tracer = provider.get_tracer("jobwarden") if provider is not None else None
    async with Supervisor(
        registry=registry,
        store=store,
        retention=retention(options),
        tracer=tracer,
        concurrency=options.concurrency,
    ) as sup:
        runner = web.AppRunner(
            create_app(sup, settings, keys),
            access_log=None,
            logger=server_logger(),
            keepalive_timeout=settings.read_timeout_s,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, options.host, options.port)
            try:
                await site.start()
            except OSError as exc:
                where = _authority(options.host, options.port)
                raise ListenError(f"cannot listen on {where}: {_bind_failure(exc)}") from exc
            # Everything made so far (modules, plugins, the runners and their tasks) lives as
            # long as the server: leave it out of the cyclic collector's full passes, which
            # otherwise walk it again and again under load (p99 of a submit: ~17 ms -> ~4 ms).
            gc.freeze()
            # A request allocates a few hundred container objects that die within it; at the
            # default threshold (700) the youngest generation is collected every couple of
            # requests while some are in flight, promoting their objects into the older ones.
            # Collecting it every 10,000 allocations instead costs ~4% less CPU per request.
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
            url = _base_url(runner.addresses[0])  # the port bound, which --port 0 leaves open
            log.info("serving", url=url, dashboard=url + "/", store=options.store)
            async for signum in signals:
                log.info("stopping", signal=signal.Signals(signum).name)
                break
            stop_receiving()
            _end_on_the_next_signal()
        finally:
            await runner.cleanup()

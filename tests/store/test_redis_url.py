"""Redis store URLs: what each part sets, the defaults, and a clear refusal of anything else."""

from __future__ import annotations

import sys

import pytest

from jobwarden.errors import StoreError
from jobwarden.server import ConfigError, open_store
from jobwarden.store.redis import RedisStore
from jobwarden.store.redis_url import DEFAULT_PREFIX, RedisSettings, parse_redis_url


def test_every_part_of_the_url_is_used() -> None:
    """Host, port, database, credentials, TLS, prefix and timeouts all come from the URL."""
    settings = parse_redis_url(
        "rediss://bob:p%40ss@redis.example:6380/3?prefix=team-a&socket_timeout=2.5"
        "&socket_connect_timeout=1&lease_s=4&max_deliveries=5"
    )
    assert settings == RedisSettings(
        host="redis.example",
        port=6380,
        db=3,
        username="bob",
        password="p@ss",
        tls=True,
        prefix="team-a",
        socket_timeout=2.5,
        socket_connect_timeout=1.0,
        lease_s=4.0,
        max_deliveries=5,
    )


def test_defaults() -> None:
    """A bare redis:// means 127.0.0.1:6379, database 0, prefix jobwarden, no TLS."""
    assert parse_redis_url("redis://") == RedisSettings()
    assert parse_redis_url("redis://cache") == RedisSettings(host="cache")
    assert RedisSettings().prefix == DEFAULT_PREFIX == "jobwarden"


def test_the_printable_url_hides_the_password() -> None:
    """The URL used in logs and errors keeps the user and masks the password."""
    assert (
        parse_redis_url("redis://bob:secret@h:1/2?prefix=p").url == "redis://bob:***@h:1/2?prefix=p"
    )
    assert parse_redis_url("redis://:secret@h").url == "redis://:***@h:6379/0?prefix=jobwarden"
    assert parse_redis_url("redis://bob@h").url == "redis://bob@h:6379/0?prefix=jobwarden"
    assert parse_redis_url("redis://[::1]:7000").url == "redis://[::1]:7000/0?prefix=jobwarden"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost", "not a redis URL"),
        ("redis://localhost:99999/0", "bad port"),
        ("redis://localhost/zero", "database in a redis URL is a number"),
        ("redis://localhost/²", "database in a redis URL is a number"),
        ("redis://localhost/0?colour=red", "unknown redis store option"),
        ("redis://localhost/0?prefix=", "key prefix"),
        ("redis://localhost/0?prefix=a*b", "key prefix"),
        ("redis://localhost/0?prefix=has space", "key prefix"),
        ("redis://localhost/0?socket_timeout=0", "socket_timeout must be a positive"),
        ("redis://localhost/0?socket_connect_timeout=soon", "socket_connect_timeout must be"),
        ("redis://localhost/0?lease_s=-1", "lease_s must be a positive"),
        ("redis://localhost/0?max_deliveries=0", "max_deliveries must be a whole number"),
        ("redis://localhost/0?max_deliveries=two", "max_deliveries must be a whole number"),
        ("redis://localhost/0?max_deliveries=²", "max_deliveries must be a whole number"),
        ("redis://[::1/0", "not a valid redis URL: Invalid IPv6 URL"),
        ("redis://[nohost]/0", "not a valid redis URL: 'nohost' does not appear to be"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, message: str) -> None:
    """Each malformed part of a redis URL is a StoreError saying which part and why."""
    with pytest.raises(StoreError, match=message):
        parse_redis_url(url)


def test_the_server_opens_a_redis_store_for_a_redis_url() -> None:
    """--store redis://... makes a RedisStore (not yet connected) with the URL's prefix."""
    store = open_store("redis://127.0.0.1:6379/0?prefix=serve-test")
    assert isinstance(store, RedisStore)
    assert store.keys.meta == "serve-test:meta"
    assert store.durable is True


def test_a_bad_redis_url_is_a_config_error_without_the_password() -> None:
    """A malformed redis URL stops the server with a ConfigError that does not leak a password."""
    with pytest.raises(ConfigError, match="unknown redis store option") as info:
        open_store("redis://bob:secret@localhost/0?colour=red")
    assert "secret" not in str(info.value)
    assert "bob:***@" in str(info.value)


def test_without_the_redis_extra_the_url_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When redis-py is not installed, a redis URL is a ConfigError naming the extra."""
    monkeypatch.setitem(sys.modules, "jobwarden.store.redis", None)
    with pytest.raises(ConfigError, match=r"pip install 'jobwarden\[redis\]'"):
        open_store("redis://localhost/0")


def test_the_package_exports_the_redis_store() -> None:
    """``from jobwarden import RedisStore`` gives the Redis store, listed in ``__all__``."""
    import jobwarden
    from jobwarden import RedisStore as Exported

    assert Exported is RedisStore
    assert "RedisStore" in jobwarden.__all__


def test_without_the_redis_extra_the_export_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When redis-py is not installed, importing RedisStore from the package is an ImportError
    naming the extra (and the rest of the package imports as before)."""
    monkeypatch.delitem(sys.modules, "jobwarden.store.redis")
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'jobwarden\[redis\]'"):
        from jobwarden import RedisStore  # noqa: F401
    from jobwarden import SqliteStore  # noqa: F401

"""The real Redis on this machine, for the Redis store's tests: started if it is not answering,
and one key prefix per test, deleted afterwards."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis

HOST = "127.0.0.1"
PORT = 6379
URL = f"redis://{HOST}:{PORT}/0"
START_ATTEMPTS = 200  # ~10 s for redis-server to answer once started


def answering() -> bool:
    """True when something accepts connections on the Redis port and answers PING."""
    try:
        with socket.create_connection((HOST, PORT), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def ensure_redis() -> None:
    """Start a throwaway redis-server (no persistence) unless one answers already."""
    if answering():
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no Redis on 127.0.0.1:6379 and no redis-server to start")
    options = ["--bind", HOST, "--port", str(PORT), "--save", "", "--appendonly", "no"]
    subprocess.run(
        [server, "--daemonize", "yes", *options],
        check=True,
        capture_output=True,
    )
    for _ in range(START_ATTEMPTS):
        if answering():
            return
        # Another process is starting: there is nothing in this one to wait on.
        time.sleep(0.05)
    pytest.fail("redis-server was started but never answered on 127.0.0.1:6379")


def new_prefix() -> str:
    """A key prefix no other test uses."""
    return f"jwtest:{uuid.uuid4().hex}"


def keys_under(prefix: str) -> list[str]:
    """Every key under ``prefix``."""
    with redis.Redis(host=HOST, port=PORT, db=0) as client:
        return sorted(key.decode() for key in client.scan_iter(match=f"{prefix}:*", count=1000))


def delete_prefix(prefix: str) -> None:
    """UNLINK every key under ``prefix``."""
    with redis.Redis(host=HOST, port=PORT, db=0) as client:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) == 500:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)

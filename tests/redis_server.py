"""The real Redis on this machine, for the Redis store's tests: started if it is not answering,
and one key prefix per test, deleted afterwards."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

HOST = "127.0.0.1"
PORT = 6379
URL = f"redis://{HOST}:{PORT}/0"
START_ATTEMPTS = 200  # ~10 s for redis-server to answer once started


def answering(port: int = PORT) -> bool:
    """True when something accepts connections on ``port`` and answers PING."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def ensure_redis() -> None:
    """Start a throwaway redis-server (no persistence) unless one answers already."""
    if answering():
        return
    subprocess.run(
        [_server(), "--daemonize", "yes", *_options(PORT)], check=True, capture_output=True
    )
    _wait_answering(PORT)


@contextmanager
def private_redis(*options: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server of this test's own on a free port (to stop or break), with extra
    ``options``; yields (process, URL) and stops it afterwards."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    process = subprocess.Popen(
        [_server(), *_options(port), *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_answering(port)
        yield process, f"redis://{HOST}:{port}/0"
    finally:
        process.kill()
        process.wait()


class RestartableRedis:
    """A redis-server of a test's own that can be stopped and started again on the same port,
    its data kept in an append-only file written before each write is answered."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port: int = sock.getsockname()[1]
        self.url = f"redis://{HOST}:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again), reloading what it held, and return once it answers."""
        durable = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(self._folder))
        self._process = subprocess.Popen(
            [_server(), *_options(self.port), *durable],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_answering(self.port)

    def stop(self) -> None:
        """Shut it down (SIGTERM: the file is complete) and wait until it has exited."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait()
            self._process = None

    def pause_writes(self) -> None:
        """Make it hold every write (CLIENT PAUSE WRITE) until ``unpause``; reads still answer."""
        with redis.Redis(host=HOST, port=self.port, db=0) as client:
            client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")

    def unpause(self) -> None:
        """Let the held writes through."""
        with redis.Redis(host=HOST, port=self.port, db=0) as client:
            client.execute_command("CLIENT", "UNPAUSE")

    def kill(self) -> None:
        """Kill it if it runs."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@contextmanager
def restartable_redis(folder: Path) -> Iterator[RestartableRedis]:
    """A started ``RestartableRedis`` keeping its files in ``folder``, killed afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    server = RestartableRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _server() -> str:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server on this machine")
    return server


def _options(port: int) -> list[str]:
    return ["--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no"]


def _wait_answering(port: int) -> None:
    for _ in range(START_ATTEMPTS):
        if answering(port):
            return
        # Another process is starting: there is nothing in this one to wait on.
        time.sleep(0.05)
    pytest.fail(f"redis-server was started but never answered on {HOST}:{port}")


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

"""Servers as subprocesses for the HTTP benchmarks: free ports, readiness, CPU time, clean stops.

Each benchmark starts jobwarden and its reference as separate processes on free loopback ports,
waits for each to answer its health route a bounded number of times, and stops it (SIGTERM, then
SIGKILL after a bounded wait). Everything here is synchronous: it runs between the rounds, outside
any event loop.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: the working directory of every server (``benchmarks`` is importable)."""

HOST = "127.0.0.1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback port nobody listens on right now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-files soft limit towards ``wanted`` (capped by the hard limit).

    Children started afterwards inherit it, so the servers get the same limit. Returns the limit
    in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def get_json(url: str, *, timeout: float = 5.0) -> Any:
    """GET ``url`` and decode its JSON body (raises on a non-2xx status or a network error)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def python_module(module: str, *args: str) -> list[str]:
    """The argv running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


class ServerProcess:
    """One server subprocess on a free loopback port, started and stopped by the benchmark.

    ``argv`` is built from the port; stdout and stderr go to /dev/null (a real deployment pays for
    writing its logs too, so that cost stays in). Use as a context manager.
    """

    def __init__(
        self,
        name: str,
        argv: Callable[[int], Sequence[str]],
        *,
        health_path: str = "/v1/health",
        ready_attempts: int = 100,
        ready_interval_s: float = 0.1,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self._argv = list(argv(self.port))
        self._health = health_path
        self._attempts = ready_attempts
        self._interval = ready_interval_s
        self._stop_timeout = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWARDEN_")}
        self._proc = subprocess.Popen(
            self._argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._proc.pid

    def _wait_ready(self) -> None:
        url = self.base + self._health
        for _ in range(self._attempts):
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self._proc.returncode} before it was ready"
                    f" (run {' '.join(self._argv)} by hand to see why)"
                )
            try:
                get_json(url, timeout=1.0)
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(self._interval)
                continue
            return
        raise RuntimeError(f"{self.name} did not answer {url} after {self._attempts} attempts")

    def get(self, path: str) -> Any:
        """GET a JSON route of this server."""
        return get_json(self.base + path)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After "pid (comm)": state is fields[0], utime fields[11], stime fields[12].
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self) -> None:
        """SIGTERM, wait a bounded time, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=self._stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=self._stop_timeout)


def wait_until(check: Callable[[], bool], *, attempts: int, interval_s: float, what: str) -> None:
    """Poll ``check`` up to ``attempts`` times; RuntimeError naming ``what`` if it never holds."""
    for _ in range(attempts):
        if check():
            return
        time.sleep(interval_s)
    raise RuntimeError(f"gave up waiting for {what} after {attempts} attempts")

"""anyio's clock, events and checkpoint without its per-call search for the running library.

``anyio.current_time()``, ``anyio.Event()`` and ``anyio.lowlevel.checkpoint()`` ask which library
runs (sniffio, then a dict) on every call: about 2 us, ten times the work they then do, and the
job path makes a few of each per job. While one asyncio loop runs in a thread the answer cannot
change, so it is looked up once per loop and the backend's own class methods are called directly;
with no asyncio loop running (trio) the calls go to anyio as before.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Generator

import anyio
import anyio.lowlevel
from anyio.abc import AsyncBackend

_loop: asyncio.AbstractEventLoop | None = None
_backend: type[AsyncBackend] | None = None


def _asyncio_backend() -> type[AsyncBackend] | None:
    """anyio's backend for the running asyncio loop, or None when none runs in this thread."""
    global _loop, _backend
    loop = asyncio._get_running_loop()
    if loop is None:
        return None
    if loop is not _loop:
        _backend = anyio.lowlevel.current_token().backend_class
        _loop = loop
    return _backend


def current_time() -> float:
    """``anyio.current_time()``: the running event loop's clock."""
    backend = _backend if asyncio._get_running_loop() is _loop else _asyncio_backend()
    return backend.current_time() if backend is not None else anyio.current_time()


@types.coroutine
def _yield_once() -> Generator[None, None, None]:
    """Suspend the task once: asyncio then runs every other ready callback before resuming it."""
    yield


def checkpoint() -> Awaitable[None]:
    """``anyio.lowlevel.checkpoint()``: await it to let every other ready task run first.

    On asyncio, anyio's checkpoint is ``asyncio.sleep(0)``: a task that yields nothing is
    rescheduled at once, and a pending cancellation is raised where it yielded. That yield is
    done here directly, without anyio's and asyncio's two coroutines around it, each one more
    layer to create, suspend and resume.
    """
    backend = _backend if asyncio._get_running_loop() is _loop else _asyncio_backend()
    return _yield_once() if backend is not None else anyio.lowlevel.checkpoint()


def new_event() -> anyio.Event:
    """``anyio.Event()`` for the running event loop."""
    backend = _backend if asyncio._get_running_loop() is _loop else _asyncio_backend()
    return backend.create_event() if backend is not None else anyio.Event()

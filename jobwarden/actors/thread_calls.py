"""Thread mode: a tool's plain def in a worker thread, abandoned and counted when it is stopped.

A thread cannot be interrupted. When its job times out or is cancelled the job ends at once and
the thread is abandoned: it runs on, its result ignored, and counts in the tool's
``abandoned_threads`` until it returns. Beyond ``max_abandoned`` of them a tool's new calls fail
fast (``ThreadsExhausted``) instead of piling up more stuck threads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import anyio

from jobwarden.errors import describe
from jobwarden.plugins.registry import PluginRegistry


class ThreadsExhausted(Exception):
    """A tool has ``count`` abandoned threads still running, its limit."""

    def __init__(self, tool: str, count: int) -> None:
        super().__init__(
            f"{tool} has {count} abandoned threads still running (the limit);"
            " new calls fail until some return"
        )
        self.count = count


class ThreadInterrupt(Exception):
    """A ``KeyboardInterrupt`` a tool raised in its worker thread: no signal reaches a thread, so
    the tool raised it itself, and it fails only that call (in the event loop's thread it would
    read as a Ctrl-C and stop the supervisor)."""


class ThreadRaised(Exception):
    """Carries back a ``BaseException`` that is not an ``Exception`` (a ``KeyboardInterrupt``
    aside) which a tool raised in its worker thread; ``exception`` is the tool's own.

    Raised again in the event loop's thread, asyncio's ``CancelledError`` would read as a
    cancellation of the runner and ``GeneratorExit`` as its coroutine being closed (asyncio then
    fails the supervisor's task group with "coroutine ignored GeneratorExit").
    """

    def __init__(self, exception: BaseException) -> None:
        super().__init__(describe(exception))
        self.exception = exception


class ThreadCalls:
    """Runs thread-mode calls, ``limiter``'s tokens of them at once, at most ``max_abandoned``
    stuck per tool; an abandoned call gives its token back at once."""

    def __init__(
        self, registry: PluginRegistry, limiter: anyio.CapacityLimiter, max_abandoned: int
    ) -> None:
        self._registry = registry
        self._limiter = limiter
        # The slots are ``limiter``'s, taken and given back here: handed to the thread call,
        # trio's would stay taken by an abandoned thread until it returned (asyncio's did not),
        # so a few stuck threads starved every other thread-mode tool. The threads themselves
        # are bounded by the slots plus the abandoned threads, which ``max_abandoned`` bounds.
        self._threads = anyio.CapacityLimiter(math.inf)
        self.max_abandoned = max_abandoned

    async def run(self, tool: str, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` in a worker thread; if cancelled, the thread is abandoned and counted."""
        count = self._registry.abandoned_threads(tool)
        if count >= self.max_abandoned:
            raise ThreadsExhausted(tool, count)
        call = _Call(self._registry, tool)
        async with self._limiter:
            try:
                return await anyio.to_thread.run_sync(
                    call.run, func, *args, abandon_on_cancel=True, limiter=self._threads
                )
            except BaseException:
                call.abandon()
                raise


class _Call:
    """One call's progress, shared by the event loop and its worker thread."""

    __slots__ = ("_lock", "_registry", "_tool", "abandoned", "phase")

    def __init__(self, registry: PluginRegistry, tool: str) -> None:
        self._registry = registry
        self._tool = tool
        self._lock = threading.Lock()
        self.phase = "pending"
        self.abandoned = False

    def run(self, func: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            if self.abandoned:
                return None  # the job ended before a thread took the call: nothing to run
            self.phase = "running"
        try:
            return func(*args)
        except KeyboardInterrupt as exc:
            raise ThreadInterrupt(describe(exc)) from exc
        except Exception:
            raise
        except BaseException as exc:
            raise ThreadRaised(exc) from exc
        finally:
            with self._lock:
                self.phase = "done"
                if self.abandoned:
                    self._registry.adjust_abandoned(self._tool, -1)

    def abandon(self) -> None:
        with self._lock:
            if self.phase == "done":
                return
            self.abandoned = True
            if self.phase == "running":
                self._registry.adjust_abandoned(self._tool, 1)

"""Telling a real cancellation from a ``CancelledError`` plugin code raised on its own.

On asyncio, plugin code can raise ``CancelledError`` when nobody cancelled it: it awaited a
future or task that something else cancelled (a library's), or raised it outright. Whoever calls
plugin code (the ToolRunner, the supervisor's plugin hooks) treats that as the plugin's failure,
and only a cancellation of its own task as a reason to stop.
"""

from __future__ import annotations

import asyncio
import math

import anyio


def cancelled_from_outside() -> bool:
    """Whether the backend's cancellation exception, caught by the caller of plugin code while
    no scope of its own around that code was cancelled, is a real cancellation of the caller.

    A scope around the caller cancelled (a task group's, a shutdown) makes the effective deadline
    -inf; a native ``Task.cancel()`` of the caller's task shows in ``cancelling()``. Trio's
    ``Cancelled`` cannot be raised by plugin code on its own, so on trio it always is one.
    """
    if anyio.current_effective_deadline() == -math.inf:
        return True
    if anyio.get_cancelled_exc_class() is not asyncio.CancelledError:
        return True
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0

"""Work that must not stop half-way, run to its end whoever cancels its caller.

anyio's shielded scopes hold against anyio's own cancellation (scopes, task groups, ``fail_after``)
on both backends, but not against asyncio's ``Task.cancel()``: ``asyncio.run``'s Ctrl-C,
``asyncio.timeout``, ``wait_for`` and asyncio's ``TaskGroup`` cancel an embedding application's
task that way, and the ``CancelledError`` lands inside the shield. Undoing a start half-way, or a
stop, would then leave the store's writer process running, its file locked, or a worker thread
still opening the file after the caller has moved on. So the work runs shielded in a task of its
own, in a task group: that task is out of reach of a cancel of the caller's, and the group does
not let the caller go on before it has finished. The caller's cancellation goes on after.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def to_the_end(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``await work()`` shielded from every cancellation; one that came meanwhile is raised after.

    The work's own exception, if it raised one, is raised rather than the cancellation.
    """
    outcome: list[T] = []

    async def run() -> None:
        with anyio.CancelScope(shield=True):
            outcome.append(await work())

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
    except BaseExceptionGroup as group:
        # One task: its exception is the work's own (beside the caller's cancellation, maybe).
        cancelled = anyio.get_cancelled_exc_class()
        raise next(
            (exc for exc in group.exceptions if not isinstance(exc, cancelled)),
            group.exceptions[0],
        ) from None
    return outcome[0]

"""A bounded actor mailbox that needs no task of its own.

Messages are handled one at a time, in arrival order. The task that delivers a message to an idle
actor handles it itself, so the common, uncontended case costs one function call. When the actor
is busy, an ``ask`` waits in line and is handed the turn (the "baton") when the one before it is
done; a queued ``tell`` is handled by whichever task holds the baton when it gets there. A
stopped mailbox refuses new messages and fails every waiting ask with ``ActorStopped``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import structlog

from jobwarden.errors import ActorStopped, MailboxFull

M = TypeVar("M")
R = TypeVar("R")
D = TypeVar("D")
DEFAULT_CAPACITY = 64

log = structlog.get_logger("jobwarden.mailbox")


class _Waiter:
    __slots__ = ("error", "turn")

    def __init__(self) -> None:
        self.turn = anyio.Event()
        self.error: BaseException | None = None


_RAISE: Any = object()
"""``ask_or``'s answer for a stopped mailbox that means: raise ``ActorStopped`` (``ask``)."""


async def _refuse(message: object) -> Any:
    raise ActorStopped("the mailbox has stopped")


class Mailbox(Generic[M, R]):
    """Serialises calls of ``handler``; ``capacity`` bounds how many messages may wait."""

    __slots__ = ("_busy", "_capacity", "_handler", "_name", "_queue", "_stopped")

    def __init__(
        self, handler: Callable[[M], Awaitable[R]], *, name: str, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        self._handler = handler
        self._name = name
        self._capacity = capacity
        self._busy = False
        self._stopped: str | None = None
        self._queue: deque[tuple[M, _Waiter | None]] | None = None

    @property
    def stopped(self) -> bool:
        """True once ``stop`` was called."""
        return self._stopped is not None

    def __len__(self) -> int:
        return len(self._queue) if self._queue else 0

    def ask(self, message: M) -> Awaitable[R]:
        """Handle ``message`` in turn and return the handler's answer (or raise its exception)."""
        return self.ask_or(message, _RAISE)

    async def ask_or(self, message: M, stopped: D) -> R | D:
        """``ask``, answering ``stopped`` where ``ask`` raises ``ActorStopped`` (the mailbox has
        stopped, or stopped while the message waited its turn).

        For a caller to whom a stopped actor is an ordinary answer (a job that ended already): it
        then needs no coroutine of its own around ``ask`` to catch the exception, and a job's
        runner makes two such asks per job."""
        if self._stopped is not None:
            if stopped is _RAISE:
                self._check_open()
            return stopped
        if self._busy:
            try:
                await self._wait_for_turn(message)
            except ActorStopped:
                if stopped is _RAISE:
                    raise
                return stopped
        # ``_handle``'s body, inlined: a job makes two asks, and each coroutine layer costs.
        self._busy = True
        try:
            return await self._handler(message)
        finally:
            if self._queue:
                await self._pass_baton()
            else:
                self._busy = False

    async def tell(self, message: M) -> None:
        """Deliver ``message`` without waiting for it to be handled when the actor is busy."""
        self._check_open()
        if self._busy:
            self._enqueue(message, None)
        else:
            await self._handle(message)

    async def _handle(self, message: M) -> R:
        """Handle ``message`` holding the turn, then hand the turn on."""
        self._busy = True
        try:
            return await self._handler(message)
        finally:
            if self._queue:
                await self._pass_baton()
            else:
                self._busy = False

    def stop(self, reason: str) -> None:
        """Refuse further messages; fail waiting asks with ``ActorStopped``; drop queued tells."""
        if self._stopped is not None:
            return
        self._stopped = reason
        # The handler is usually a bound method of the actor owning this mailbox: dropping it
        # breaks that reference cycle, so a finished actor is freed at once, not by the gc.
        self._handler = _refuse
        queue, self._queue = self._queue, None
        for _, waiter in queue or ():
            if waiter is not None:
                waiter.error = ActorStopped(f"actor {self._name} stopped ({reason})")
                waiter.turn.set()

    def _check_open(self) -> None:
        if self._stopped is not None:
            raise ActorStopped(f"actor {self._name} stopped ({self._stopped})")

    def _enqueue(self, message: M, waiter: _Waiter | None) -> None:
        if self._queue is None:
            self._queue = deque()
        if len(self._queue) >= self._capacity:
            raise MailboxFull(f"actor {self._name}'s mailbox is full ({self._capacity} messages)")
        self._queue.append((message, waiter))

    async def _wait_for_turn(self, message: M) -> None:
        waiter = _Waiter()
        self._enqueue(message, waiter)
        try:
            await waiter.turn.wait()
        except BaseException:
            if waiter.turn.is_set():
                if waiter.error is None:
                    # The baton reached us as we were cancelled: hand it on, or the line stalls.
                    self._busy = True
                    await self._pass_baton()
            elif self._queue is not None:
                self._queue.remove((message, waiter))
            raise
        if waiter.error is not None:
            raise waiter.error
        if self._stopped is not None:
            # Stopped after the baton was handed to us: nothing more may be handled.
            self._busy = False
            raise ActorStopped(f"actor {self._name} stopped ({self._stopped})")

    async def _pass_baton(self) -> None:
        """Give the turn to the next waiting ask, handling queued tells on the way."""
        while self._queue:  # re-read: a handler below may stop the mailbox
            message, waiter = self._queue.popleft()
            if waiter is not None:
                waiter.turn.set()
                return
            try:
                with anyio.CancelScope(shield=True):
                    await self._handler(message)
            except Exception:
                log.exception("queued message failed", actor=self._name)
        self._busy = False

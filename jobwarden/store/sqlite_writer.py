"""The SQLite store's writer: one long-lived thread commits batches of writes, group-commit style.

Writes are queued from the event loop without yielding. The writer thread takes every write
queued so far as one batch and commits it as one transaction, while the loop goes on queueing
the next batch: committing and the loop's own work overlap. When a batch is committed (or has
failed), the thread hands it back to the event loop through a thread-safe call
(``call_soon_threadsafe`` on asyncio, a ``TrioToken`` on trio), which runs the batch's callbacks
and wakes every task waiting on it; a write is thus reported committed only on the loop, after
its transaction committed. The next batch starts only after the tasks just woken have had their
turn (a second call, queued behind their wake-ups): a submitter's next put then joins it, rather
than waiting out a commit of the few writes that happened to arrive first, so each commit (and
its fsync) carries about a whole round of writers.

Waiting is shielded from cancellation only once a cancellation arrives: a write that was queued
completes (or fails) before its caller sees the cancellation, so the caller's in-memory state
never diverges from the file, and an uncancelled write pays for no cancel scope.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
import structlog

from jobwarden.store.group_commit import StoreStatistics

log = structlog.get_logger("jobwarden.store.sqlite")
Op = TypeVar("Op")
LoopCall = Callable[[Callable[[], object]], object]
Committed = Callable[[BaseException | None], None]
"""Called on the event loop once a write's batch is committed: None, or what the commit raised."""


class WriterClosed(Exception):
    """The writer was closed: the write was not queued."""


class _Batch(Generic[Op]):
    __slots__ = ("callbacks", "committed", "done", "error", "ops")

    def __init__(self) -> None:
        self.done = False
        self.ops: list[Op] = []
        self.callbacks: list[Committed] = []
        self.committed: anyio.Event | None = None
        self.error: BaseException | None = None


def loop_caller() -> LoopCall:
    """A function any thread may call to run a callback soon on the current event loop."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:  # no asyncio loop here: anyio's other backend, trio
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon


class BatchWriter(Generic[Op]):
    """Commits queued ops in batches on a thread of its own; ``commit`` runs on that thread.

    ``commit(ops)`` applies and commits one batch, raising if it could not (then none of its ops
    is committed). ``start`` and ``close`` are called on the event loop.
    """

    def __init__(self, commit: Callable[[list[Op]], None], *, name: str) -> None:
        self._commit = commit
        self._name = name
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._open: _Batch[Op] = _Batch()
        self._in_flight: _Batch[Op] | None = None
        self._thread: threading.Thread | None = None
        self._call_soon: LoopCall | None = None
        self._closing = False
        self.batches = 0
        self.ops = 0

    def start(self) -> None:
        """Start the writer thread, reporting to the event loop this is called on."""
        self._call_soon = loop_caller()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    async def write(self, op: Op) -> None:
        """Queue ``op`` and return once its batch is committed; raise what the commit raised."""
        batch = self._queue(op)
        committed = batch.committed
        if committed is None:
            committed = batch.committed = anyio.Event()
        try:
            await committed.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await committed.wait()
            raise
        if batch.error is not None:
            raise batch.error

    def write_soon(self, op: Op, committed: Committed) -> None:
        """Queue ``op`` without waiting; ``committed`` is called on the event loop once its batch
        is committed (with None) or has failed (with the error). Raises ``WriterClosed``."""
        self._queue(op).callbacks.append(committed)

    def _queue(self, op: Op) -> _Batch[Op]:
        with self._lock:
            if self._closing or self._thread is None:
                raise WriterClosed
            batch = self._open
            if not batch.ops and self._in_flight is None:
                self._wakeup.notify()
            batch.ops.append(op)
            return batch

    def statistics(self) -> StoreStatistics:
        """Commits and writes so far: writes / commits is how many each commit carried."""
        return StoreStatistics(commits=self.batches, writes=self.ops)

    async def close(self) -> None:
        """Commit what is queued, then stop the thread; later writes raise ``WriterClosed``."""
        with self._lock:
            if self._thread is None:
                return
            self._closing = True
            last = self._open if self._open.ops else self._in_flight
            self._wakeup.notify()
        if last is not None and not last.done:
            if last.committed is None:
                last.committed = anyio.Event()
            with anyio.CancelScope(shield=True):
                await last.committed.wait()
        thread, self._thread = self._thread, None
        # The thread has nothing left to do but return.
        await anyio.to_thread.run_sync(thread.join)

    def _run(self) -> None:
        while True:
            with self._lock:
                while (self._in_flight is not None or not self._open.ops) and not self._closing:
                    self._wakeup.wait()
                if not self._open.ops:
                    return
                batch, self._open = self._open, _Batch()
                self._in_flight = batch
            try:
                self._commit(batch.ops)
            except Exception as exc:
                batch.error = exc
            self._report(batch)

    def _report(self, batch: _Batch[Op]) -> None:
        call_soon = self._call_soon
        assert call_soon is not None
        try:
            call_soon(lambda: self._committed(batch))
        except RuntimeError:
            # The event loop is gone (closed without closing the store): nobody is waiting.
            return

    def _committed(self, batch: _Batch[Op]) -> None:
        self.batches += 1
        self.ops += len(batch.ops)
        batch.done = True
        error = batch.error
        for callback in batch.callbacks:
            try:
                callback(error)
            except Exception:
                # Raised into the event loop's own machinery, it would be lost on asyncio and
                # crash the run on trio; the other writes of the batch still need their turn.
                log.exception("a commit callback failed")
        if batch.committed is not None:
            batch.committed.set()
        # The next batch starts once the tasks just woken have run: their next writes (a
        # submitter's next put) join it rather than wait a whole commit for the one after.
        assert self._call_soon is not None
        self._call_soon(self._settled)

    def _settled(self) -> None:
        with self._lock:
            self._in_flight = None
            self._wakeup.notify()

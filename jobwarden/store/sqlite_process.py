"""The SQLite store's writer process, seen from the event loop: its writes go out, its replies come
back, and neither ever waits for the other's GIL.

A write is queued without yielding. The first write of a batch schedules one flush for the end of
the event loop's current turn (``call_soon`` on asyncio; a parked system task on trio), so every
write made during that turn goes out as one frame: a length-prefixed marshal of the ops' ``wire``
tuples, written with ``os.write`` on a non-blocking pipe. What the pipe cannot take at once stays
buffered and goes out when it is writable again. The child (``sqlite_child``, started by its path)
commits every frame it finds waiting as one transaction and replies once per transaction; the
replies are read on the event loop itself (``add_reader`` on asyncio, a system task waiting with
``wait_readable`` on trio), never by a thread that would need the GIL to hand them over. So SQLite
commits on one core while the loop goes on with its work on the other.

A reply settles its frames: the ops get their results (a keyed put's existing record, a purge's
count), the store's ``applied`` callback sees what the transaction changed, then each write's
callback runs and each waiting task wakes (a plain future per waiting write on asyncio, an
``anyio.Event`` per frame on trio). A transaction that failed fails its own frames only, with a
``StoreError`` carrying SQLite's message; a write the child refused alone (a transition of a job the
file does not hold, a purge that failed on its own) fails alone, its frame's other writes
committed. When the child dies (killed,
crashed), every pending and later write fails with a ``StoreError`` naming its exit status or
signal, and ``wait_failed`` returns that error: nothing else may be waiting on a write to learn it.
So it goes, with the child's reason, when the child stops because the file was removed or replaced
(see ``sqlite_child``): the transaction it found that out on is failed, never acknowledged.

Waiting is shielded from cancellation only once a cancellation arrives: a write that was queued
completes (or fails) before its caller sees the cancellation, so the caller's in-memory state
never diverges from the file, and an uncancelled write pays for no cancel scope. On asyncio, where
a shield does not hold against ``Task.cancel()``, the wait goes on through any further ones.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import marshal
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import anyio
import structlog

from jobwarden.actors.to_the_end import to_the_end
from jobwarden.errors import StoreError
from jobwarden.store import sqlite_child
from jobwarden.store.group_commit import StoreStatistics
from jobwarden.store.timings import StoreTimings

log = structlog.get_logger("jobwarden.store.sqlite")
HEADER = sqlite_child.HEADER
PIPE_SIZE = 1 << 20  # what an unprivileged process may ask for by default (pipe-max-size)
CLOSE_TIMEOUT_S = 30.0  # how long close() waits for the child to exit before killing it
Committed = Callable[[StoreError | None], None]
"""Called on the event loop once a write is committed: None, or the ``StoreError``."""


class WireOp(Protocol):
    """A write the child can apply: its ``wire`` tuple, the ``StoreTimings`` series its latency
    goes to, and a way to take back its result (which says why, when the write was refused)."""

    @property
    def wire(self) -> tuple[Any, ...]: ...

    @property
    def series(self) -> str: ...

    def answer(self, value: object) -> str | None: ...


class Transaction(NamedTuple):
    """What one committed transaction changed, as the child reported it (see ``sqlite_child``):
    its lowest and highest event offset (None without events), by how much the number of
    finished jobs moved, whether it purged (then ``oldest``: the oldest offset left), and how
    long it took from BEGIN to COMMIT."""

    first: int | None
    last: int | None
    finished: int
    purged: bool
    oldest: int | None
    seconds: float


class WriterClosed(StoreError):
    """The writer was closed: the write was not queued."""


class _Frame:
    """The writes of one event-loop turn, sent as one frame; ``callbacks[i]`` is ``ops[i]``'s
    (None for a write without one), ``refused`` the writes the child refused alone, by index."""

    __slots__ = ("began", "callbacks", "done", "error", "event", "ops", "refused", "waiters")

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.ops: list[WireOp] = []
        self.callbacks: list[Committed | None] = []
        self.refused: dict[int, StoreError] | None = None
        self.waiters: list[asyncio.Future[None]] = []
        self.event: anyio.Event | None = None
        self.done = False
        self.error: StoreError | None = None


class WriterProcess:
    """Commits ops in a child process, one transaction per group of frames it finds waiting.

    ``spawn`` starts the child (blocking: call it from a worker thread); ``start`` (on the event
    loop) waits until it has opened the file. ``applied`` runs on the event loop for each
    committed transaction, before any of its writes is reported.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        max_bytes: int | None,
        applied: Callable[[Transaction], None],
        timings: StoreTimings,
    ) -> None:
        self.path = path
        self._timings = timings
        self._synchronous = synchronous
        self._max_bytes = max_bytes
        self._applied = applied
        self._process: subprocess.Popen[bytes] | None = None
        self._requests = -1  # our ends of the two pipes
        self._replies = -1
        self._loop: asyncio.AbstractEventLoop | None = None  # None on trio
        self._open: _Frame | None = None
        self._sent: collections.deque[_Frame] = collections.deque()
        self._out = bytearray()  # what the pipe did not take yet
        self._in = bytearray()  # a reply not read whole yet
        self._ready: anyio.Event | None = None
        self._ready_error: str | None = None
        self._drained: anyio.Event | None = None
        self._ended: anyio.Event | None = None  # the reply pipe ended and the child is reaped
        self._broken = False  # the child stopped reading or replying
        self._failure: StoreError | None = None  # why every write fails from now on
        self._failed: anyio.Event | None = None  # set with _failure, once started
        self._closing = True
        self._accepting = False  # from start() until close() or the child's end
        self._trio_flush: Any = None  # trio's ParkingLot for the flushing task
        self.batches = 0
        self.ops = 0

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return None if self._process is None else self._process.pid

    # --- lifecycle ------------------------------------------------------------------------------

    def spawn(self, lock: int) -> None:
        """Start the child on the (already migrated) file; it keeps the ``lock`` descriptor."""
        requests_child, requests = os.pipe()
        replies, replies_child = os.pipe()
        for fd in (requests, replies):
            with contextlib.suppress(AttributeError, OSError):  # not Linux, or over the limit
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        command = [
            sys.executable,
            "-I",
            "-S",
            sqlite_child.__file__,
            str(self.path),
            self._synchronous,
            str(self._max_bytes or 0),
            str(lock),
        ]
        try:
            self._process = subprocess.Popen(
                command,
                stdin=requests_child,
                stdout=replies_child,
                pass_fds=(lock,),
                # Its own session: a terminal's Ctrl-C is the parent's to handle.
                start_new_session=True,
            )
        except OSError as exc:
            os.close(requests)
            os.close(replies)
            raise StoreError(f"cannot start the writer process of {self.path}: {exc}") from exc
        finally:
            os.close(requests_child)
            os.close(replies_child)
        os.set_blocking(requests, False)
        os.set_blocking(replies, False)
        self._requests, self._replies = requests, replies
        self._open, self._sent = None, collections.deque()
        self._out, self._in = bytearray(), bytearray()
        self._broken, self._failure, self._closing = False, None, False
        self._ended = None  # set by start(): until then nobody listens to the child

    async def start(self) -> None:
        """Listen to the child on this event loop; return once it has opened the file.

        Raises ``StoreError`` (and reaps the child) when it could not.
        """
        assert self._process is not None
        self._ready, self._ready_error = anyio.Event(), None
        self._drained, self._ended = None, anyio.Event()
        self._failed = anyio.Event()
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # no asyncio loop here: anyio's other backend, trio
            self._loop = None
        if self._loop is not None:
            self._loop.add_reader(self._replies, self._readable)
        else:
            import trio

            self._trio_flush = trio.lowlevel.ParkingLot()
            trio.lowlevel.spawn_system_task(self._trio_replies, name="jobwarden-sqlite-replies")
            trio.lowlevel.spawn_system_task(self._trio_flusher, name="jobwarden-sqlite-flush")
        with anyio.CancelScope(shield=True):
            await self._ready.wait()
        error = self._ready_error
        if error is None and self._failure is not None:
            error = str(self._failure)
        if error is not None:
            await self.close()
            raise StoreError(f"the job store {self.path} is unusable: {error}")
        self._accepting = True

    async def close(self) -> None:
        """Send what is queued, wait for every reply, then end the child and wait for it to exit;
        later writes raise ``WriterClosed``."""
        if self._closing:
            return
        self._closing = True
        self._accepting = False
        if self._ended is None:
            await self._abandon()
            return
        with anyio.CancelScope(shield=True):
            self.flush()
            if self._sent and not self._broken:
                self._drained = anyio.Event()
                await self._drained.wait()
            self._stop_writing()
            # End of input: the child commits nothing more and exits; its end of the reply
            # pipe closes, which the reply reader takes as the end.
            assert self._ended is not None
            with anyio.move_on_after(CLOSE_TIMEOUT_S):
                await self._ended.wait()
            if not self._ended.is_set():
                log.error("the SQLite writer process did not exit; killing it", pid=self.pid)
                self._kill()
                await self._ended.wait()
            self._process = None

    async def _abandon(self) -> None:
        """Spawned but never started (the opening was cancelled): nothing was written, so end
        its input and wait for it to exit."""
        for fd in (self._requests, self._replies):
            if fd >= 0:
                os.close(fd)
        self._requests = self._replies = -1
        process, self._process = self._process, None
        if process is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(process.wait)

    def _kill(self) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def wait_failed(self) -> StoreError:
        """Return once the child has ended without being asked to (every write fails from then
        on), with the ``StoreError`` the writes get; call after ``start``."""
        assert self._failed is not None
        await self._failed.wait()
        assert self._failure is not None
        return self._failure

    def statistics(self) -> StoreStatistics:
        """Commits and writes so far: writes / commits is how many each commit carried."""
        return StoreStatistics(commits=self.batches, writes=self.ops)

    # --- writes ---------------------------------------------------------------------------------

    async def write(self, op: WireOp, committed: Committed | None = None) -> None:
        """Queue ``op`` and return once it is committed; raise ``StoreError`` if it was not.

        ``committed``, if given, is called first, as the reply is read (as ``write_soon``'s): a
        caller cancelled while it waits still learns from it whether the write was committed.
        """
        frame = self._queue(op)
        frame.callbacks.append(committed)
        loop = self._loop
        if loop is not None:
            waiter = loop.create_future()
            frame.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if not frame.done:
                    # Until the reply whoever cancels: a shield does not stop asyncio's
                    # Task.cancel(), so a second one is waited out too.
                    waiter = loop.create_future()
                    frame.waiters.append(waiter)
                    await to_the_end(partial(_settled, waiter))
                raise
        else:
            event = frame.event
            if event is None:
                event = frame.event = anyio.Event()
            try:
                await event.wait()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await event.wait()
                raise
        if frame.error is not None:
            raise frame.error
        refused = frame.refused
        if refused is not None:
            error = refused.get(frame.ops.index(op))
            if error is not None:
                raise error

    def write_soon(self, op: WireOp, committed: Committed) -> None:
        """Queue ``op`` without waiting; ``committed`` is called on the event loop once it is
        committed (with None) or has failed (with the ``StoreError``). Raises ``WriterClosed``,
        or the ``StoreError`` that ended the child."""
        self._queue(op).callbacks.append(committed)

    def _queue(self, op: WireOp) -> _Frame:
        if not self._accepting:
            if self._failure is not None:
                raise self._failure
            raise WriterClosed(f"the job store {self.path} is closed")
        frame = self._open
        if frame is None:
            frame = self._open = _Frame()
            if self._loop is not None:
                self._loop.call_soon(self.flush)
            else:
                self._trio_flush.unpark()
        frame.ops.append(op)
        return frame

    def flush(self) -> None:
        """Send the open frame (the writes of this loop turn) to the child now, rather than at
        the end of the turn."""
        frame = self._open
        if frame is None:
            return
        self._open = None
        self._sent.append(frame)
        if self._broken:
            return  # failed with the others once the child's end is known
        data = marshal.dumps([op.wire for op in frame.ops])
        header = HEADER.pack(len(data))
        if self._out:
            self._out += header
            self._out += data
            return
        try:
            written = os.writev(self._requests, [header, data])
        except BlockingIOError:
            written = 0
        except OSError:  # BrokenPipeError: the child is gone; its reply pipe says how
            self._stop_writing()
            return
        if written < len(header) + len(data):
            if written < len(header):
                self._out += header[written:]
                self._out += data
            else:
                self._out += memoryview(data)[written - len(header) :]
            if self._loop is not None:
                self._loop.add_writer(self._requests, self._writable)
            else:  # the flushing task waits for the pipe (when this is not it: close())
                self._trio_flush.unpark()

    def _writable(self) -> None:
        """Send more of what the pipe could not take; stop waiting once it is all out."""
        try:
            written = os.write(self._requests, self._out)
        except BlockingIOError:
            return
        except OSError:
            self._stop_writing()
            return
        del self._out[:written]
        if not self._out and self._loop is not None:
            self._loop.remove_writer(self._requests)

    def _stop_writing(self) -> None:
        """Close our end of the request pipe: the child reads to its end and exits."""
        if self._requests < 0:
            return
        self._broken = True
        self._out.clear()
        fd, self._requests = self._requests, -1
        if self._loop is not None:
            self._loop.remove_writer(fd)
        else:
            import trio

            trio.lowlevel.notify_closing(fd)
            self._trio_flush.unpark()  # the flushing task ends
        os.close(fd)

    async def _trio_flusher(self) -> None:
        """On trio: flush once per turn of the run loop, and wait for the pipe when it is full."""
        import trio

        lot = self._trio_flush
        while True:
            if self._open is None and not self._out:
                await lot.park()  # until the first write of the next frame
            if self._requests < 0:
                return
            self.flush()
            while self._out and self._requests >= 0:
                try:
                    await trio.lowlevel.wait_writable(self._requests)
                except trio.ClosedResourceError:
                    return
                self._writable()

    # --- replies --------------------------------------------------------------------------------

    def _read(self) -> bytes | None:
        """What the child replied since the last read; b"" once it closed its end (it is
        exiting); None when there is nothing yet."""
        try:
            return os.read(self._replies, 1 << 16)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _readable(self) -> None:
        """Read what the child replied and settle the frames it covers."""
        chunk = self._read()
        if chunk is None:
            return
        if not chunk:
            loop = self._loop
            assert loop is not None
            assert self._process is not None
            loop.remove_reader(self._replies)
            # The child is exiting: wait for it on a worker thread, without a task.
            exited = loop.run_in_executor(None, self._process.wait)
            exited.add_done_callback(lambda done: self._reaped(done.result()))
            return
        self._received(chunk)

    async def _trio_replies(self) -> None:
        import trio

        while True:
            await trio.lowlevel.wait_readable(self._replies)
            chunk = self._read()
            if chunk is None:
                continue
            if not chunk:
                assert self._process is not None
                self._reaped(await trio.to_thread.run_sync(self._process.wait))
                return
            self._received(chunk)

    def _received(self, chunk: bytes) -> None:
        buffer = self._in
        buffer += chunk
        size = len(buffer)
        at = 0
        while size - at >= HEADER.size:
            (length,) = HEADER.unpack_from(buffer, at)
            end = at + HEADER.size + length
            if end > size:
                break
            reply = marshal.loads(bytes(buffer[at + HEADER.size : end]))
            at = end
            self._reply(*reply)
        del buffer[:at]

    def _reply(
        self,
        count: int,
        first: int | None,
        last: int | None,
        finished: int,
        purged: bool,
        oldest: int | None,
        results: list[tuple[int, int, object]],
        seconds: float,
        error: str | None,
    ) -> None:
        if count == 0:
            assert self._ready is not None
            if self._ready.is_set():  # the child's last word: it stops for good, and why
                log.error("the SQLite writer process stopped", reason=error, pid=self.pid)
                self._fail(StoreError(error or "the SQLite writer process stopped"))
                return
            self._ready_error = error  # its first word: ready, or why not
            self._ready.set()
            return
        frames = [self._sent.popleft() for _ in range(count)]
        failure: StoreError | None = None
        if error is None:
            for number, index, value in results:
                frame = frames[number]
                reason = frame.ops[index].answer(value)
                if reason is not None:
                    if frame.refused is None:
                        frame.refused = {}
                    frame.refused[index] = StoreError(
                        f"the job store {self.path} refused a write: {reason}"
                    )
            try:
                self._applied(Transaction(first, last, finished, purged, oldest, seconds))
            except Exception:
                log.exception("the store's commit bookkeeping failed")
        else:
            failure = StoreError(f"the job store {self.path} refused a write: {error}")
        self.batches += 1
        for frame in frames:
            self.ops += len(frame.ops)
            self._settle(frame, failure)
        if self._drained is not None and not self._sent:
            self._drained.set()

    def _settle(self, frame: _Frame, error: StoreError | None) -> None:
        frame.done = True
        frame.error = error
        # Latency per frame, not per write: a frame's writes were all queued in one loop turn
        # and wait for the same reply, and one clock read per frame is cheaper than two per write.
        seconds = time.perf_counter() - frame.began
        # A few series over dozens of writes: list.count per series, not a Counter's Python.
        names = [op.series for op in frame.ops]
        for series in set(names):
            self._timings.series(series).observe_many(seconds, names.count(series))
        refused = frame.refused
        for index, callback in enumerate(frame.callbacks):
            if callback is None:
                continue
            try:
                callback(error if refused is None else refused.get(index, error))
            except Exception:
                # Raised into the event loop's own machinery, it would be lost on asyncio and
                # crash the run on trio; the other writes of the frame still need their turn.
                log.exception("a commit callback failed")
        for waiter in frame.waiters:
            if not waiter.done():
                waiter.set_result(None)
        if frame.event is not None:
            frame.event.set()

    def _reaped(self, status: int) -> None:
        """The child closed its replies and exited: if that was not asked for, fail every
        pending and later write with what ended it."""
        fd, self._replies = self._replies, -1
        if self._loop is None:
            import trio

            trio.lowlevel.notify_closing(fd)
        os.close(fd)
        if not (self._closing and self._broken and status == 0):
            self._died(status)
        assert self._ended is not None
        self._ended.set()

    def _died(self, status: int) -> None:
        if status < 0:
            try:
                how = f"was killed by {signal.Signals(-status).name}"
            except ValueError:
                how = f"was killed by signal {-status}"
        else:
            how = f"exited with status {status}"
        if self._failure is None and not self._closing:
            log.error("the SQLite writer process ended", reason=how, pid=self.pid)
        self._fail(StoreError(f"the writer process of the job store {self.path} {how}"))

    def _fail(self, failure: StoreError) -> None:
        """Fail every pending and later write for good: with ``failure``, unless an earlier one
        (the child's last word, before it exited) said why first."""
        self._accepting = False
        if self._failure is None:
            self._failure = failure
        failure = self._failure
        if self._failed is not None:
            self._failed.set()
        self._stop_writing()
        pending = list(self._sent)
        if self._open is not None:
            pending.append(self._open)
            self._open = None
        self._sent.clear()
        for lost in pending:
            self._settle(lost, failure)
        if self._ready is not None and not self._ready.is_set():
            self._ready.set()
        if self._drained is not None:
            self._drained.set()


async def _settled(waiter: asyncio.Future[None]) -> None:
    """Wait for a frame's reply (``waiter`` is one of its waiters)."""
    await waiter

"""The parent side of process mode: a pool of worker processes reused between calls.

Workers start lazily, on the first call that finds none idle: a supervisor with no process tool
never starts one, and a worker killed or crashed is replaced only when a call needs it. They use
the "spawn" start method: the parent runs threads (worker threads, the SQLite writer), and a
forked child could inherit a lock some other thread held. Waiting for a worker's answer is an fd
wait (``anyio.wait_readable``), so it holds no thread and is cancelled at once. A call that is
cancelled (a timeout, a cancel, shutdown) while its worker runs it kills that worker: SIGTERM,
SIGKILL after ``GRACE_S``.

Each worker holds up to ``DEPTH`` calls: the one it runs and the next one, already written to
it, which it starts the moment it has answered (as a ProcessPoolExecutor keeps a call queued
ahead), instead of idling while the parent finishes the job and writes the next input. Replies
come back in the order the calls were written: the oldest unanswered call of a worker (its
"head") reads the next reply, then hands the turn to the call behind it. When a worker dies, its
head is the call it was running, which fails as crashed; the calls behind it never started, and
go back to be run by another worker. A call cancelled while it waits behind another is withdrawn
if it was not written yet, or else abandoned: should the worker reach it, the worker is killed
then (nothing else of its would run) and whatever waits behind it goes elsewhere.

A call's bytes are written by the worker's writer thread, in order: writing blocks until the
worker reads them, and it may be busy with the call ahead, so the event loop never writes.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
from collections import deque
from multiprocessing.process import BaseProcess

import anyio
import msgspec

from jobwarden.actors import process_worker
from jobwarden.actors.process_worker import READY, Call, Replies

GRACE_S = 0.2  # how long a worker may handle SIGTERM before it gets SIGKILL
DEPTH = 2  # calls a worker holds: the one it runs and the one written ahead

_context = multiprocessing.get_context("spawn")
_replies = msgspec.msgpack.Decoder(Replies)
_encoder = msgspec.msgpack.Encoder()


class Died(msgspec.Struct, frozen=True):
    """The worker ended during the call: ``exit_code`` >= 0, or killed by ``signal``."""

    exit_code: int | None
    signal: str | None


class ProcessPoolStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a process pool: its size, its idle workers, and how many it ever started."""

    size: int
    idle: int
    started: int


class _Pending:
    """One call handed to a worker. ``turn`` is set when its reply is the next one to read, or
    when ``requeued``: the worker went away before running it."""

    __slots__ = ("abandoned", "request", "requeued", "turn", "withdrawn", "written")

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.turn = anyio.Event()
        self.written = False  # the writer thread took it: its bytes are (being) in the stream
        self.withdrawn = False  # cancelled before that: the writer skips it
        self.abandoned = False  # cancelled after that: nobody reads its reply
        self.requeued = False


class _Worker:
    __slots__ = (
        "_calls_out",
        "_child_ends",
        "_lock",
        "_outbox",
        "_writer",
        "calls",
        "process",
        "ready",
        "replies",
    )

    def __init__(self) -> None:
        calls_in, self._calls_out = _context.Pipe(duplex=False)
        self.replies, replies_out = _context.Pipe(duplex=False)
        self._child_ends = (calls_in, replies_out)
        self.process: BaseProcess = _context.Process(
            target=process_worker.serve,
            args=self._child_ends,
            name="jobwarden-worker",
            daemon=True,
        )
        self.ready = False
        self.calls: deque[_Pending] = deque()  # written or to be written, oldest (running) first
        self._lock = threading.Lock()
        self._outbox: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._write_calls, name="jobwarden-worker-writer", daemon=True
        )

    async def start(self) -> None:
        try:
            # start() forks, execs and writes the spawn data: a few ms, kept off the loop.
            await anyio.to_thread.run_sync(self.process.start)
        finally:
            for end in self._child_ends:
                end.close()  # the parent's copies: while they are open, a death is no EOF
        self._writer.start()

    def hand(self, request: bytes) -> _Pending:
        """Queue a call for the worker; it is written after every call handed before it."""
        pending = _Pending(request)
        self.calls.append(pending)
        if len(self.calls) == 1:
            pending.turn.set()
        self._outbox.put(pending)
        return pending

    def withdraw(self, pending: _Pending) -> None:
        """A call cancelled while it waits behind another: never written, or abandoned."""
        with self._lock:
            if not pending.written:
                pending.withdrawn = True
        if pending.withdrawn:
            self.calls.remove(pending)
        else:
            pending.abandoned = True

    def _write_calls(self) -> None:
        """The writer thread: write each handed call in turn, until told to stop (None)."""
        try:
            while (pending := self._outbox.get()) is not None:
                with self._lock:
                    if pending.withdrawn:
                        continue
                    pending.written = True
                request, pending.request = pending.request, b""
                self._calls_out.send_bytes(request)
        except OSError:
            pass  # the worker is gone: the call being read sees the end of its replies
        finally:
            self._calls_out.close()

    async def read_reply(self) -> Replies | Died:
        """The head's reply (the worker's readiness first, on its first call)."""
        try:
            if not self.ready:
                if await self._receive() != READY:
                    raise EOFError("the worker did not start")
                self.ready = True
            reply: Replies = _replies.decode(await self._receive())
            return reply
        except (EOFError, OSError):
            return await self._died()

    async def _receive(self) -> bytes:
        await anyio.wait_readable(self.replies)
        return self.replies.recv_bytes()

    async def _died(self) -> Died:
        await anyio.to_thread.run_sync(self.process.join)
        code = self.process.exitcode
        assert code is not None
        if code < 0:
            return Died(exit_code=None, signal=signal.Signals(-code).name)
        return Died(exit_code=code, signal=None)

    async def stop(self) -> None:
        """Terminate the worker, kill it if it outlives the grace, and reap it."""
        process = self.process
        if process.pid is not None and process.exitcode is None:
            process.terminate()
            with anyio.move_on_after(GRACE_S):
                await anyio.wait_readable(process.sentinel)
            if process.exitcode is None:
                process.kill()
            await anyio.to_thread.run_sync(process.join)
        self.discard()

    def discard(self) -> None:
        """Release the connections and the process object of a worker that has ended."""
        self._outbox.put(None)  # the writer closes its end itself: it may be writing now
        if not self._writer.is_alive() and self._writer.ident is None:
            self._calls_out.close()  # never started: nobody else will
        self.replies.close()
        if self.process.pid is not None:
            self.process.close()


class ProcessPool:
    """At most ``size`` worker processes, each running one call at a time with one more queued."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._slots = anyio.Semaphore(size * DEPTH)
        self._workers: list[_Worker] = []
        self._started = 0

    def statistics(self) -> ProcessPoolStatistics:
        """How many workers the pool may run, has idle, and has started (replacements included)."""
        idle = sum(1 for worker in self._workers if not worker.calls)
        return ProcessPoolStatistics(size=self._size, idle=idle, started=self._started)

    async def call(self, call: Call[msgspec.Struct]) -> Replies | Died:
        """Run ``call`` in a worker; a cancelled call kills its worker if it was running it."""
        request = _encoder.encode(call)
        async with self._slots:
            while True:
                worker, fresh = self._choose()
                pending = worker.hand(request)
                try:
                    if fresh:
                        await worker.start()
                    await pending.turn.wait()
                    if pending.requeued:
                        continue  # the worker went away before it ran this call
                    reply = await worker.read_reply()
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await self._withdraw(worker, pending)
                    raise
                with anyio.CancelScope(shield=True):
                    await self._answered(worker, reply)
                return reply

    def _choose(self) -> tuple[_Worker, bool]:
        """An idle worker, else a new one while there is room, else the least busy one."""
        for worker in list(self._workers):
            if not worker.calls:
                if worker.process.exitcode is None:
                    return worker, False
                self._remove(worker)  # it died while idle
                worker.discard()
        if len(self._workers) < self._size:
            worker = _Worker()
            self._workers.append(worker)
            self._started += 1
            return worker, True
        return min(self._workers, key=lambda w: len(w.calls)), False

    async def _answered(self, worker: _Worker, reply: Replies | Died) -> None:
        """The head read its reply: pass the turn on, or let the worker go if it died."""
        worker.calls.popleft()
        if isinstance(reply, Died):
            self._requeue(worker)
            worker.discard()
            return
        if worker.calls and worker.calls[0].abandoned:
            # The worker now runs a call nobody waits for: stop it, and the rest goes elsewhere.
            self._requeue(worker)
            await worker.stop()
        elif worker.calls:
            worker.calls[0].turn.set()

    async def _withdraw(self, worker: _Worker, pending: _Pending) -> None:
        """A call left early (cancelled, or its worker failed to start)."""
        if pending.requeued or (pending not in worker.calls):
            return
        if worker.calls[0] is pending:
            self._requeue(worker)
            await worker.stop()
        else:
            worker.withdraw(pending)

    def _requeue(self, worker: _Worker) -> None:
        """Take the worker out of the pool; its unanswered calls never ran: send them back."""
        self._remove(worker)
        calls, worker.calls = worker.calls, deque()
        for pending in calls:
            pending.requeued = True
            pending.turn.set()

    def _remove(self, worker: _Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)

    async def close(self) -> None:
        """Stop every worker left (a busy one is stopped by its cancelled call)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            await worker.stop()

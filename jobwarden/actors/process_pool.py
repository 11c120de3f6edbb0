"""The parent side of process mode: a pool of worker processes reused between calls.

Workers start lazily, on the first call that finds none idle: a supervisor with no process tool
never starts one, and a worker killed or crashed is replaced only when a call needs it. They use
the "spawn" start method: the parent runs threads (worker threads, the SQLite writer), and a
forked child could inherit a lock some other thread held. Waiting for a worker's answer is an fd
wait (``anyio.wait_readable``), so it holds no thread and is cancelled at once. A call that is
cancelled (a timeout, a cancel, shutdown) kills its worker: SIGTERM, SIGKILL after ``GRACE_S``.
A worker's exit is awaited on a pidfd, also an fd wait: its ``sentinel`` and its pipe close when
every copy of them does, and a tool may close its copies (daemonising code closes inherited fds)
and run on. Each worker leads a process group of its own (``process_worker.serve``), and is
signalled as a group: the processes its tools started end with it (one that calls ``setsid``
escapes).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import select
import signal
from multiprocessing.process import BaseProcess
from multiprocessing.util import Finalize

import anyio
import msgspec

from jobwarden.actors import process_worker
from jobwarden.actors.process_logs import Logged, relog
from jobwarden.actors.process_worker import READY, Call, Progressed, Replies
from jobwarden.plugins.context import ProgressSink

GRACE_S = 0.2  # how long a worker may handle SIGTERM before it gets SIGKILL

_context = multiprocessing.get_context("spawn")
_messages = msgspec.msgpack.Decoder(Replies | Logged | Progressed)
_encoder = msgspec.msgpack.Encoder()


class Died(msgspec.Struct, frozen=True):
    """The worker ended during the call: ``exit_code`` >= 0, or killed by ``signal``."""

    exit_code: int | None
    signal: str | None


OUT_OF_CPU = Died(exit_code=None, signal="SIGXCPU")
"""How a call that used up its ``cpu_s`` ends: its worker killed by its CPU timer (SIGPROF,
``process_worker._limits``) or by RLIMIT_CPU, the backstop (SIGXCPU), told the same way."""


class ProcessPoolStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a process pool: its size, its idle workers, and how many it ever started."""

    size: int
    idle: int
    started: int


class _Worker:
    __slots__ = ("_at_exit", "_child", "_either", "_exited", "conn", "process", "ready")

    def __init__(self) -> None:
        self.conn, self._child = _context.Pipe()
        # Not daemonic, so that a tool may start processes with multiprocessing; the pool stops
        # every worker itself, and ``_at_exit`` kills one it has not at the interpreter's exit.
        self.process: BaseProcess = _context.Process(
            target=process_worker.serve, args=(self._child,), name="jobwarden-worker"
        )
        self._at_exit: Finalize | None = None
        self.ready = False
        self._exited: int | None = None  # a pidfd, readable once the worker has exited
        # Readable once the pipe or the pidfd is: a process the tool forked may hold the pipe
        # open, so the worker's exit alone is no EOF.
        self._either = select.epoll()
        self._either.register(self.conn.fileno(), select.EPOLLIN)

    async def start(self) -> None:
        try:
            # start() forks, execs and writes the spawn data: a few ms, kept off the loop.
            await anyio.to_thread.run_sync(self.process.start)
        finally:
            self._child.close()  # the parent's copy: while it is open, a death is no EOF
        assert self.process.pid is not None
        # Opened before anything could reap the worker: its pid cannot have been reused.
        self._exited = os.pidfd_open(self.process.pid)
        self._either.register(self._exited, select.EPOLLIN)
        # multiprocessing joins non-daemonic children at exit: a worker the pool never stopped
        # (its supervisor not closed) would keep the interpreter from exiting. Finalizers with an
        # exit priority run first.
        self._at_exit = Finalize(None, _kill_group, args=(self.process.pid,), exitpriority=0)

    async def call(
        self, request: bytes, progress: ProgressSink, job: tuple[str, int]
    ) -> Replies | Died:
        """Send ``request``; pass the progress reported for ``job`` (its id and attempt) to
        ``progress`` until the reply comes, or the worker exits or closes its pipe. Reports a
        thread left by an earlier call makes are dropped: they are not this job's."""
        try:
            if not self.ready:
                if await self._receive() != READY:
                    raise EOFError("the worker did not start")
                self.ready = True
            self.conn.send_bytes(request)
            while True:
                message: Replies | Logged | Progressed = _messages.decode(await self._receive())
                if isinstance(message, Logged):
                    relog(message)
                elif isinstance(message, Progressed):
                    if (message.job_id, message.attempt) == job:
                        await progress(message.fraction, message.message)
                else:
                    return message
        except (EOFError, OSError):
            return await self._died()

    async def _receive(self) -> bytes:
        """The worker's next message; EOFError once it has closed its pipe, or exited and
        everything it sent before has been read."""
        await anyio.wait_readable(self._either.fileno())
        if not self.conn.poll():
            raise EOFError("the worker exited")
        return self.conn.recv_bytes()

    async def _died(self) -> Died:
        """How the worker ended, its pipe closed or itself gone mid-call. A worker exiting closes
        its pipe an instant before it has exited, and its own exit code stands; one still alive
        after the grace closed its pipe and ran on, breaking the protocol, and is stopped as a
        cancelled call's is (the call ends crashed, its worker killed)."""
        assert self._exited is not None
        with anyio.move_on_after(GRACE_S):
            await anyio.wait_readable(self._exited)
        code = await self.stop()
        assert code is not None
        if code < 0:
            return Died(exit_code=None, signal=signal.Signals(-code).name)
        return Died(exit_code=code, signal=None)

    async def stop(self) -> int | None:
        """Terminate the worker, kill it if it outlives the grace, and reap it; its exit code
        (None if it never started)."""
        if self._exited is None:
            self.discard()
            return None
        if not self.exited():
            self._signal(signal.SIGTERM)
            with anyio.move_on_after(GRACE_S):
                await anyio.wait_readable(self._exited)
            if not self.exited():
                self._signal(signal.SIGKILL)
                await anyio.wait_readable(self._exited)
        return self.reap()

    def exited(self) -> bool:
        """Whether the worker has exited (it may not be reaped yet)."""
        return self._exited is not None and bool(select.select([self._exited], [], [], 0)[0])

    def reap(self) -> int | None:
        """Kill what is left of an exited worker's process group, reap the worker and release
        it; its exit code. Unreaped, the worker holds its pid, so the group's id cannot have
        passed to another process."""
        self._signal(signal.SIGKILL)
        if self._at_exit is not None:
            self._at_exit.cancel()  # before the reap, which frees the pid for another process
        self.process.join()  # it has exited: waitpid returns at once
        code = self.process.exitcode
        self.discard()
        return code

    def _signal(self, signum: int) -> None:
        assert self.process.pid is not None
        _signal_group(self.process.pid, signum)

    def discard(self) -> None:
        """Release the connection, the pidfd and the process object of a worker that has ended."""
        self._either.close()
        self.conn.close()
        if self._exited is not None:
            os.close(self._exited)
            self._exited = None
        if self.process.pid is not None:
            self.process.close()


class ProcessPool:
    """At most ``size`` worker processes, each running one call at a time."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._slots = anyio.Semaphore(size)
        self._idle: list[_Worker] = []
        self._started = 0

    def statistics(self) -> ProcessPoolStatistics:
        """How many workers the pool may run, has idle, and has started (replacements included)."""
        return ProcessPoolStatistics(size=self._size, idle=len(self._idle), started=self._started)

    async def call(self, call: Call[msgspec.Struct], progress: ProgressSink) -> Replies | Died:
        """Run ``call`` in a worker, passing what it reports as progress to ``progress``; a
        cancelled call kills its worker before re-raising."""
        request = _request(call)
        async with self._slots:
            worker = self._checkout()
            try:
                if worker is None:
                    worker = _Worker()
                    self._started += 1
                    await worker.start()
                reply = await worker.call(request, progress, (call.job_id, call.attempt))
            except BaseException:
                if worker is not None:
                    with anyio.CancelScope(shield=True):
                        await worker.stop()
                raise
            if not isinstance(reply, Died):
                self._idle.append(worker)
            elif reply.signal == "SIGPROF" and call.cpu_s is not None:
                return OUT_OF_CPU
            return reply

    def _checkout(self) -> _Worker | None:
        """An idle worker still alive, or None; one that died while idle is let go."""
        while self._idle:
            worker = self._idle.pop()
            if not worker.exited():
                return worker
            worker.reap()
        return None

    async def close(self) -> None:
        """Stop every idle worker (a busy one is stopped by its cancelled call)."""
        idle, self._idle = self._idle, []
        for worker in idle:
            await worker.stop()


def _signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` to worker ``pid``'s process group, or to the worker alone if it has not
    made the group yet (it does so first thing, before it runs any tool)."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _kill_group(pid: int) -> None:
    _signal_group(pid, signal.SIGKILL)


def _request(call: Call[msgspec.Struct]) -> bytes:
    """``call`` encoded for a worker, whatever ints its input holds; its input goes as builtins,
    datetimes as strings, so that an aware one keeps its offset (``process_worker.plain``).

    MessagePack carries ints of 64 bits at most, and an input holding a bigger one is valid (as
    in the other modes): refusing it here would fail the job without running the tool, as the
    plugin's error. Such an input, and only such, crosses as a pickle of the validated Struct,
    which the worker can load: it imports the input type anyway, and trusts its parent entirely.
    """
    try:
        return _encoder.encode(
            msgspec.structs.replace(call, input=process_worker.plain(call.input))
        )
    except OverflowError:
        pickled = msgspec.structs.replace(call, input=pickle.dumps(call.input), pickled=True)
        return _encoder.encode(pickled)

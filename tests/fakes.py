"""Fakes shared by the runtime tests: plugins whose tools misbehave on request, and gates."""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import msgspec

from jobwarden import JobState, Plugin, ToolContext
from jobwarden.errors import StoreError
from jobwarden.plugins.retry import RetryPolicy
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.base import JobPage, JobQuery
from jobwarden.store.memory import MemoryStore


class Gates:
    """Named rendezvous points: a tool announces it ``entered`` a gate and waits until it opens."""

    def __init__(self) -> None:
        self._entered: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self._open: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self._thread_open: defaultdict[str, threading.Event] = defaultdict(threading.Event)

    async def pass_through(self, key: str) -> None:
        self._entered[key].set()
        await self._open[key].wait()

    async def wait_entered(self, key: str) -> None:
        await self._entered[key].wait()

    def open(self, key: str) -> None:
        self._open[key].set()
        self._thread_open[key].set()

    def block_thread(self, key: str) -> None:
        """From a worker thread: announce the gate, then block the thread (not the loop) on it."""
        anyio.from_thread.run_sync(self._entered[key].set)
        self._thread_open[key].wait()


class KeyIn(msgspec.Struct):
    key: str = "k"


class TextOut(msgspec.Struct):
    text: str


class Crash(Exception):
    """Raised by FlakyStore on purpose."""


# A file name that is not valid UTF-8, as os.listdir gives one: a str with a lone surrogate.
UNDECODABLE = b"caf\xff".decode("utf-8", "surrogateescape")


class Unreadable(Exception):
    """An exception whose text cannot be read: its __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


class CheckedIn(msgspec.Struct):
    """An input whose type's own check (plugin code) fails badly for some keys."""

    key: str

    def __post_init__(self) -> None:
        if self.key == "crash":
            raise RuntimeError("the check itself is broken")
        if self.key == "exit":
            sys.exit(3)
        if self.key == "recurse":
            self.__post_init__()


def fake_plugin(gates: Gates, *, cap: int | None = None) -> Plugin:
    """A plugin named ``fake`` whose tools block, misbehave, or report progress on request."""
    plugin = Plugin("fake", version="0.1.0")

    @plugin.tool(timeout=30, max_concurrency=cap)
    async def gate(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Wait at gate ``key`` until the test opens it."""
        await gates.pass_through(inp.key)
        return TextOut(text=inp.key)

    @plugin.tool(timeout=0.05)
    async def hang(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Enter gate ``key`` and never leave (times out after 50 ms)."""
        await gates.pass_through(inp.key)
        raise AssertionError("unreachable: the gate never opens")

    @plugin.tool()
    async def bad_output(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Return an int where TextOut is declared."""
        wrong: Any = 42
        return wrong  # type: ignore[no-any-return]

    @plugin.tool()
    async def lying_struct(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Return a TextOut whose field has the wrong type."""
        return TextOut(text=123)  # type: ignore[arg-type]

    @plugin.tool()
    async def progress(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Report progress twice, then wait at the gate."""
        await ctx.progress(0.25, "quarter")
        await ctx.progress(0.5, "half")
        await gates.pass_through(inp.key)
        return TextOut(text="done")

    @plugin.tool(timeout=30)
    async def stubborn(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Swallow the first cancellation, then raise a plain error."""
        try:
            await gates.pass_through(inp.key)
        except anyio.get_cancelled_exc_class():
            raise ValueError("cleanup failed") from None
        return TextOut(text="never")

    @plugin.tool(mode="thread", timeout=30)
    def blocking(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Run in a thread, waiting at the gate through the event loop."""
        anyio.from_thread.run(gates.pass_through, inp.key)
        return TextOut(text="thread")

    @plugin.tool(mode="thread", timeout=30)
    def stuck(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Block its thread at the gate, deaf to cancellation."""
        gates.block_thread(inp.key)
        return TextOut(text="unstuck")

    return plugin


def patient_plugin(
    window_s: float, calls: list[str], gates: Gates, *, backoff_s: float = 0.0
) -> Plugin:
    """A plugin named ``patient`` whose tools wait at most ``window_s`` in the queue before an
    attempt starts, and note each call they get in ``calls`` as ``key#attempt``."""
    plugin = Plugin("patient", version="0.1.0")

    @plugin.tool(queue_timeout=window_s)
    async def note(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Note the call."""
        calls.append(f"{inp.key}#{ctx.attempt}")
        return TextOut(text=inp.key)

    retry = RetryPolicy(max_attempts=2, backoff_s=backoff_s, jitter=0)

    @plugin.tool(queue_timeout=window_s, retry=retry)
    async def second_try(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Note the call; attempt 1 then waits at gate ``key`` and fails, attempt 2 succeeds."""
        calls.append(f"{inp.key}#{ctx.attempt}")
        if ctx.attempt == 1:
            await gates.pass_through(inp.key)
            raise RuntimeError("the first attempt fails")
        return TextOut(text=inp.key)

    return plugin


async def outlive(since: datetime, seconds: float) -> None:
    """Return once the wall clock is ``seconds`` past ``since``: for a test whose point is that
    a timeout passed, not to wait for something to happen."""
    left = seconds - (datetime.now(UTC) - since).total_seconds()
    # anyio sleeps by the monotonic clock: the slack covers a wall clock that NTP slews slower.
    await anyio.sleep(max(0.0, left) + 0.01)


class FlakyStore(MemoryStore):
    """A memory store whose ``transition`` to a given state raises ``Crash`` a number of times."""

    def __init__(self, fail_state: str, times: int) -> None:
        super().__init__()
        self.fail_state = fail_state
        self.remaining = times

    async def transition(self, record: JobRecord, event: JobEvent) -> None:
        if record.state == self.fail_state and self.remaining > 0:
            self.remaining -= 1
            raise Crash(f"store refused {record.state}")
        await super().transition(record, event)


class SecondsIn(msgspec.Struct):
    seconds: float = 0.0


class OkOut(msgspec.Struct):
    ok: bool


def scoped_plugin() -> Plugin:
    """A plugin whose tool opens cancel scopes of its own before its first await."""
    plugin = Plugin("scoped")

    @plugin.tool(timeout=5.0)
    async def nested(inp: SecondsIn, ctx: ToolContext) -> OkOut:
        """Sleep inside move_on_after, then inside fail_after."""
        with anyio.move_on_after(10):
            await anyio.sleep(inp.seconds)
        with anyio.fail_after(10):
            await anyio.lowlevel.checkpoint()
        return OkOut(ok=True)

    return plugin


class PausingStore(MemoryStore):
    """A memory store that holds a job's ``succeeded`` write until ``release`` is called."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = anyio.Event()
        self._release = anyio.Event()
        self.job_id: str | None = None

    def release(self) -> None:
        self._release.set()

    async def transition(self, record: JobRecord, event: JobEvent) -> None:
        if record.id == self.job_id and record.state == "succeeded":
            self.paused.set()
            await self._release.wait()
        await super().transition(record, event)


class FullStore(MemoryStore):
    """A memory store that fails puts, transitions into ``fail_state``, or (``unreadable``)
    reads of records with StoreError."""

    def __init__(self, *, fail_puts: bool = False, fail_state: JobState | None = None) -> None:
        super().__init__()
        self.fail_puts = fail_puts
        self.fail_state = fail_state
        self.unreadable = False

    async def get(self, job_id: str) -> JobRecord | None:
        if self.unreadable:
            raise StoreError("the job store at redis://r:6379/0 could not be read: lost")
        return await super().get(job_id)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        if self.unreadable:
            raise StoreError("the job store at redis://r:6379/0 could not be read: lost")
        return await super().list_jobs(query)

    async def put(self, record: JobRecord, event: JobEvent) -> JobRecord:
        if self.fail_puts:
            raise StoreError("the job store jobs.db refused a write: database or disk is full")
        return await super().put(record, event)

    async def transition(self, record: JobRecord, event: JobEvent) -> None:
        if record.state is self.fail_state:
            raise StoreError("the job store jobs.db refused a write: database or disk is full")
        await super().transition(record, event)


class ReplayWatch(MemoryStore):
    """A memory store that lets a test wait until a stream of a job read the job's history: the
    stream was subscribed by then, so every later event of the job reaches it live."""

    def __init__(self) -> None:
        super().__init__()
        self._read: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)

    async def read_events(
        self, after: int, limit: int, *, job_id: str | None = None, tool: str | None = None
    ) -> list[JobEvent]:
        if job_id is not None:
            self._read[job_id].set()
        return await super().read_events(after, limit, job_id=job_id, tool=tool)

    async def wait_replayed(self, job_id: str) -> None:
        await self._read[job_id].wait()

"""A process-mode plugin whose tools misbehave in every way a worker process can.

Process tools are imported by reference in the worker, so they live at module level here.
"""

from __future__ import annotations

import datetime
import logging
import math
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import structlog

from jobwarden import Plugin, ToolContext
from tests.fakes import UNDECODABLE


class NumberIn(msgspec.Struct):
    n: int = 0


class NumberOut(msgspec.Struct):
    n: int


procs = Plugin("procs", version="0.1.0")


@procs.tool(mode="process", timeout=60)
def square(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Square n: the healthy tool."""
    return NumberOut(n=inp.n * inp.n)


@procs.tool(mode="process", timeout=60)
def logs(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Log through ctx.log, structlog and the stdlib's logging (below INFO too), then succeed."""
    ctx.log.info("through ctx.log", n=inp.n, thing=object())
    structlog.get_logger("user").warning("through structlog", n=inp.n)
    structlog.get_logger("user").debug("too fine to send")
    logging.getLogger("user.std").error("through logging, n=%d", inp.n)
    logging.getLogger("user.std").debug("too fine to send")
    return NumberOut(n=inp.n)


class Unshowable:
    """An object whose repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@procs.tool(mode="process", timeout=60)
def awkward_logs(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Log what MessagePack cannot carry as is: lone surrogates in messages and fields, ints
    past 64 bits, an object whose repr raises, and a stdlib call whose arguments do not fit."""
    structlog.get_logger("user").info(f"file {UNDECODABLE}.txt")
    structlog.get_logger("user").info("big", n=2**70, m=-(2**64), odd=Unshowable())
    logging.getLogger("user.std").info("std file %s", UNDECODABLE)
    ctx.log.info("ctx field", path=UNDECODABLE)
    logging.getLogger("user.std").info("value %d", "notanint")
    return NumberOut(n=inp.n)


@procs.tool(mode="process", timeout=60)
def steps(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Report n steps of progress with ctx.progress_sync, then return n."""
    for step in range(1, inp.n + 1):
        ctx.progress_sync(step / inp.n, f"step {step} of {inp.n}")
    return NumberOut(n=inp.n)


@procs.tool(mode="process", timeout=60)
def raises(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Raise ValueError."""
    raise ValueError(f"bad n {inp.n}")


@procs.tool(mode="process", timeout=60)
def wrong_type(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Return a str where NumberOut is declared."""
    wrong: Any = "not a number"
    return wrong  # type: ignore[no-any-return]


@procs.tool(mode="process", timeout=60)
def as_dict(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Return a dict shaped like NumberOut instead of a NumberOut."""
    wrong: Any = {"n": inp.n}
    return wrong  # type: ignore[no-any-return]


@procs.tool(mode="process", timeout=60)
def unencodable(inp: NumberIn, ctx: ToolContext) -> Any:
    """Return an object MessagePack cannot encode (its return type would take anything)."""
    return object()


class AnyOut(msgspec.Struct):
    value: Any


@procs.tool(mode="process", timeout=60)
def no_json(inp: NumberIn, ctx: ToolContext) -> AnyOut:
    """Return what no JSON (nor MessagePack) can hold: n = 0 a lone surrogate, 1 a list nested
    5,000 deep, 2 a list holding itself."""
    value: Any = UNDECODABLE
    if inp.n == 1:
        value = []
        for _ in range(5000):
            value = [value]
    elif inp.n == 2:
        value = []
        value.append(value)
    return AnyOut(value=value)


class Oddly(Exception):
    """An exception whose class names a module that is not valid Unicode."""


Oddly.__module__ = f"plugins.{UNDECODABLE}"


@procs.tool(mode="process", timeout=60)
def raises_oddly(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Raise an exception whose class's module name holds a lone surrogate."""
    raise Oddly("odd")


@procs.tool(mode="process", timeout=60)
def huge(inp: NumberIn, ctx: ToolContext) -> int:
    """Return 2**70, an int past MessagePack's 64 bits."""
    return 2**70


@procs.tool(mode="process", timeout=60)
def digits(inp: NumberIn, ctx: ToolContext) -> str:
    """Return n written out, whatever its size."""
    return str(inp.n)


@procs.tool(mode="process", timeout=0.5)
def spin(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Loop forever without looking at its deadline."""
    while True:
        inp.n += 1


@procs.tool(mode="process", timeout=60)
def exits(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """End the worker with os._exit(n)."""
    os._exit(inp.n)


@procs.tool(mode="process", timeout=60)
def names_a_bad_file(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Raise naming a file name that is not valid UTF-8 (surrogateescape-decoded)."""
    raise FileNotFoundError(UNDECODABLE)


@procs.tool(mode="process", timeout=60)
def leaves(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Call sys.exit(n), as a plugin wrapping a command-line tool might."""
    sys.exit(inp.n)


@procs.tool(mode="process", timeout=60)
def segfault(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Kill the worker with SIGSEGV."""
    os.kill(os.getpid(), signal.SIGSEGV)
    raise AssertionError("unreachable: the worker is dead")


@procs.tool(mode="process", timeout=60, memory_mb=512)
def hog(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Allocate 16 MiB blocks without bound."""
    blocks = []
    while True:
        blocks.append(bytearray(16 << 20))


@procs.tool(mode="process", timeout=60, cpu_s=1)
def burn(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Burn CPU without bound (its limit is one CPU second)."""
    while True:
        inp.n += 1


class BurnIn(msgspec.Struct):
    seconds: float = 0.0
    threads: int = 0


def cpu_used() -> float:
    """The process's CPU seconds so far, as the worker reads them for RLIMIT_CPU."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@procs.tool(mode="process", timeout=60)
def align(inp: BurnIn, ctx: ToolContext) -> NumberOut:
    """Burn CPU (no cpu_s) until the worker has used just past a whole second, at least one."""
    target = max(1, math.ceil(cpu_used())) + 0.05
    while cpu_used() < target:
        pass
    return NumberOut(n=math.floor(target))


@procs.tool(mode="process", timeout=60, cpu_s=1)
def burn_cpu(inp: BurnIn, ctx: ToolContext) -> NumberOut:
    """Burn ``seconds`` of the process's CPU time, in ``threads`` threads of its own if any
    (the calling thread waits for them), then return."""
    start = time.process_time()

    def burn() -> None:
        while time.process_time() - start < inp.seconds:
            pass

    if not inp.threads:
        burn()
    with ThreadPoolExecutor(max_workers=max(1, inp.threads)) as pool:
        for _ in range(inp.threads):
            pool.submit(burn)
    return NumberOut(n=inp.threads)


@procs.tool(mode="process", timeout=60)
def chatty(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Write to stdout and stderr, through Python and straight to the file descriptors."""
    sys.stdout.write("CHATTY-STDOUT\n")
    sys.stdout.flush()
    sys.stderr.write("CHATTY-STDERR\n")
    os.write(1, b"CHATTY-FD1\n")
    return NumberOut(n=inp.n)


class CrowdIn(msgspec.Struct):
    threads: int = 4
    per: int = 25
    size: int = 20_000


def crowd_line(thread: int, index: int, size: int) -> str:
    """The text thread ``thread`` sends as its ``index``-th message: large, and recognisable."""
    return f"{thread}:{index}:" + "x" * size


@procs.tool(mode="process", timeout=60)
def crowd(inp: CrowdIn, ctx: ToolContext) -> NumberOut:
    """From several threads at once, report progress and log (ctx.log and stdlib logging) many
    large messages, then return how many threads ran."""

    def work(thread: int) -> int:
        std = logging.getLogger("user.crowd")
        for index in range(inp.per):
            text = crowd_line(thread, index, inp.size)
            ctx.progress_sync((index + 1) / inp.per, text)
            ctx.log.info("crowd structlog", text=text)
            std.info("crowd stdlib %s", text)
        return 1

    with ThreadPoolExecutor(inp.threads) as pool:
        return NumberOut(n=sum(pool.map(work, range(inp.threads))))


# The next call (waits_for_the_reporter) has started in this worker: the reporter's next report
# lands during it.
_second_started = threading.Event()
_late_report_sent = threading.Event()


@procs.tool(mode="process", timeout=60)
def leaves_a_reporter(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Return at once, leaving a thread that reports progress for this job until the end."""

    def report() -> None:
        while True:
            ctx.progress_sync(0.9, "late")
            if _second_started.is_set():
                _late_report_sent.set()
            time.sleep(0.001)  # the reporter's own pace: not a wait for anything

    threading.Thread(target=report, daemon=True).start()
    return NumberOut(n=inp.n)


@procs.tool(mode="process", timeout=60)
def waits_for_the_reporter(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Report progress once, then return once the thread an earlier call left has reported
    during this call."""
    ctx.progress_sync(0.25, "mine")
    _second_started.set()
    if not _late_report_sent.wait(timeout=30):
        raise RuntimeError("the earlier call's thread never reported during this one")
    return NumberOut(n=inp.n)


@procs.tool(mode="process", timeout=60)
def closes_its_fds(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Close every inherited fd above 2, as daemonising code does, and block for n seconds."""
    os.closerange(3, 256)
    threading.Event().wait(inp.n)
    return NumberOut(n=inp.n)


class ForkIn(msgspec.Struct):
    pid_file: str
    seconds: float


@procs.tool(mode="process", timeout=60)
def forks_and_exits(inp: ForkIn, ctx: ToolContext) -> NumberOut:
    """Fork a child that inherits the worker's pipe and blocks, write its pid to ``pid_file``,
    then end the worker with os._exit(3)."""
    pid = os.fork()
    if pid == 0:
        threading.Event().wait(inp.seconds)
        os._exit(0)
    with open(inp.pid_file, "w") as file:
        file.write(str(pid))
    os._exit(3)


@procs.tool(mode="process", timeout=60)
def starts_a_child(inp: ForkIn, ctx: ToolContext) -> NumberOut:
    """Start a child process that sleeps, write its pid to ``pid_file``, report progress, and
    block."""
    child = subprocess.Popen(["sleep", str(inp.seconds)])
    with open(inp.pid_file, "w") as file:
        file.write(str(child.pid))
    ctx.progress_sync(0.5, "child started")
    threading.Event().wait(inp.seconds)
    return NumberOut(n=child.pid)


@procs.tool(mode="process", timeout=60)
def reads_stdin(inp: NumberIn, ctx: ToolContext) -> str:
    """Read up to n bytes from fd 0."""
    return os.read(0, inp.n).decode()


def _exit_with(code: int) -> None:
    os._exit(code)


@procs.tool(mode="process", timeout=60)
def uses_multiprocessing(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Run a multiprocessing child that exits with n, and return its exit code."""
    child = multiprocessing.get_context("fork").Process(target=_exit_with, args=(inp.n,))
    child.start()
    child.join()
    assert child.exitcode is not None
    return NumberOut(n=child.exitcode)


class When(msgspec.Struct):
    when: datetime.datetime


class WhenOut(msgspec.Struct):
    when: datetime.datetime
    seen: str


@procs.tool(mode="process", timeout=60)
def when(inp: When, ctx: ToolContext) -> WhenOut:
    """Return the datetime it was given, and how it saw it."""
    return WhenOut(when=inp.when, seen=inp.when.isoformat())

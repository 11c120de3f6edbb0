"""A worker holds the call it runs and the next: the one behind is never lost or misattributed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from jobwarden.actors.process_pool import Died, ProcessPool
from jobwarden.actors.process_worker import Call, Replies, Returned
from jobwarden.plugins.tool import reference
from tests.process_fakes import (
    BlobIn,
    GateIn,
    NumberIn,
    NumberOut,
    blob_size,
    square,
    waits_at_gate,
)

pytestmark = pytest.mark.anyio

HANG_GUARD_S = 60  # generous: only turns a hang into a failure
BIG = 4 << 20  # larger than any pipe buffer: writing it blocks until the worker reads it


def _call(func: Any, inp: msgspec.Struct) -> Call[msgspec.Struct]:
    return Call(
        target=reference(func),
        input_type=reference(type(inp)),
        input=inp,
        job_id="job",
        tool="procs.x",
        attempt=1,
    )


async def _run(pool: ProcessPool, func: Any, inp: msgspec.Struct, into: dict[str, Any]) -> None:
    into[func.__name__] = await pool.call(_call(func, inp))


async def _run_cancellable(
    pool: ProcessPool,
    func: Any,
    inp: msgspec.Struct,
    into: dict[str, Any],
    scopes: list[anyio.CancelScope],
) -> None:
    with anyio.CancelScope() as scope:
        scopes.append(scope)
        await _run(pool, func, inp, into)


def _number(reply: Replies | Died) -> int:
    assert isinstance(reply, Returned)
    return msgspec.msgpack.decode(reply.output, type=NumberOut).n


async def _open_gate(fifo: Path) -> None:
    def release() -> None:
        with open(fifo, "wb") as gate:
            gate.write(b"x")

    await anyio.to_thread.run_sync(release)


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """A FIFO a worker's call blocks on until the test writes into it."""
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    return fifo


async def test_a_call_written_behind_a_crash_runs_on_a_new_worker(gate: Path) -> None:
    """A worker dying mid-call fails only that call; the one queued behind it runs elsewhere."""
    pool = ProcessPool(1)
    replies: dict[str, Replies | Died] = {}
    try:
        with anyio.fail_after(HANG_GUARD_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    _run, pool, waits_at_gate, GateIn(fifo=str(gate), then_exit=3), replies
                )
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(_run, pool, square, NumberIn(n=5), replies)
                await anyio.wait_all_tasks_blocked()
                assert pool.statistics().calls == 2  # the square waits in the same worker
                await _open_gate(gate)
        assert replies["waits_at_gate"] == Died(exit_code=3, signal=None)
        assert _number(replies["square"]) == 25
        assert pool.statistics().started == 2
    finally:
        await pool.close()


async def test_cancelled_calls_behind_the_running_one_take_no_reply(gate: Path) -> None:
    """Calls cancelled while queued behind a running one never run as anyone's call: the running
    call gets its own reply, and the pool serves the next call correctly."""
    pool = ProcessPool(1)
    replies: dict[str, Replies | Died] = {}
    try:
        with anyio.fail_after(HANG_GUARD_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_run, pool, waits_at_gate, GateIn(fifo=str(gate)), replies)
                await anyio.wait_all_tasks_blocked()
                # The blob's bytes cannot all be written while the worker waits at the gate, so
                # the square behind it is never written before it is cancelled.
                scopes: list[anyio.CancelScope] = []
                for func, inp in ((blob_size, BlobIn(data=bytes(BIG))), (square, NumberIn(n=3))):
                    tg.start_soon(_run_cancellable, pool, func, inp, replies, scopes)
                    await anyio.wait_all_tasks_blocked()
                    scopes[-1].cancel()
                    await anyio.wait_all_tasks_blocked()
                await _open_gate(gate)
            assert _number(replies["waits_at_gate"]) == 1
            assert "blob_size" not in replies
            assert "square" not in replies
            assert _number(await pool.call(_call(square, NumberIn(n=7)))) == 49
            assert pool.statistics().calls == 0
    finally:
        await pool.close()

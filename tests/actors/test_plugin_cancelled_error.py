"""asyncio's CancelledError raised by plugin code on its own fails only its job; a real
cancellation of the runner (a shutdown) still stops it."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.errors import OutcomeType
from tests.fakes import Gates, KeyIn, TextOut, fake_plugin

pytestmark = pytest.mark.anyio

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


def cancelling_plugin(entered: anyio.Event) -> Plugin:
    """Tools that end in asyncio's CancelledError although nobody cancelled their job."""
    plugin = Plugin("cancelling", version="1.0.0")

    @plugin.tool(timeout=30.0)
    async def raises(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Raise CancelledError outright (on trio, an ordinary BaseException)."""
        raise asyncio.CancelledError(inp.key)

    @plugin.tool(timeout=30.0)
    async def awaits_cancelled(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Await a future that something else (here, the tool itself) cancelled."""
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future
        return TextOut(text="never")

    @plugin.tool(timeout=30.0)
    async def awaits_cancelled_task(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Await a task that something else cancelled once it had started."""
        task = asyncio.ensure_future(asyncio.sleep(3600))
        await asyncio.sleep(0)
        task.cancel()
        await task
        return TextOut(text="never")

    @plugin.tool(timeout=30.0)
    async def reraises_fresh(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Wait on a future forever; when cancelled, raise a CancelledError of its own."""
        future = asyncio.get_running_loop().create_future()
        entered.set()
        try:
            await future
        except asyncio.CancelledError:
            raise asyncio.CancelledError("a library's own") from None
        return TextOut(text="never")

    return plugin


async def _fails_only_its_job(tool: str) -> None:
    gates = Gates()
    reached = []
    with anyio.fail_after(30):
        async with Supervisor(
            plugins=[cancelling_plugin(anyio.Event()), fake_plugin(gates)]
        ) as sup:
            beside = await sup.submit("fake.gate", {"key": "beside"})
            await gates.wait_entered("beside")
            done = await sup.wait((await sup.submit(f"cancelling.{tool}", {"key": "k"})).id)
            reached.append("after the job")
            gates.open("beside")
            other = await sup.wait(beside.id)
            gates.open("next")
            assert await sup.run("fake.gate", {"key": "next"}) == {"text": "next"}
            assert sup.statistics().restarts == 0
            metrics = sup.registry.metrics(f"cancelling.{tool}")
            reached.append("end of body")
    assert reached == ["after the job", "end of body"]
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == OutcomeType.PLUGIN_ERROR
    assert done.error.message.startswith("CancelledError")
    assert done.error.details == {"exception": "asyncio.exceptions.CancelledError"}
    assert other.state is JobState.SUCCEEDED
    assert metrics.failures_by_type == {"plugin_error": 1}


async def test_a_tool_raising_cancelled_error_fails_only_its_job() -> None:
    """A tool raising CancelledError itself fails as plugin_error while the job beside it, the
    supervisor and the host's body all carry on."""
    await _fails_only_its_job("raises")


@asyncio_only
@pytest.mark.parametrize("tool", ["awaits_cancelled", "awaits_cancelled_task"])
async def test_a_tool_awaiting_something_cancelled_fails_only_its_job(tool: str) -> None:
    """A tool awaiting a future or task that something else cancelled fails as plugin_error
    while the job beside it, the supervisor and the host's body all carry on."""
    await _fails_only_its_job(tool)


@asyncio_only
async def test_a_shutdown_still_cancels_a_tool_that_raises_its_own_cancelled_error() -> None:
    """A shutdown cancels a running tool that answers the cancellation with a CancelledError of
    its own: the job ends cancelled by the shutdown and the supervisor exits cleanly."""
    entered = anyio.Event()
    with anyio.fail_after(30):
        sup = Supervisor(plugins=[cancelling_plugin(entered)], shutdown_grace_s=0)
        async with sup:
            rec = await sup.submit("cancelling.reraises_fresh", {"key": "k"})
            await entered.wait()
        final = await sup.get(rec.id)
    assert final.state is JobState.CANCELLED
    assert final.error is not None
    assert final.error.message == "the supervisor shut down while the job was running"


@asyncio_only
async def test_a_runner_that_interrupted_jobs_still_tells_a_tools_cancelled_error() -> None:
    """On a single runner that has just cancelled one job and timed out another, a tool's own
    CancelledError still fails only its job: nothing of those cancellations lingers."""
    gates = Gates()
    with anyio.fail_after(30):
        plugins = [cancelling_plugin(anyio.Event()), fake_plugin(gates)]
        async with Supervisor(plugins=plugins, concurrency=1) as sup:
            cancelled = await sup.submit("fake.gate", {"key": "cancelled"})
            await gates.wait_entered("cancelled")
            assert (await sup.cancel(cancelled.id)).state is JobState.CANCELLED
            late = await sup.submit("fake.gate", {"key": "late"}, timeout_s=0.01)
            assert (await sup.wait(late.id)).state is JobState.TIMED_OUT
            rec = await sup.submit("cancelling.awaits_cancelled_task", {"key": "k"})
            done = await sup.wait(rec.id)
            assert sup.statistics().restarts == 0
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == OutcomeType.PLUGIN_ERROR

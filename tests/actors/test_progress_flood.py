"""A tool that floods progress events: its job still ends right, healthy jobs beside it succeed,
and a subscriber that reads only afterwards gets every event, in order, from the history."""

from __future__ import annotations

import pytest

from jobwarden import JobState, Plugin, Supervisor, ToolContext, builtin
from jobwarden.records import JobEvent
from tests.fakes import KeyIn, TextOut

pytestmark = pytest.mark.anyio

FLOOD = 5_000


def flooding_plugin() -> Plugin:
    plugin = Plugin("noisy", version="1.0.0")

    @plugin.tool(timeout=60)
    async def chatter(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Report progress FLOOD times as fast as it can."""
        for step in range(FLOOD):
            await ctx.progress(step / FLOOD, None)
        return TextOut(text="done")

    return plugin


async def test_a_progress_flood_harms_nobody() -> None:
    """5,000 progress reports: the job succeeds, 20 echo jobs beside it too, metrics agree."""
    async with Supervisor(plugins=[builtin, flooding_plugin()]) as sup:
        async with sup.subscribe() as late_reader:
            noisy = await sup.submit("noisy.chatter", {})
            healthy = [await sup.submit("builtin.echo", {"text": str(n)}) for n in range(20)]
            done = await sup.wait(noisy.id, timeout=60)
            finals = [await sup.wait(r.id, timeout=60) for r in healthy]
            seen: list[JobEvent] = []
            async for event in late_reader:
                assert isinstance(event, JobEvent)
                seen.append(event)
                if event.subject == noisy.id and event.data.state.terminal:
                    break
        noisy_metrics = sup.registry.metrics("noisy.chatter")
        echo_metrics = sup.registry.metrics("builtin.echo")
    assert (done.state, done.result, done.progress) == (
        JobState.SUCCEEDED,
        {"text": "done"},
        (FLOOD - 1) / FLOOD,
    )
    assert all(r.state is JobState.SUCCEEDED for r in finals)
    offsets = [e.offset for e in seen]
    assert offsets == sorted(set(offsets))
    mine = [e.type.rsplit(".", 1)[1] for e in seen if e.subject == noisy.id]
    assert mine.count("progress") == FLOOD
    assert (mine[0], mine[1], mine[-1]) == ("queued", "running", "succeeded")
    assert (noisy_metrics.calls, noisy_metrics.successes) == (1, 1)
    assert (echo_metrics.calls, echo_metrics.successes) == (20, 20)

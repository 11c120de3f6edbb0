"""A tool's execution time is its call's alone: logging the failure (a traceback rendered) and
what follows the call are not counted, however long they take."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs
from structlog.typing import EventDict

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.actors import tool_runner
from tests.fakes import KeyIn, TextOut
from tests.process_fakes import procs

pytestmark = pytest.mark.anyio

LOGGING_S = 1000.0  # what rendering the "tool raised" line takes on the fake clock
CALL_S = 0.25  # what the fake tools' calls take on it


class FakeClock:
    """Stands for the ``time`` module in the ToolRunner: ``perf_counter`` reads ``now``."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        """The fake time."""
        return self.now


def timed_plugin(clock: FakeClock) -> Plugin:
    """Tools whose calls take ``CALL_S`` on ``clock``, in async and thread mode."""
    plugin = Plugin("timed", version="1.0.0")

    @plugin.tool()
    async def raises(inp: KeyIn, ctx: ToolContext) -> TextOut:
        clock.now += CALL_S
        raise ValueError(inp.key)

    @plugin.tool(mode="thread")
    def raises_in_thread(inp: KeyIn, ctx: ToolContext) -> TextOut:
        clock.now += CALL_S
        raise ValueError(inp.key)

    @plugin.tool()
    async def returns(inp: KeyIn, ctx: ToolContext) -> TextOut:
        clock.now += CALL_S
        return TextOut(text=inp.key)

    return plugin


@pytest.mark.parametrize(
    ("tool", "payload", "call_ms"),
    [
        ("timed.raises", {"key": "k"}, CALL_S * 1000),
        ("timed.raises_in_thread", {"key": "k"}, CALL_S * 1000),
        ("timed.returns", {"key": "k"}, CALL_S * 1000),
        ("procs.raises", {"n": 1}, 0.0),  # its call runs in a worker, off the fake clock
    ],
)
async def test_the_recorded_time_is_the_calls_not_the_logging(
    tool: str, payload: dict[str, Any], call_ms: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However long logging a tool's failure takes, the execution time recorded for it (last
    and mean ms) is its call's."""
    clock = FakeClock()
    monkeypatch.setattr(tool_runner, "time", clock)

    def slow_logging(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
        clock.now += LOGGING_S
        return event_dict

    with anyio.fail_after(60), capture_logs(processors=[slow_logging]) as logs:
        async with Supervisor(plugins=[timed_plugin(clock), procs]) as sup:
            done = await sup.wait((await sup.submit(tool, payload)).id, timeout=60)
            metrics = sup.registry.metrics(tool)
    expected = JobState.SUCCEEDED if tool == "timed.returns" else JobState.FAILED
    assert done.state is expected
    assert expected is JobState.SUCCEEDED or any(e["event"] == "tool raised" for e in logs)
    assert (metrics.last_ms, metrics.mean_ms) == (call_ms, call_ms)

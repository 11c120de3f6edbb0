"""NaN or infinity returned where the type allows null fails the job in every mode."""

from __future__ import annotations

import math

import pytest

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.errors import OutcomeType
from tests.fakes import KeyIn

pytestmark = pytest.mark.anyio


def infinite(inp: KeyIn, ctx: ToolContext) -> float | None:
    """Return infinity where the type allows a float or null (module level, for process mode)."""
    return math.inf


@pytest.mark.parametrize("mode", ["thread", "process"])
async def test_infinity_in_an_optional_float_is_invalid_output(mode: str) -> None:
    """A tool declared ``-> float | None`` returning infinity ends invalid_output, not
    succeeded with null, in thread and process mode."""
    plugin = Plugin("nan")
    plugin.tool(mode=mode, timeout=30.0)(infinite)  # type: ignore[arg-type]
    async with Supervisor(plugins=[plugin]) as sup:
        done = await sup.wait((await sup.submit("nan.infinite", {})).id, timeout=30)
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == OutcomeType.INVALID_OUTPUT
    assert "it holds NaN or infinity where a number must be" in done.error.message

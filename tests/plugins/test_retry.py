"""Retry policies: what they refuse, and the delays they give however many attempts ran."""

from __future__ import annotations

import math
import random
import re

import msgspec
import pytest
from structlog.testing import capture_logs

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.plugins.retry import MAX_BACKOFF_S, RetryPolicy
from tests.fakes import KeyIn, TextOut

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"max_attempts": 0}, "max_attempts must be >= 1"),
        ({"backoff_s": -1.0}, "backoff_s and max_backoff_s must be >= 0"),
        ({"backoff_s": math.nan}, "backoff_s and max_backoff_s must be >= 0"),
        ({"multiplier": 0.5}, "multiplier >= 1"),
        ({"backoff_s": math.inf}, "backoff_s and multiplier must be finite"),
        ({"multiplier": math.inf}, "backoff_s and multiplier must be finite"),
        ({"max_backoff_s": math.inf}, "max_backoff_s must be at most 3.1536e+07 (a year)"),
        ({"max_backoff_s": MAX_BACKOFF_S + 1}, "max_backoff_s must be at most"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1"),
        ({"retry_on": frozenset({"cancelled"})}, "a cancelled job is never retried"),
    ],
)
def test_a_policy_no_job_could_follow_is_refused(settings: dict[str, object], says: str) -> None:
    """A policy whose waits could not be scheduled (infinite, past a year, NaN) or whose
    settings contradict themselves is refused when it is made."""
    with pytest.raises(ValueError, match=re.escape(says)):
        msgspec.convert(settings, RetryPolicy)


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1.0), (2, 2.0), (7, 60.0), (1025, 60.0)])
def test_a_delay_never_passes_max_backoff_however_many_attempts_ran(
    attempt: int, delay: float
) -> None:
    """The delay stays within max_backoff_s (plus jitter) even where the exponential growth
    passes what a float can hold."""
    policy = RetryPolicy(max_attempts=10_000, backoff_s=1.0, max_backoff_s=60.0, jitter=0.0)
    assert policy.delay(attempt, random.Random(1)) == delay


async def test_a_job_failing_past_a_thousand_attempts_ends_failed() -> None:
    """An always-failing tool with 1,100 attempts and no wait runs them all and ends failed,
    with no runner crash (the growth overflowed at attempt 1,025, leaving the job running)."""
    plugin = Plugin("stubborn", version="1.0.0")

    @plugin.tool(retry=RetryPolicy(max_attempts=1_100, backoff_s=0.0, max_backoff_s=0.0))
    async def fail(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Fail every time."""
        raise ValueError(inp.key)

    # Captured, not rendered: a traceback rendered per attempt would cost the test seconds.
    with capture_logs():
        async with Supervisor(plugins=[plugin]) as sup:
            job = await sup.submit("stubborn.fail", {"key": "k"})
            done = await sup.wait(job.id, timeout=60)
            restarts = sup.statistics().restarts
    assert (done.state, done.attempt, restarts) == (JobState.FAILED, 1_100, 0)

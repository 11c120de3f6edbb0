"""Per-tool metrics: counters per outcome, mean, last, a bounded window for p95, histograms of
execution times and queue waits, and jobs ended by outcome."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from jobwarden.actors.states import JobState
from jobwarden.errors import ErrorInfo
from jobwarden.histogram import BOUNDS
from jobwarden.plugins.metrics import (
    CANCELLED,
    SUCCEEDED,
    TIMEOUT,
    WINDOW,
    MetricsCell,
    pooled_p95_ms,
)
from jobwarden.records import JobRecord

P95_RANK = math.ceil(0.95 * WINDOW)  # nearest rank of the p95 in a full window


def run(cell: MetricsCell, outcome: str, duration_s: float) -> None:
    """One complete execution: begin, then finish."""
    cell.begin()
    cell.finish(outcome, duration_s)


def test_empty_snapshot() -> None:
    """A tool never run has zero counts and no timings."""
    snap = MetricsCell("demo.echo").snapshot()
    assert snap.tool == "demo.echo"
    assert (snap.calls, snap.successes, snap.errors, snap.timeouts, snap.cancellations) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert snap.in_flight == 0
    assert snap.failures_by_type == {}
    assert (snap.last_used, snap.last_ms, snap.mean_ms, snap.p95_ms) == (None, None, None, None)


def test_counts_per_outcome() -> None:
    """Each outcome is counted; errors exclude timeouts and cancellations."""
    cell = MetricsCell("t")
    for outcome in [SUCCEEDED, SUCCEEDED, "plugin_error", "plugin_error", "invalid_output"]:
        run(cell, outcome, 0.5)
    run(cell, TIMEOUT, 0.5)
    run(cell, CANCELLED, 0.5)
    run(cell, CANCELLED, 0.5)
    snap = cell.snapshot()
    assert snap.calls == 8
    assert snap.successes == 2
    assert snap.errors == 3
    assert snap.timeouts == 1
    assert snap.cancellations == 2
    assert snap.failures_by_type == {
        "plugin_error": 2,
        "invalid_output": 1,
        TIMEOUT: 1,
        CANCELLED: 2,
    }
    assert snap.calls == snap.successes + sum(snap.failures_by_type.values())


def test_in_flight_counts_begun_but_unfinished_executions() -> None:
    """in_flight goes up on begin() and down on finish()."""
    cell = MetricsCell("t")
    cell.begin()
    cell.begin()
    assert cell.snapshot().in_flight == 2
    cell.finish(SUCCEEDED, 0.1)
    snap = cell.snapshot()
    assert (snap.in_flight, snap.calls) == (1, 1)


def test_mean_and_last_in_milliseconds() -> None:
    """mean_ms averages every call; last_ms is the most recent duration."""
    cell = MetricsCell("t")
    for duration in (0.5, 0.25, 0.75, 0.5):
        run(cell, SUCCEEDED, duration)
    snap = cell.snapshot()
    assert snap.mean_ms == 500.0
    assert snap.last_ms == 500.0
    run(cell, "plugin_error", 0.125)
    assert cell.snapshot().last_ms == 125.0


def test_failed_calls_count_towards_timings() -> None:
    """Durations of failed calls are part of mean and p95 too."""
    cell = MetricsCell("t")
    run(cell, SUCCEEDED, 1.0)
    run(cell, TIMEOUT, 3.0)
    snap = cell.snapshot()
    assert snap.mean_ms == 2000.0
    assert snap.p95_ms == 3000.0


@pytest.mark.parametrize(
    ("durations", "expected_s"),
    [
        ([1.0], 1.0),
        ([2.0, 1.0], 2.0),
        (list(range(1, 21)), 19.0),  # ceil(0.95 * 20) = 19th smallest
        (list(range(100, 0, -1)), 95.0),  # order of arrival does not matter
        ([5.0] * 10 + [1.0], 5.0),
    ],
)
def test_p95_is_nearest_rank(durations: list[float], expected_s: float) -> None:
    """p95 is the nearest-rank 95th percentile: the ceil(0.95 * n)-th smallest duration."""
    cell = MetricsCell("t")
    for duration in durations:
        run(cell, SUCCEEDED, float(duration))
    assert cell.snapshot().p95_ms == expected_s * 1000.0


def test_last_used_is_a_utc_time_of_the_last_call() -> None:
    """last_used is a timezone-aware UTC datetime taken when the last call finished."""
    cell = MetricsCell("t")
    before = datetime.now(UTC)
    run(cell, SUCCEEDED, 0.1)
    after = datetime.now(UTC)
    last_used = cell.snapshot().last_used
    assert last_used is not None
    assert last_used.tzinfo is not None
    assert before <= last_used <= after


def test_snapshot_is_frozen_and_detached() -> None:
    """A snapshot cannot be changed and does not change when the cell does."""
    cell = MetricsCell("t")
    run(cell, "plugin_error", 0.1)
    snap = cell.snapshot()
    with pytest.raises(AttributeError):
        snap.calls = 5  # type: ignore[misc]
    snap.failures_by_type["plugin_error"] = 99
    run(cell, "plugin_error", 0.1)
    assert cell.snapshot().failures_by_type == {"plugin_error": 2}
    assert snap.calls == 1
    msgspec.json.encode(snap)  # JSON-ready


def test_window_memory_is_bounded() -> None:
    """After many more than WINDOW calls only WINDOW durations are kept."""
    cell = MetricsCell("t")
    for i in range(3 * WINDOW + 7):
        run(cell, SUCCEEDED, float(i))
    assert len(cell._durations) == WINDOW
    assert cell.snapshot().calls == 3 * WINDOW + 7


def test_p95_reflects_the_recent_window() -> None:
    """Once slow calls have left the window, p95 shows only the recent fast ones."""
    cell = MetricsCell("t")
    for _ in range(WINDOW):
        run(cell, SUCCEEDED, 100.0)
    for _ in range(WINDOW):
        run(cell, SUCCEEDED, 1.0)
    snap = cell.snapshot()
    assert snap.p95_ms == 1000.0
    assert snap.mean_ms == pytest.approx(50_500.0)  # the mean covers every call


def test_window_holds_exactly_the_last_window_durations() -> None:
    """After WINDOW + k calls the window holds the durations of the last WINDOW calls only."""
    cell = MetricsCell("t")
    total = WINDOW + 10
    for i in range(1, total + 1):
        run(cell, SUCCEEDED, float(i))
    assert sorted(cell._durations) == [float(i) for i in range(total - WINDOW + 1, total + 1)]


def test_p95_forgets_the_oldest_call_first() -> None:
    """The oldest duration is the first to leave the window, so it cannot sway p95 later."""
    cell = MetricsCell("t")
    slow_in_window = WINDOW - P95_RANK  # this many slow calls still leave p95 on a fast one
    total = WINDOW + 88
    for i in range(1, total + 1):
        slow = i == 1 or i > total - slow_in_window
        run(cell, SUCCEEDED, 1000.0 if slow else 1.0)
    assert cell.snapshot().p95_ms == 1000.0


def _record(attempt: int = 1, waited_s: float = 0.25, error: str | None = None) -> JobRecord:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    return JobRecord(
        id="j1",
        tool="t",
        plugin="p",
        state=JobState.RUNNING if error is None else JobState.FAILED,
        input={},
        created_at=created,
        started_at=created + timedelta(seconds=waited_s),
        attempt=attempt,
        error=None if error is None else ErrorInfo(type=error, message="m"),
    )


def test_each_execution_lands_in_the_duration_histogram() -> None:
    """Every finished execution is counted in the histogram, whose sum also gives the mean."""
    cell = MetricsCell("t")
    run(cell, SUCCEEDED, 0.002)
    run(cell, "plugin_error", 3.0)
    snapshot = cell.histogram.snapshot()
    assert snapshot.count == cell.snapshot().calls == 2
    assert snapshot.sum == 3.002
    assert snapshot.cumulative[BOUNDS.index(0.0025)] == 1


def test_queue_wait_counts_first_attempts_only() -> None:
    """A first attempt's wait since submit is observed; a retry's (which includes the earlier
    attempts) is not, and a wall clock that stepped back counts as no wait."""
    cell = MetricsCell("t")
    cell.started(_record(waited_s=0.25))
    cell.started(_record(attempt=2, waited_s=9.0))
    cell.started(_record(waited_s=-1.0))
    snapshot = cell.queue_waits.snapshot()
    assert snapshot.count == 2
    assert snapshot.sum == 0.25
    assert snapshot.cumulative[0] == 1


def test_ended_jobs_are_counted_by_outcome() -> None:
    """A job that ended counts under ``succeeded`` or its error type."""
    cell = MetricsCell("t")
    cell.ended_job(_record())
    cell.ended_job(_record(error="timeout"))
    cell.ended_job(_record(error="timeout"))
    assert cell.ended == {SUCCEEDED: 1, TIMEOUT: 2}


def test_a_plugins_p95_pools_its_tools_recent_calls() -> None:
    """A plugin's p95 ranks the recent calls of all its tools together: one slow call of a
    rarely used tool beside a hundred fast ones of another does not set it (the largest of
    the tools' p95s did)."""
    busy, rare, idle = MetricsCell("p.busy"), MetricsCell("p.rare"), MetricsCell("p.idle")
    for _ in range(100):
        run(busy, SUCCEEDED, 0.002)
    run(rare, TIMEOUT, 0.3)
    assert rare.snapshot().p95_ms == 300.0
    assert pooled_p95_ms([busy, rare, idle]) == 2.0
    assert pooled_p95_ms([idle]) is None

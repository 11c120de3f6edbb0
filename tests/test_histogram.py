"""The hot-path histogram: bucket placement, cumulative snapshots, and the sum."""

from __future__ import annotations

from jobwarden.histogram import BOUNDS, Histogram


def test_a_value_on_a_bound_counts_in_that_bound_s_bucket() -> None:
    """Prometheus buckets are "less than or equal": a value equal to a bound is counted under it."""
    histogram = Histogram()
    histogram.observe(BOUNDS[3])
    snapshot = histogram.snapshot()
    assert snapshot.cumulative[2] == 0
    assert snapshot.cumulative[3] == 1


def test_cumulative_counts_rise_to_the_total_at_inf() -> None:
    """Snapshots are cumulative and non-decreasing; a value past the last bound is only in +Inf."""
    histogram = Histogram()
    for value in (0.0, 0.003, 0.003, 2.0, BOUNDS[-1] * 10):
        histogram.observe(value)
    snapshot = histogram.snapshot()
    assert len(snapshot.cumulative) == len(BOUNDS) + 1
    assert list(snapshot.cumulative) == sorted(snapshot.cumulative)
    assert snapshot.cumulative[-2] == 4
    assert snapshot.count == snapshot.cumulative[-1] == 5
    assert snapshot.sum == 0.006 + 2.0 + BOUNDS[-1] * 10


def test_bounds_are_strictly_increasing() -> None:
    """The fixed bounds are sorted without repeats, as bisect and Prometheus both need."""
    assert list(BOUNDS) == sorted(set(BOUNDS))

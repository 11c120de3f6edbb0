"""Latency histograms cheap enough for the hot path: a bisect and an increment per observation.

Counts are kept per bucket, plain ints in a list, and made cumulative only when read (a Prometheus
scrape), so an observation takes no lock and allocates nothing.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate

import msgspec

# Upper bounds in seconds, from a fast store write (100 us) to a long tool call (5 min).
BOUNDS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


class HistogramSnapshot(msgspec.Struct, frozen=True):
    """Cumulative counts: ``cumulative[i]`` observations were <= ``bounds[i]``; the last is +Inf.

    ``count`` is the +Inf bucket's count, so the two always agree.
    """

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        """How many observations in all."""
        return self.cumulative[-1]


class Histogram:
    """Observations of one series: a count per bucket of ``BOUNDS`` (and one past it), and a sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation; ``bisect_left`` puts a value equal to a bound in that bucket."""
        self.counts[bisect_left(BOUNDS, seconds)] += 1
        self.sum += seconds

    def observe_many(self, seconds: float, count: int) -> None:
        """Count ``count`` observations of the same duration (the writes of one batch)."""
        self.counts[bisect_left(BOUNDS, seconds)] += count
        self.sum += seconds * count

    def snapshot(self) -> HistogramSnapshot:
        """The cumulative counts and the sum, as of now."""
        return HistogramSnapshot(BOUNDS, tuple(accumulate(self.counts)), self.sum)

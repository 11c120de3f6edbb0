"""Per-tool metrics: execution counters, duration and queue-wait histograms, a bounded window of
recent durations for the p95, and the jobs that ended by outcome."""

from __future__ import annotations

import math
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from jobwarden.histogram import BOUNDS, Histogram
from jobwarden.plugins.circuit import CircuitStatus
from jobwarden.records import JobRecord

SUCCEEDED = "succeeded"
TIMEOUT = "timeout"
CANCELLED = "cancelled"
WINDOW = 512  # recent durations kept for p95: bounded memory, recent behaviour


class ToolMetrics(msgspec.Struct, frozen=True):
    """A snapshot of one tool's metrics."""

    tool: str
    calls: int
    successes: int
    errors: int
    timeouts: int
    cancellations: int
    in_flight: int
    failures_by_type: dict[str, int]
    last_used: datetime | None
    last_ms: float | None
    mean_ms: float | None
    p95_ms: float | None
    circuit: CircuitStatus | None = None
    abandoned_threads: int = 0


class MetricsCell:
    """Mutable counters for one tool; only the registry touches it.

    ``calls``, ``successes``, ``failures`` and ``histogram`` count executions (attempts), as the
    ToolRunner reports them; ``ended`` counts jobs by how they ended, including those that never
    ran (cancelled or timed out while queued, refused by an open circuit, interrupted).
    ``abandoned_threads`` also changes in worker threads (an abandoned call that ends), hence
    its lock; every other counter changes on the event loop only.
    """

    __slots__ = (
        "_abandoned_lock",
        "_durations",
        "abandoned_threads",
        "calls",
        "ended",
        "failures",
        "histogram",
        "in_flight",
        "last_s",
        "last_used",
        "queue_waits",
        "successes",
        "tool",
    )

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.calls = 0
        self.successes = 0
        self.in_flight = 0
        self.failures: dict[str, int] = {}
        self.last_used: float | None = None
        self.last_s: float | None = None
        self.histogram = Histogram()
        self.queue_waits = Histogram()
        self.ended: dict[str, int] = {}
        self._durations = array("d")
        self.abandoned_threads = 0
        self._abandoned_lock = threading.Lock()

    def adjust_abandoned(self, delta: int) -> None:
        """A thread was abandoned (+1) or an abandoned one ended (-1)."""
        with self._abandoned_lock:
            self.abandoned_threads += delta

    def begin(self) -> None:
        """An execution started."""
        self.in_flight += 1

    def finish(self, outcome: str, duration_s: float) -> None:
        """An execution ended with ``outcome`` (``succeeded`` or an error type)."""
        self.in_flight -= 1
        self.calls += 1
        if outcome == SUCCEEDED:
            self.successes += 1
        else:
            self.failures[outcome] = self.failures.get(outcome, 0) + 1
        self.last_used = time.time()
        self.last_s = duration_s
        histogram = self.histogram  # Histogram.observe, inlined: this runs for every execution
        histogram.counts[bisect_left(BOUNDS, duration_s)] += 1
        histogram.sum += duration_s
        if len(self._durations) < WINDOW:
            self._durations.append(duration_s)
        else:
            self._durations[(self.calls - 1) % WINDOW] = duration_s  # the oldest entry

    def started(self, record: JobRecord) -> None:
        """A job entered running: its first attempt's wait since submit joins ``queue_waits``."""
        started_at = record.started_at
        if record.attempt == 1 and started_at is not None:
            waited = (started_at - record.created_at).total_seconds()
            if waited < 0:
                waited = 0.0  # a wall clock may step back
            waits = self.queue_waits  # Histogram.observe, inlined: this runs for every job
            waits.counts[bisect_left(BOUNDS, waited)] += 1
            waits.sum += waited

    def ended_job(self, record: JobRecord) -> None:
        """A job reached its terminal state: count it by its outcome."""
        error = record.error
        outcome = SUCCEEDED if error is None else error.type
        ended = self.ended
        ended[outcome] = ended.get(outcome, 0) + 1

    def snapshot(self) -> ToolMetrics:
        """A frozen copy, with the p95 over the recent window."""
        timeouts = self.failures.get(TIMEOUT, 0)
        cancels = self.failures.get(CANCELLED, 0)
        return ToolMetrics(
            tool=self.tool,
            calls=self.calls,
            successes=self.successes,
            errors=sum(self.failures.values()) - timeouts - cancels,
            timeouts=timeouts,
            cancellations=cancels,
            in_flight=self.in_flight,
            failures_by_type=dict(self.failures),
            last_used=datetime.fromtimestamp(self.last_used, UTC) if self.last_used else None,
            last_ms=_ms(self.last_s),
            mean_ms=_ms(self.histogram.sum / self.calls) if self.calls else None,
            p95_ms=_ms(_percentile(self._durations, 0.95)),
            abandoned_threads=self.abandoned_threads,
        )


def pooled_p95_ms(cells: Iterable[MetricsCell]) -> float | None:
    """The p95 over the recent durations of several tools (a plugin's), each tool's window
    of its last ``WINDOW`` calls pooled: not the largest of their p95s, which one slow call of
    a rarely used tool would set."""
    pooled = array("d")
    for cell in cells:
        pooled.extend(cell._durations)
    return _ms(_percentile(pooled, 0.95))


def _percentile(values: array[float], q: float) -> float | None:
    """Nearest-rank percentile, or None when there is nothing to rank."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q * len(ranked)) - 1)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)

"""How long a store's operations take, one latency histogram per operation, for /metrics."""

from __future__ import annotations

from jobwarden.histogram import Histogram, HistogramSnapshot

# Writes as their callers wait for them (batching included; the writer times each frame of
# writes once), reads by kind, and the commits.
OPERATIONS = (
    "put",
    "transition",
    "purge",
    "get",
    "list_jobs",
    "unfinished",
    "read_events",
    "commit",
)


class StoreTimings:
    """A histogram per operation of ``OPERATIONS``.

    Every series exists from the start, so the dict itself never changes. ``commit`` is one
    transaction as the writer process timed it (from its BEGIN to its COMMIT).
    """

    __slots__ = ("_series",)

    def __init__(self) -> None:
        self._series = {operation: Histogram() for operation in OPERATIONS}

    def series(self, operation: str) -> Histogram:
        """The histogram of ``operation``, for a caller that observes it in bulk (the writer, per
        frame of writes)."""
        return self._series[operation]

    def observe(self, operation: str, seconds: float) -> None:
        """One ``operation`` (one of ``OPERATIONS``) took ``seconds``."""
        self._series[operation].observe(seconds)

    def snapshot(self) -> dict[str, HistogramSnapshot]:
        """Each operation's histogram as of now."""
        return {operation: series.snapshot() for operation, series in self._series.items()}

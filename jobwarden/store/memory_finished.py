"""The finished jobs of a memory store, kept so a purge finds what it removes without a scan.

Retention purges in the background, a batch at a time, on the event loop. A scan of every stored
job per batch stopped the loop for a third of a second at a million jobs (more for a purge by
age), once per batch of 50. Here each finished job is listed twice: its id in creation order (a
purge by count takes the oldest) and ``(end time, id)`` in a heap (a purge by age takes those
that ended before the cutoff). A purged job leaves both lazily (see ``memory_index``), so a purge
costs about the jobs it removes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import datetime

from jobwarden.records import JobRecord
from jobwarden.store.memory_index import SLACK, SortedIds


class FinishedJobs:
    """Finished jobs by creation and by end time; ``count`` of them are still stored."""

    __slots__ = ("_ended", "_ids")

    def __init__(self) -> None:
        self._ids = SortedIds()
        self._ended: list[tuple[datetime, str]] = []  # a heap

    @property
    def count(self) -> int:
        """How many finished jobs are stored."""
        return self._ids.live

    def add(self, record: JobRecord) -> None:
        """``record`` just reached a terminal state (or was stored in one)."""
        self._ids.add(record.id)
        if record.finished_at is not None:
            heapq.heappush(self._ended, (record.finished_at, record.id))

    def select(
        self,
        stored: Callable[[str], bool],
        *,
        finished_before: datetime | None,
        keep_finished: int | None,
        limit: int | None,
    ) -> list[str]:
        """The ids a purge removes, oldest first (the stores' shared rule): up to ``limit`` of
        the oldest beyond the newest ``keep_finished``, and up to ``limit`` of the earliest to
        have ended before ``finished_before``; of those together, the ``limit`` oldest."""
        if limit is not None and limit <= 0:
            return []
        chosen: set[str] = set()
        if keep_finished is not None:
            wanted = self.count - keep_finished
            if limit is not None:
                wanted = min(wanted, limit)
            if wanted > 0:
                for job_id in self._ids.oldest_first(stored):
                    chosen.add(job_id)
                    if len(chosen) == wanted:
                        break
        popped: list[tuple[datetime, str]] = []
        if finished_before is not None:
            ended = self._ended
            while (
                ended and ended[0][0] < finished_before and (limit is None or len(popped) < limit)
            ):
                entry = heapq.heappop(ended)
                if stored(entry[1]):
                    popped.append(entry)
            chosen.update(job_id for _, job_id in popped)
        ordered = sorted(chosen)[:limit]
        if len(ordered) < len(chosen):
            taken = set(ordered)
            for entry in popped:
                if entry[1] not in taken:
                    heapq.heappush(self._ended, entry)
        return ordered

    def removed(self, count: int, stored: Callable[[str], bool]) -> None:
        """``count`` of the jobs ``select`` returned are gone; ``stored`` says what is left."""
        if self._ids.drop(count):
            self._ids.rebuild(stored)
        if len(self._ended) > 2 * self.count + SLACK:
            self._ended = [entry for entry in self._ended if stored(entry[1])]
            heapq.heapify(self._ended)

"""The finished jobs of a memory store, kept so a purge finds what it removes without a scan.

Retention purges in the background, a batch at a time, on the event loop. A scan of every stored
job per batch stopped the loop for a third of a second at a million jobs (more for a purge by
age), once per batch of 50. Here each finished job is listed twice: its id in creation order (a
purge by count takes the oldest) and ``(end time, id)`` in end-time order (a purge by age takes
those that ended before the cutoff). A purged job leaves both lazily (see ``memory_index``), so
a purge costs about the jobs it removes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from jobwarden.records import JobRecord
from jobwarden.store.memory_index import Sorted


class FinishedJobs:
    """Finished jobs by creation and by end time; ``count`` of them are still stored."""

    __slots__ = ("_ended", "_ids")

    def __init__(self) -> None:
        self._ids: Sorted[str] = Sorted()
        self._ended: Sorted[tuple[datetime, str]] = Sorted()

    @property
    def count(self) -> int:
        """How many finished jobs are stored."""
        return self._ids.live

    def add(self, record: JobRecord) -> None:
        """``record`` just reached a terminal state (or was stored in one)."""
        self._ids.add(record.id)
        if record.finished_at is not None:
            # Jobs end in time order, give or take: this is an append, but for a clock step.
            self._ended.add((record.finished_at, record.id))

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
        if finished_before is not None:
            ended = self._ended.oldest_first(lambda entry: stored(entry[1]))
            for found, (ended_at, job_id) in enumerate(ended):
                if ended_at >= finished_before or found == limit:
                    break
                chosen.add(job_id)
        return sorted(chosen)[:limit]

    def removed(self, records: Sequence[JobRecord], stored: Callable[[str], bool]) -> None:
        """``records`` (of the ids ``select`` returned) are gone; ``stored`` says what is left."""
        if self._ids.drop(len(records)):
            self._ids.rebuild(stored)
        timed = sum(1 for record in records if record.finished_at is not None)
        if self._ended.drop(timed):
            self._ended.rebuild(lambda entry: stored(entry[1]))

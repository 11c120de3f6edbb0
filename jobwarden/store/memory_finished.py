"""The finished jobs of a memory store, kept so a purge finds what it removes without a scan.

Retention purges in the background, a batch at a time, on the event loop. A scan of every stored
job per batch stopped the loop for a third of a second at a million jobs (more for a purge by
age), once per batch of 50. Here each finished job is listed twice: its id in creation order (a
purge by count takes the oldest) and ``(end time, id)`` in end-time order (a purge by age takes
those that ended before the cutoff). A purged job leaves both lazily (see ``memory_index``), so
a purge costs about the jobs it removes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from jobwarden.records import JobRecord
from jobwarden.store.memory_index import Sorted


class FinishedJobs:
    """Finished jobs by creation and by end time; ``count`` of them are still stored.

    The two lists are built by the first purge that has something to remove (one scan of the
    stored jobs), and kept up to date from then on. Until then a finished job costs a counter
    and a comparison: a program whose jobs never reach the retention limits pays for no list.
    """

    __slots__ = ("_earliest", "_ended", "_ids", "count")

    def __init__(self) -> None:
        self._ids: Sorted[str] | None = None
        self._ended: Sorted[tuple[datetime, str]] | None = None
        self._earliest: datetime | None = None  # the earliest end, until the lists are built
        self.count = 0

    def add(self, record: JobRecord) -> None:
        """``record`` just reached a terminal state (or was stored in one)."""
        self.count += 1
        ended_at = record.finished_at
        if self._ids is None or self._ended is None:
            if ended_at is not None and (self._earliest is None or ended_at < self._earliest):
                self._earliest = ended_at
            return
        self._ids.add(record.id)
        if ended_at is not None:
            # Jobs end in time order, give or take: this is an append, but for a clock step.
            self._ended.add((ended_at, record.id))

    def _lists(
        self, records: Iterable[JobRecord]
    ) -> tuple[Sorted[str], Sorted[tuple[datetime, str]]]:
        if self._ids is None or self._ended is None:
            finished = [record for record in records if record.state.terminal]
            self._ids = Sorted.of(sorted(record.id for record in finished))
            self._ended = Sorted.of(
                sorted((r.finished_at, r.id) for r in finished if r.finished_at is not None)
            )
        return self._ids, self._ended

    def select(
        self,
        records: dict[str, JobRecord],
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
        if self._ids is None and (keep_finished is None or self.count <= keep_finished):
            earliest = self._earliest
            if finished_before is None or earliest is None or earliest >= finished_before:
                return []  # nothing to remove, and no list to build for it
        ids, ended = self._lists(records.values())
        stored = records.__contains__
        chosen: set[str] = set()
        if keep_finished is not None:
            wanted = self.count - keep_finished
            if limit is not None:
                wanted = min(wanted, limit)
            if wanted > 0:
                for job_id in ids.oldest_first(stored):
                    chosen.add(job_id)
                    if len(chosen) == wanted:
                        break
        if finished_before is not None:
            earliest_first = ended.oldest_first(lambda entry: stored(entry[1]))
            for found, (ended_at, job_id) in enumerate(earliest_first):
                if ended_at >= finished_before or found == limit:
                    break
                chosen.add(job_id)
        return sorted(chosen)[:limit]

    def removed(self, records: Sequence[JobRecord], stored: Callable[[str], bool]) -> None:
        """``records`` (of the ids ``select`` returned) are gone; ``stored`` says what is left."""
        self.count -= len(records)
        ids, ended = self._ids, self._ended
        if ids is None or ended is None:
            return
        if ids.drop(len(records)):
            ids.rebuild(stored)
        if ended.drop(sum(1 for record in records if record.finished_at is not None)):
            ended.rebuild(lambda entry: stored(entry[1]))

"""The finished jobs of a memory store, kept so a purge finds what it removes without a scan.

Retention purges in the background, a batch at a time, on the event loop. A scan of every stored
job per batch stopped the loop for a third of a second at a million jobs (more for a purge by
age), once per batch of 50. Here each finished job is listed twice: its id in creation order (a
purge by count takes the oldest) and ``(end time, id)`` in a heap (a purge by age takes those
that ended before the cutoff). A purged job leaves both lazily: an entry whose job is gone is
skipped where it is met, and each list is rebuilt once more than half of it is gone, so a purge
costs about the jobs it removes.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Container
from datetime import datetime

from jobwarden.records import JobRecord

SLACK = 64  # entries of purged jobs tolerated beyond half of a list before it is rebuilt


class FinishedJobs:
    """Finished jobs by creation and by end time; ``count`` of them are still stored."""

    __slots__ = ("_ended", "_head", "_ids", "count")

    def __init__(self) -> None:
        self._ids: list[str] = []  # sorted; before ``_head`` every job is gone
        self._head = 0
        self._ended: list[tuple[datetime, str]] = []  # a heap
        self.count = 0

    def add(self, record: JobRecord) -> None:
        """``record`` just reached a terminal state (or was stored in one)."""
        ids = self._ids
        job_id = record.id
        if not ids or job_id > ids[-1]:
            ids.append(job_id)
        else:  # a job that ran long ends after younger ones
            bisect.insort(ids, job_id, lo=self._head)
        if record.finished_at is not None:
            heapq.heappush(self._ended, (record.finished_at, job_id))
        self.count += 1

    def select(
        self,
        stored: Container[str],
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
            ids = self._ids
            at = self._head
            while at < len(ids) and ids[at] not in stored:
                at += 1
            self._head = at
            while wanted > 0 and at < len(ids):
                if ids[at] in stored:
                    chosen.add(ids[at])
                    wanted -= 1
                at += 1
        popped: list[tuple[datetime, str]] = []
        if finished_before is not None:
            ended = self._ended
            while (
                ended and ended[0][0] < finished_before and (limit is None or len(popped) < limit)
            ):
                entry = heapq.heappop(ended)
                if entry[1] in stored:
                    popped.append(entry)
            chosen.update(job_id for _, job_id in popped)
        ordered = sorted(chosen)[:limit]
        if len(ordered) < len(chosen):
            taken = set(ordered)
            for entry in popped:
                if entry[1] not in taken:
                    heapq.heappush(self._ended, entry)
        return ordered

    def removed(self, count: int, stored: Container[str]) -> None:
        """``count`` of the jobs ``select`` returned are gone; ``stored`` holds what is left."""
        self.count -= count
        if len(self._ids) - self._head > 2 * self.count + SLACK:
            self._ids = [job_id for job_id in self._ids[self._head :] if job_id in stored]
            self._head = 0
        if len(self._ended) > 2 * self.count + SLACK:
            self._ended = [entry for entry in self._ended if entry[1] in stored]
            heapq.heapify(self._ended)

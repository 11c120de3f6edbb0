"""Retention: finished jobs (and the events only they needed) are purged in the background.

A sweep deletes, ``batch`` jobs at a time, every finished job that ended more than ``max_age_s``
ago and every finished job beyond the newest ``max_jobs``. Small batches keep each write short, so
job writes queue behind a purge for a few milliseconds at most. Unfinished jobs are never purged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import msgspec
import structlog

from jobwarden.store.base import JobStore

log = structlog.get_logger("jobwarden.retention")


MAX_AGE_S = 100 * 365.25 * 86_400  # a cut-off further back would be no date a record holds
# A sweep further apart would be no deadline anyio can set: an int past a float's range raises.
MAX_INTERVAL_S = MAX_AGE_S
# A count goes to the stores as a 64-bit integer (SQLite's LIMIT, Redis's ZRANGE).
MAX_COUNT = 2**63 - 1


class Retention(msgspec.Struct, frozen=True):
    """When finished jobs are purged; None turns a criterion off.

    Bounded to what every store can use: ``max_age_s`` and ``interval_s`` to a century,
    ``max_jobs`` and ``batch`` to 2**63 - 1 (a 64-bit integer, as SQLite and Redis take it).
    """

    max_age_s: float | None = 7 * 24 * 3600.0
    max_jobs: int | None = 1_000_000
    interval_s: float = 60.0
    batch: int = 50

    def __post_init__(self) -> None:
        if self.max_age_s is not None and not 0 <= self.max_age_s <= MAX_AGE_S:
            raise ValueError(
                f"max_age_s must be between 0 and {MAX_AGE_S:g} (a century), or None for no limit"
            )
        if self.max_jobs is not None and not 0 <= self.max_jobs <= MAX_COUNT:
            raise ValueError(f"max_jobs must be between 0 and 2**63 - 1 ({MAX_COUNT}), or None")
        if not 0 < self.interval_s <= MAX_INTERVAL_S:
            raise ValueError(f"interval_s must be > 0 and at most {MAX_INTERVAL_S:g} (a century)")
        if not 1 <= self.batch <= MAX_COUNT:
            raise ValueError(f"batch must be between 1 and 2**63 - 1 ({MAX_COUNT})")


class Retainer:
    """Runs sweeps every ``interval_s``; ``sweep()`` also runs one on demand."""

    def __init__(self, store: JobStore, policy: Retention) -> None:
        self._store = store
        self.policy = policy
        self.sweeps = 0
        self.purged = 0
        self._swept: anyio.Event | None = None

    async def run(self) -> None:
        """Sweep now and then every ``interval_s``, until cancelled; a failed sweep is logged."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("retention sweep failed; retrying at the next interval")
            await anyio.sleep(self.policy.interval_s)

    async def sweep(self) -> int:
        """Purge everything the policy selects, in batches; return how many jobs went."""
        policy = self.policy
        if policy.max_age_s is None and policy.max_jobs is None:
            return 0
        removed = 0
        while True:
            cutoff = None
            if policy.max_age_s is not None:
                cutoff = datetime.now(UTC) - timedelta(seconds=policy.max_age_s)
            batch = await self._store.purge(
                finished_before=cutoff, keep_finished=policy.max_jobs, limit=policy.batch
            )
            removed += batch
            if batch < policy.batch:
                break
            await anyio.lowlevel.checkpoint()
        self.sweeps += 1
        self.purged += removed
        if removed:
            log.info("purged finished jobs", count=removed)
        if self._swept is not None:
            self._swept.set()
        return removed

    async def wait_swept(self, count: int) -> None:
        """Return once ``count`` sweeps have completed in all."""
        while self.sweeps < count:
            self._swept = anyio.Event()
            await self._swept.wait()

"""Retry policies: how often a failed call runs again, and how long it waits first."""

from __future__ import annotations

import math
import random

import msgspec

from jobwarden.errors import OutcomeType

DEFAULT_RETRY_ON = frozenset({OutcomeType.PLUGIN_ERROR, OutcomeType.TIMEOUT, OutcomeType.CRASHED})
MAX_BACKOFF_S = 365 * 86_400.0  # a year: a retry time must stay a date the records can hold


class RetryPolicy(msgspec.Struct, frozen=True):
    """Up to ``max_attempts`` calls in all; before attempt n + 1 the job waits
    ``min(max_backoff_s, backoff_s * multiplier ** (n - 1))``, spread by +/- ``jitter`` of itself
    so that jobs that failed together do not all come back together. Only failures whose error
    type is in ``retry_on`` are retried (a cancel never is).
    """

    max_attempts: int = 3
    backoff_s: float = 0.5
    multiplier: float = 2.0
    max_backoff_s: float = 30.0
    jitter: float = 0.2
    retry_on: frozenset[str] = DEFAULT_RETRY_ON

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not (self.backoff_s >= 0 and self.max_backoff_s >= 0 and self.multiplier >= 1):
            raise ValueError("backoff_s and max_backoff_s must be >= 0, multiplier >= 1")
        if not all(map(math.isfinite, (self.backoff_s, self.multiplier))):
            raise ValueError("backoff_s and multiplier must be finite")
        if self.max_backoff_s > MAX_BACKOFF_S:
            raise ValueError(f"max_backoff_s must be at most {MAX_BACKOFF_S:g} (a year)")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        unknown = set(self.retry_on) - {t.value for t in OutcomeType}
        if unknown or OutcomeType.CANCELLED in self.retry_on:
            raise ValueError(
                f"retry_on takes job outcome types other than cancelled, not {sorted(unknown)}"
                if unknown
                else "a cancelled job is never retried"
            )

    def retries(self, attempt: int, error_type: str) -> bool:
        """Whether a failure of ``error_type`` on ``attempt`` (1-based) earns another attempt."""
        return attempt < self.max_attempts and error_type in self.retry_on

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after attempt ``attempt`` (1-based) failed."""
        try:
            grown = self.backoff_s * self.multiplier ** (attempt - 1)
        except OverflowError:  # a float power past 1e308, after a thousand attempts or so
            grown = math.inf
        base = min(self.max_backoff_s, grown)
        return max(0.0, base * (1 + self.jitter * (2 * rng.random() - 1)))

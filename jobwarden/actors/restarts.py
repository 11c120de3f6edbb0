"""Restart intensity, OTP style: at most ``max_restarts`` within ``window_s`` seconds."""

from __future__ import annotations

import time
from collections import deque

from jobwarden.errors import SupervisorCrashed


class RestartIntensity:
    """Counts restarts in a sliding window; one too many raises ``SupervisorCrashed``."""

    def __init__(self, max_restarts: int, window_s: float) -> None:
        if max_restarts < 0 or not window_s > 0:
            raise ValueError("max_restarts must be >= 0 and window_s > 0")
        self.max_restarts = max_restarts
        self.window_s = window_s
        self._times: deque[float] = deque()
        self.total = 0

    def record(self, cause: BaseException) -> None:
        """Note one restart; raise ``SupervisorCrashed`` from ``cause`` when over the limit."""
        now = time.monotonic()
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        self._times.append(now)
        self.total += 1
        if len(self._times) > self.max_restarts:
            raise SupervisorCrashed(
                f"{len(self._times)} runner crashes within {self.window_s}s "
                f"(limit {self.max_restarts}); last: {type(cause).__name__}: {cause}"
            ) from cause

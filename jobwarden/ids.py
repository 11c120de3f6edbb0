"""Job ids that sort by creation time, so listings and cursors can order by id alone."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last = 0


def new_job_id() -> str:
    """A 32-hex-digit id: 48 bits of milliseconds, then 80 random bits, strictly increasing here."""
    global _last
    candidate = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    with _lock:
        _last = candidate if candidate > _last else _last + 1
        return f"{_last:032x}"

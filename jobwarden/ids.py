"""Job ids that sort by creation time, so listings and cursors can order by id alone."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last = 0
_RANDOM_BYTES = 10
_BATCH = 4096  # ids per read of the OS's random source: one syscall, not one per id
_pool = b""
_used = 0


def new_job_id() -> str:
    """A 32-hex-digit id: 48 bits of milliseconds, then 80 random bits, strictly increasing here."""
    global _last, _pool, _used
    millis = time.time_ns() // 1_000_000
    with _lock:
        if _used >= len(_pool):
            _pool, _used = os.urandom(_RANDOM_BYTES * _BATCH), 0
        random = int.from_bytes(_pool[_used : _used + _RANDOM_BYTES])
        _used += _RANDOM_BYTES
        candidate = millis << 80 | random
        _last = candidate if candidate > _last else _last + 1
        # 32 hex digits through bytes: half the work of the format spec ``032x`` on 128 bits.
        return _last.to_bytes(16).hex()

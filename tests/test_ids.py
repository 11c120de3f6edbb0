"""Job ids: 32 hex digits that sort by creation, unique across threads."""

from __future__ import annotations

import itertools
import re
import threading
from typing import TypeVar

import pytest

from jobwarden import ids
from jobwarden.ids import new_job_id

T = TypeVar("T", str, int)
HEX32 = re.compile(r"^[0-9a-f]{32}$")


class FakeTime:
    """Stands in for the ``time`` module inside ids.py: a wall clock that stands still."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def time_ns(self) -> int:
        return self.now_ns


def increasing(values: list[T]) -> bool:
    """True when every value is greater than the one before."""
    return all(a < b for a, b in itertools.pairwise(values))


def test_ids_are_32_lowercase_hex_digits() -> None:
    """Every id is exactly 32 lowercase hex digits."""
    for _ in range(1000):
        assert HEX32.match(new_job_id())


def test_ids_strictly_increase() -> None:
    """Successive ids compare greater, as strings and as numbers, even within one millisecond."""
    made = [new_job_id() for _ in range(20_000)]
    assert increasing(made)
    assert increasing([int(i, 16) for i in made])


def test_ids_embed_the_creation_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """The top 48 bits are the creation time in milliseconds."""
    monkeypatch.setattr(ids, "_last", 0)
    monkeypatch.setattr(ids, "time", FakeTime(1_767_225_600_123_456_789))
    assert int(new_job_id(), 16) >> 80 == 1_767_225_600_123


def test_ids_still_increase_when_the_clock_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wall clock stepping backwards never makes an id smaller than the one before."""
    first = new_job_id()
    monkeypatch.setattr(ids, "time", FakeTime(1_000_000_000))  # 1970
    later = [new_job_id() for _ in range(100)]
    assert first < later[0]
    assert increasing(later)
    assert all(HEX32.match(i) for i in later)


def test_ids_unique_and_ordered_across_threads() -> None:
    """Ids made concurrently in many threads are all distinct, and increase within each thread."""
    per_thread = 5_000
    results: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(len(results))

    def make(out: list[str]) -> None:
        start.wait()
        out.extend(new_job_id() for _ in range(per_thread))

    threads = [threading.Thread(target=make, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for out in results for i in out]
    assert len(every) == len(results) * per_thread
    assert len(set(every)) == len(every)
    for out in results:
        assert out == sorted(out)
        assert len(set(out)) == len(out)

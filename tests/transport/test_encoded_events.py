"""The cache that encodes each streamed event once for all connections stays bounded in bytes."""

from __future__ import annotations

from datetime import UTC, datetime

from jobwarden.actors.states import JobState
from jobwarden.records import EventData, JobEvent
from jobwarden.transport.streams import EncodedEvents

MIB = 1 << 20


def event(offset: int, result: str = "") -> JobEvent:
    """A succeeded event at ``offset`` whose result is ``result``."""
    return JobEvent(
        id=str(offset),
        source="jobwarden://test",
        type="jobwarden.job.succeeded",
        subject="job",
        time=datetime(2026, 1, 1, tzinfo=UTC),
        data=EventData(
            job_id="job", tool="builtin.echo", state=JobState.SUCCEEDED, attempt=1, result=result
        ),
    )


def cached(encoded: EncodedEvents, events: list[JobEvent], first: list[bytes]) -> int:
    """How many of the newest ``events`` are still served from the cache (the very bytes
    encoded first), counted from the newest back to the first one that is not."""
    count = 0
    for evt, data in zip(reversed(events), reversed(first), strict=True):
        if encoded(evt) is not data:
            break
        count += 1
    return count


def test_every_connection_gets_the_bytes_encoded_first() -> None:
    """An event sent to many connections is encoded once: each gets the same bytes object."""
    encoded = EncodedEvents()
    events = [event(offset, "x" * 100) for offset in range(1000, 1100)]
    first = [encoded(evt) for evt in events]
    assert cached(encoded, events, first) == len(events)


def test_large_events_are_kept_up_to_the_byte_budget_not_the_count() -> None:
    """With 600 KB results the default cache keeps only as many of the latest events as fit in
    16 MiB, not 4,096 of them (2.4 GB)."""
    encoded = EncodedEvents()
    events = [event(offset, "x" * 600_000) for offset in range(1000, 1100)]
    first = [encoded(evt) for evt in events]
    size = len(first[0])
    assert {len(data) for data in first} == {size}
    assert cached(encoded, events, first) == 16 * MIB // size


def test_the_latest_event_over_a_sixteenth_of_the_budget_is_encoded_once_outside_it() -> None:
    """An event larger than max_bytes / 16 is encoded once however often it is sent, and its bytes
    count against no budget, so every smaller event the budget holds stays cached."""
    encoded = EncodedEvents(max_bytes=16_000)
    big = event(2000, "x" * 1_000)
    big_data = encoded(big)
    assert len(big_data) > 16_000 // 16
    small = [event(offset, "x" * 100) for offset in range(1000, 1100)]
    first = []
    for evt in small:
        first.append(encoded(evt))
        assert encoded(big) is big_data
    size = len(first[0])
    assert {len(data) for data in first} == {size}
    assert cached(encoded, small, first) == 16_000 // size

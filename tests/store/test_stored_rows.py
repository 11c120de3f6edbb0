"""Reading stored JSON back: damaged rows are StoreErrors; an older event is repaired."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from jobwarden.errors import StoreError
from jobwarden.records import JobEvent
from jobwarden.store.base import JobQuery
from jobwarden.store.sqlite import SqliteStore
from jobwarden.store.stored import decode_event, decode_events, decode_record
from tests.store.conformance import Jobs, offsets

pytestmark = pytest.mark.anyio

WHERE = "the-store"


def _event_fields() -> dict[str, Any]:
    jobs = Jobs()
    return msgspec.to_builtins(jobs.event(jobs.record()))  # type: ignore[no-any-return]


@pytest.mark.parametrize("message", [5, 2.5, True, {"step": 3}, ["a", 1]])
def test_an_earlier_versions_non_str_progress_message_is_read_as_its_json_text(
    message: Any,
) -> None:
    """An event stored with a progress message that is not a string (a plugin could pass one
    before ctx.progress refused it) reads back with the message as its JSON text, the rest
    unchanged."""
    fields = _event_fields()
    fields["data"]["message"] = message
    event = decode_event(msgspec.json.encode(fields), WHERE)
    assert event.data.message == msgspec.json.encode(message).decode()
    fields["data"]["message"] = event.data.message
    assert event == msgspec.convert(fields, JobEvent, strict=False)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "JSON is malformed"),
        (b"[1, 2]", "Expected `object`, got `array`"),
        (b'{"data": 5}', "Expected `object`, got `int` - at `\\$.data`"),
        (b'{"data": {"message": 5}}', "Expected `str | null`, got `int` - at `\\$.data.message`"),
        (b'{"id": "1", "data": {"message": null}}', "Object missing required field"),
    ],
)
def test_an_event_no_repair_can_read_is_a_store_error(body: bytes, says: str) -> None:
    """An event body that is not a CloudEvent, beyond a non-str message, raises StoreError
    with msgspec's reason (the first one found, when the repair does not help)."""
    with pytest.raises(StoreError, match=f"{WHERE} holds an event that cannot be read: {says}"):
        decode_event(body, WHERE)


def test_a_wrong_field_in_an_event_with_a_non_str_message_is_still_a_store_error() -> None:
    """The repair changes the message only: a state no version wrote stays unreadable."""
    fields = _event_fields()
    fields["data"]["message"] = 5
    fields["data"]["state"] = "exploded"
    with pytest.raises(StoreError, match="Invalid enum value 'exploded'"):
        decode_event(msgspec.json.encode(fields), WHERE)


def test_a_replay_reads_up_to_a_damaged_event() -> None:
    """decode_events returns the events before the first damaged one, or raises StoreError when
    that is the first."""
    jobs = Jobs()
    good = [jobs.event(jobs.record()) for _ in range(2)]
    bodies = [msgspec.json.encode(event) for event in good]
    assert decode_events([*bodies, b"{}", bodies[0]], WHERE) == good
    with pytest.raises(StoreError, match="an event that cannot be read"):
        decode_events([b"{}", *bodies], WHERE)
    assert decode_events([], WHERE) == []


@pytest.mark.parametrize(
    ("body", "says"),
    [(b"\x00\x01", "JSON is malformed"), (b'{"id": 5}', "Expected `str`, got `int` - at `\\$.id`")],
)
def test_a_record_that_cannot_be_read_is_a_store_error(body: bytes, says: str) -> None:
    """A record body that is not JSON, or not a job record, raises StoreError with the reason."""
    with pytest.raises(StoreError, match=f"{WHERE} holds a job record that cannot be read: {says}"):
        decode_record(body, WHERE)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An opened SQLite store on a new file, closed after the test."""
    opened = SqliteStore(tmp_path / "jobs.db")
    await opened.open()
    yield opened
    await opened.close()


async def test_a_damaged_row_fails_only_the_reads_that_cross_it(store: SqliteStore) -> None:
    """A record or event row damaged behind the store's back makes the reads that return it
    raise StoreError; other jobs still read, a replay gets the events before the damaged one
    (the next read starting there raises), and an earlier version's non-str message replays."""
    jobs = Jobs()
    kept = await jobs.put_finished(store)
    damaged = await jobs.put(store)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE jobs SET record = ? WHERE id = ?", (b'{"id": 5}', damaged.id))
        (body,) = db.execute("SELECT body FROM events WHERE offset = 2").fetchone()
        legacy = msgspec.json.decode(body)
        legacy["data"]["message"] = {"step": 3}
        db.execute("UPDATE events SET body = ? WHERE offset = 2", (msgspec.json.encode(legacy),))
        db.execute("UPDATE events SET body = ? WHERE offset = 4", (b"{not json",))
    says = re.escape(f"{store.path} holds a job record that cannot be read")
    with pytest.raises(StoreError, match=says):
        await store.get(damaged.id)
    with pytest.raises(StoreError, match="a job record that cannot be read"):
        await store.list_jobs(JobQuery())
    with pytest.raises(StoreError, match="a job record that cannot be read"):
        await store.unfinished()
    assert await store.get(kept.id) == kept
    assert (await store.list_jobs(JobQuery(state=kept.state))).jobs == [kept]
    assert offsets(await store.read_events(0, 10)) == [1, 2, 3]
    assert (await store.read_events(1, 1))[0].data.message == '{"step":3}'
    with pytest.raises(StoreError, match="an event that cannot be read"):
        await store.read_events(3, 10)

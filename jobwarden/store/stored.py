"""Reading back the JSON a store wrote: a job's record and an event, or a ``StoreError`` saying
what in them this jobwarden cannot read (a damaged row, a hand edit), never a raw decode error.

One repair is made: an event whose progress message is not a string. Before jobwarden refused
those at ``ctx.progress``, a plugin could store one, and every replay crossing that event failed;
it is read with the message as its JSON text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from jobwarden.errors import StoreError
from jobwarden.records import JobEvent, JobRecord

_record = msgspec.json.Decoder(JobRecord).decode
_event = msgspec.json.Decoder(JobEvent).decode
_any = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def decode_record(body: bytes, store: str) -> JobRecord:
    """A job record stored in ``store`` (its path or URL, for the error), or ``StoreError``."""
    try:
        return _record(body)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise StoreError(
            f"the job store {store} holds a job record that cannot be read: {exc}"
        ) from exc


def decode_event(body: bytes, store: str) -> JobEvent:
    """An event stored in ``store`` (an earlier version's non-str progress message as its JSON
    text), or ``StoreError``."""
    try:
        return _event(body)
    except msgspec.DecodeError as exc:
        repaired = _with_text_message(body)
        if repaired is None:
            raise StoreError(
                f"the job store {store} holds an event that cannot be read: {exc}"
            ) from exc
        return repaired


def decode_events(bodies: Iterable[bytes], store: str) -> list[JobEvent]:
    """Events stored in ``store``, in order, up to the first that cannot be read; ``StoreError``
    when that is the first: a replay gets every event before a damaged one, then the error."""
    events: list[JobEvent] = []
    for body in bodies:
        try:
            events.append(decode_event(body, store))
        except StoreError:
            if not events:
                raise
            break
    return events


def _with_text_message(body: bytes) -> JobEvent | None:
    try:
        fields: Any = _any(body)
        data = fields["data"]
        message = data["message"]
    except (msgspec.DecodeError, TypeError, KeyError):
        return None
    if message is None or isinstance(message, str):
        return None
    data["message"] = _encode(message).decode()
    try:
        return _event(_encode(fields))
    except msgspec.ValidationError:
        return None

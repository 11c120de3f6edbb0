"""The memory store's listing indexes: job ids in creation order, and per state, tool, plugin,
owner, and owner with state, so a filtered listing reads the jobs it may return, not every job.

At a million retained jobs (the default retention keeps that many) a scan for a rare filter
stopped the event loop for up to half a second: listing queued jobs when none are queued read all
million. A listing now walks the shortest list its filters name, newest first. The lists by a
field are built the first time a listing filters on it (one scan), then kept up to date: a
program that never filters pays nothing for them on its submits.

Entries leave lazily: a job that moves to another state, or is purged, leaves a stale entry that
readers skip (they check the record anyway), and a list is rebuilt once more than half of it is
stale, so keeping the lists costs about one append per change.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Iterator
from datetime import datetime
from typing import Generic, TypeVar

from jobwarden.records import JobRecord
from jobwarden.store.base import JobQuery

SLACK = 64  # stale entries tolerated beyond half of a list before it is rebuilt
T = TypeVar("T", str, tuple[datetime, str])


class Sorted(Generic[T]):
    """Entries in order (job ids by creation, or ``(end time, id)``); ``live`` of them are
    current, the rest stale (and every one before ``head``)."""

    __slots__ = ("entries", "head", "live")

    def __init__(self) -> None:
        self.entries: list[T] = []
        self.head = 0
        self.live = 0

    @classmethod
    def of(cls, entries: list[T]) -> Sorted[T]:
        """A list of ``entries`` (sorted, each one current)."""
        made = cls()
        made.entries = entries
        made.live = len(entries)
        return made

    def add(self, entry: T) -> None:
        """``entry`` belongs here now (if it is here already, stale, it is current again)."""
        entries = self.entries
        self.live += 1
        if not entries or entry > entries[-1]:
            entries.append(entry)
            return
        at = bisect.bisect_left(entries, entry)
        if at == len(entries) or entries[at] != entry:
            entries.insert(at, entry)
        self.head = min(self.head, at)

    def drop(self, count: int = 1) -> bool:
        """``count`` entries went stale; True when most are, and the list should be ``rebuilt``."""
        self.live -= count
        return len(self.entries) - self.head > 2 * self.live + SLACK

    def rebuild(self, current: Callable[[T], bool]) -> None:
        """Keep only the ``current`` entries."""
        self.entries = [entry for entry in self.entries[self.head :] if current(entry)]
        self.head = 0

    def oldest_first(self, current: Callable[[T], bool]) -> Iterator[T]:
        """The ``current`` entries, first first; the stale ones met first are passed for good."""
        entries = self.entries
        at = self.head
        while at < len(entries) and not current(entries[at]):
            at += 1
        self.head = at
        for index in range(at, len(entries)):
            if current(entries[index]):
                yield entries[index]

    def newest_first(self, before: T | None) -> Iterator[T]:
        """The entries before ``before`` (all of them without it), last first."""
        entries = self.entries
        end = len(entries) if before is None else bisect.bisect_left(entries, before)
        for index in range(end - 1, -1, -1):
            yield entries[index]


SortedIds = Sorted[str]


# What each kind of list is keyed by; None: the job is in no list of that kind.
KEYS: dict[str, Callable[[JobRecord], Hashable | None]] = {
    "state": lambda record: record.state,
    "tool": lambda record: record.tool,
    "plugin": lambda record: record.plugin,
    "owner": lambda record: record.owner,
    "owner_state": lambda record: None if record.owner is None else (record.owner, record.state),
}
MOVING = ("state", "owner_state")  # the kinds whose key changes with the job's state


class JobIndex:
    """Every list a listing may walk; told of each stored, changed and purged record."""

    __slots__ = ("_records", "all", "built", "moving")

    def __init__(self, records: dict[str, JobRecord]) -> None:
        self._records = records
        self.all = SortedIds()
        self.built: dict[str, dict[Hashable, SortedIds]] = {}  # none until a listing filters
        self.moving: list[str] = []  # the built kinds among MOVING: none, until a listing

    def added(self, record: JobRecord) -> None:
        """``record`` was stored (and ``all`` holds its id): the lists by a field that were
        built take it."""
        job_id = record.id
        for kind, lists in self.built.items():
            key = KEYS[kind](record)
            if key is not None:
                _list(lists, key).add(job_id)

    def moved(self, before: JobRecord, after: JobRecord) -> None:
        """A stored record changed from ``before`` to ``after`` (the store holds ``after``)."""
        if before.state is after.state:
            return
        for kind in self.moving:
            key = KEYS[kind](before)
            if key is not None:
                lists = self.built[kind]
                self._drop(kind, lists[key], key)
                _list(lists, KEYS[kind](after)).add(after.id)

    def purged(self, record: JobRecord) -> None:
        """``record`` was removed from the store."""
        if self.all.drop():
            self.all.rebuild(self._records.__contains__)
        for kind, lists in self.built.items():
            key = KEYS[kind](record)
            if key is not None:
                self._drop(kind, lists[key], key)

    def shortest(self, query: JobQuery) -> SortedIds | None:
        """The shortest list holding every job ``query`` can match; None when none can."""
        wanted = {
            "state": query.state,
            "tool": query.tool,
            "plugin": query.plugin,
            "owner": query.owner,
            "owner_state": None
            if query.owner is None or query.state is None
            else (query.owner, query.state),
        }
        shortest = self.all
        for kind, key in wanted.items():
            if key is None:
                continue
            found = self._lists(kind).get(key)
            if found is None:
                return None
            if len(found.entries) < len(shortest.entries):
                shortest = found
        return shortest

    def _lists(self, kind: str) -> dict[Hashable, SortedIds]:
        lists = self.built.get(kind)
        if lists is None:
            lists = self.built[kind] = {}
            key_of = KEYS[kind]
            for job_id in self.all.entries:
                record = self._records.get(job_id)
                if record is not None and (key := key_of(record)) is not None:
                    _list(lists, key).add(job_id)
            if kind in MOVING:
                self.moving.append(kind)
        return lists

    def _drop(self, kind: str, ids: SortedIds, key: Hashable) -> None:
        if ids.drop():
            records = self._records
            key_of = KEYS[kind]

            def current(job_id: str) -> bool:
                record = records.get(job_id)
                return record is not None and key_of(record) == key

            ids.rebuild(current)


def _list(lists: dict[Hashable, SortedIds], key: Hashable) -> SortedIds:
    found = lists.get(key)
    if found is None:
        found = lists[key] = SortedIds()
    return found

"""SqliteStore: the shared store conformance suite, plus what only a file on disk can show."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import msgspec
import pytest

from jobwarden.actors.states import JobState
from jobwarden.errors import InvalidRequest, StoreError
from jobwarden.records import JobRecord
from jobwarden.store import JobStore, sqlite, sqlite_child, sqlite_ops
from jobwarden.store.base import EventBounds, JobQuery
from jobwarden.store.sqlite import SqliteStore, listing_sql, store_from_url
from jobwarden.store.sqlite_schema import LATEST, PAGE_SIZE, migrate, version
from tests.store.conformance import (
    T0,
    Jobs,
    StoreConformance,
    as_stored_before_retry_at,
    ids,
    list_all,
    offsets,
)


class TestSqliteStore(StoreConformance):
    """The conformance suite against a SQLite file in a fresh temporary directory."""

    orders_by_id = False

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path

    async def make_store(self) -> JobStore:
        return SqliteStore(self.folder / "jobs.db")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An opened store on a new file, closed after the test."""
    opened = await _opened(tmp_path / "jobs.db")
    yield opened
    await opened.close()


async def _opened(path: Path, **kw: object) -> SqliteStore:
    store = SqliteStore(path, **kw)  # type: ignore[arg-type]
    await store.open()
    return store


@pytest.mark.anyio
async def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    """Records, events, offsets and idempotency keys are all there after close and open."""
    path = tmp_path / "jobs.db"
    jobs = Jobs()
    store = await _opened(path)
    keyed = await jobs.put(store, owner="alice", key="k1")
    done = await jobs.put_finished(store, input={"text": "kept", "n": [1, 2.5, None]})
    await store.close()

    again = await _opened(path)
    try:
        assert await again.get(keyed.id) == keyed
        assert await again.get(done.id) == done
        assert await again.event_bounds() == EventBounds(first=1, last=4)
        assert offsets(await again.read_events(0, 10)) == [1, 2, 3, 4]
        duplicate = jobs.record(owner="alice", key="k1")
        assert await again.put(duplicate, jobs.event(duplicate)) == keyed
        assert await again.unfinished() == [keyed]
    finally:
        await again.close()


@pytest.mark.anyio
async def test_a_record_stored_before_retry_at_existed_still_loads(tmp_path: Path) -> None:
    """A queued retry whose stored JSON has no retry_at (an earlier jobwarden wrote it) loads
    and is recovered, with retry_at None."""
    path = tmp_path / "jobs.db"
    jobs = Jobs()
    store = await _opened(path)
    retried = await jobs.move(store, await jobs.put(store), state=JobState.RUNNING)
    retried = await jobs.move(store, retried, state=JobState.QUEUED, attempt=2)
    await store.close()
    with sqlite3.connect(path) as db:
        raw = as_stored_before_retry_at(retried)
        db.execute("UPDATE jobs SET record = ? WHERE id = ?", (raw, retried.id))
    again = await _opened(path)
    try:
        assert await again.get(retried.id) == retried
        assert await again.unfinished() == [retried]
    finally:
        await again.close()


@pytest.mark.anyio
async def test_an_old_sqlite_library_is_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python whose sqlite3 library is older than the batched writes need stops at open."""
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(StoreError, match=r"needs SQLite 3\.33\.0 or newer .* has 3\.31\.1"):
        await SqliteStore(tmp_path / "jobs.db").open()
    assert not (tmp_path / "jobs.db").exists()


@pytest.mark.anyio
async def test_concurrent_writes_share_commits(store: SqliteStore) -> None:
    """Many puts in flight at once are committed in far fewer transactions than writes."""
    jobs = Jobs()
    records = [jobs.record() for _ in range(200)]
    events = [jobs.event(r) for r in records]
    async with anyio.create_task_group() as tg:
        for record, event in zip(records, events, strict=True):
            tg.start_soon(store.put, record, event)
    stats = store.statistics()
    assert stats.writes == 200
    assert stats.commits < 200
    assert ids(await list_all(store, JobQuery(limit=500))) == ids(records[::-1])
    assert await store.event_bounds() == EventBounds(first=1, last=200)


@pytest.mark.anyio
async def test_a_cancelled_writer_still_completes_its_write(store: SqliteStore) -> None:
    """A put begun inside an already cancelled scope still completes: nothing is lost."""
    jobs = Jobs()
    record = jobs.record()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await store.put(record, jobs.event(record))
    assert await store.get(record.id) == record


@pytest.mark.anyio
async def test_purge_trims_the_log_but_never_a_kept_jobs_history(store: SqliteStore) -> None:
    """After a purge the history starts later, and every kept job still has all its events."""
    jobs = Jobs()
    old = [await jobs.put_finished(store) for _ in range(3)]  # offsets 1..9
    live = await jobs.put(store)  # 10
    late = await jobs.put_finished(store)  # 11..13
    await jobs.move(store, live, state=JobState.RUNNING)  # 14
    assert await store.purge(finished_before=None, keep_finished=1) == 3
    assert await store.event_bounds() == EventBounds(first=10, last=14)
    assert offsets(await store.read_events(0, 100, job_id=live.id)) == [10, 14]
    assert offsets(await store.read_events(0, 100, job_id=late.id)) == [11, 12, 13]
    for record in old:
        assert await store.read_events(0, 100, job_id=record.id) == []
    assert await store.purge(finished_before=None, keep_finished=0) == 1
    assert await store.event_bounds() == EventBounds(first=10, last=14)


@pytest.mark.anyio
async def test_offsets_never_start_over_after_a_purge_empties_the_log(tmp_path: Path) -> None:
    """When a purge leaves no job and no event, the next open numbers on after the last offset
    the log had (it numbered from 1 again, so a subscriber resuming with since took the new
    events for ones it had seen)."""
    path = tmp_path / "jobs.db"
    jobs = Jobs()
    store = await _opened(path)
    try:
        for _ in range(2):
            await jobs.put_finished(store)  # offsets 1..6
        assert await store.purge(finished_before=None, keep_finished=0) == 2
        assert await store.event_bounds() == EventBounds(first=7, last=6)
    finally:
        await store.close()
    store = await _opened(path)
    try:
        assert await store.event_bounds() == EventBounds(first=7, last=6)
        later = await jobs.put(store)
        assert offsets(await store.read_events(0, 10, job_id=later.id)) == [7]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_purge_limit_goes_in_small_steps(store: SqliteStore) -> None:
    """purge(limit=N) removes at most N jobs per call, oldest first, until none are left."""
    jobs = Jobs()
    made = [await jobs.put_finished(store) for _ in range(5)]
    steps = []
    while removed := await store.purge(finished_before=None, keep_finished=0, limit=2):
        steps.append(removed)
    assert steps == [2, 2, 1]
    assert await list_all(store, JobQuery()) == []
    assert await store.get(made[0].id) is None


@pytest.mark.anyio
async def test_keep_finished_counts_across_a_reopen_and_a_repeated_key(tmp_path: Path) -> None:
    """The finished-job count retention works from is right after a reopen, ignores a put that
    found its key taken, and drops by what each purge removed."""
    path = tmp_path / "jobs.db"
    jobs = Jobs()
    store = await _opened(path)
    for _ in range(3):
        await jobs.put_finished(store)
    await store.close()
    store = await _opened(path)
    try:
        keyed = await jobs.put(store, owner="alice", key="k", state=JobState.SUCCEEDED)
        assert await jobs.put(store, owner="alice", key="k", state=JobState.SUCCEEDED) == keyed
        await jobs.put(store)  # unfinished: never counted
        assert await store.purge(finished_before=None, keep_finished=3, limit=1) == 1
        assert await store.purge(finished_before=None, keep_finished=3) == 0
        assert await store.purge(finished_before=None, keep_finished=1) == 2
        assert len(await list_all(store, JobQuery(state=JobState.SUCCEEDED))) == 1
    finally:
        await store.close()


def _v1_file(path: Path, jobs: Jobs) -> tuple[list[bytes], list[str]]:
    """A schema-v1 file (as the first released store wrote it) with a finished and a queued job."""
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, str(path), upto=1)
    encode = msgspec.json.Encoder().encode
    done = jobs.record(state=JobState.SUCCEEDED, finished_at=T0)
    queued = jobs.record(owner="alice", key="k")
    rows = []
    for record in (done, queued):
        event = jobs.event(record)
        db.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.offset,
                record.id,
                record.tool,
                record.plugin,
                record.state.value,
                record.owner,
                None if record.idempotency_key is None else encode([record.owner, "k"]).decode(),
                encode(record),
            ),
        )
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?)",
            (event.offset, record.id, record.tool, encode(event)),
        )
        rows.append(encode(record))
    db.close()
    return rows, [done.id, queued.id]


@pytest.mark.anyio
async def test_a_schema_v1_file_is_migrated_forward(tmp_path: Path) -> None:
    """Opening a v1 file migrates it to the newest schema, keeping jobs, events and keys."""
    path = tmp_path / "v1.db"
    jobs = Jobs()
    _, (done_id, queued_id) = _v1_file(path, jobs)
    store = await _opened(path)
    try:
        with sqlite3.connect(path) as db:
            assert version(db) == LATEST
        done = await store.get(done_id)
        assert done is not None
        assert done.state is JobState.SUCCEEDED
        assert [r.id for r in await store.unfinished()] == [queued_id]
        assert await store.event_bounds() == EventBounds(first=1, last=2)
        again = jobs.record(owner="alice", key="k")
        assert (await store.put(again, jobs.event(again))).id == queued_id
        # The v2 column was backfilled: the finished job is purged by age.
        removed = await store.purge(finished_before=T0.replace(year=2027), keep_finished=None)
        assert removed == 1
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_new_file_takes_the_store_page_size_and_an_older_file_keeps_its_own(
    tmp_path: Path,
) -> None:
    """A file the store creates has PAGE_SIZE pages; a file made before (SQLite's default 4096)
    is opened and written as it is."""
    new = await _opened(tmp_path / "new.db")
    await new.close()
    old_path = tmp_path / "v1.db"
    jobs = Jobs()
    _v1_file(old_path, jobs)
    old = await _opened(old_path)
    try:
        await jobs.put_finished(old)
    finally:
        await old.close()
    for path, size in ((tmp_path / "new.db", PAGE_SIZE), (old_path, 4096)):
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA page_size").fetchone()[0] == size
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert PAGE_SIZE != 4096


@pytest.mark.anyio
async def test_a_file_from_a_newer_jobwarden_is_refused(tmp_path: Path) -> None:
    """A schema version above the newest known stops open() with a StoreError naming both."""
    path = tmp_path / "future.db"
    store = await _opened(path)
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (LATEST + 1,))
    with pytest.raises(StoreError, match=f"schema version {LATEST + 1}.*newer"):
        await SqliteStore(path).open()


@pytest.mark.anyio
async def test_a_corrupted_file_is_refused_clearly(tmp_path: Path) -> None:
    """A file that is not a SQLite database stops open() with a StoreError naming the file."""
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match=r"garbage\.db.*(not a database|unusable)"):
        await SqliteStore(path).open()


@pytest.mark.anyio
async def test_a_database_without_a_version_table_row_is_refused(tmp_path: Path) -> None:
    """A file whose schema_version table is empty is not guessed at."""
    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    with pytest.raises(StoreError, match="not a jobwarden database"):
        await SqliteStore(path).open()


@pytest.mark.anyio
async def test_another_applications_database_is_refused_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    """A SQLite file holding other tables and no jobwarden schema stops open() with a
    StoreError naming the file and its tables, and is not changed (no jobwarden tables, not
    switched to WAL); before, it was quietly turned into a job store."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers (name) VALUES ('ada')")
    db.close()
    before = path.read_bytes()
    with pytest.raises(
        StoreError, match=r"app\.db holds tables of another application \(customers\)"
    ):
        await SqliteStore(path).open()
    assert path.read_bytes() == before
    assert not await anyio.Path(f"{path}-wal").exists()
    store = await _opened(tmp_path / "new.db")  # an empty file is still taken
    await store.close()


@contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse new files, for root too (chattr +i) or by mode otherwise."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a directory read-only")
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


@pytest.mark.anyio
async def test_a_read_only_directory_is_refused_clearly(tmp_path: Path) -> None:
    """A store in a directory where SQLite cannot create files fails to open, naming the file."""
    folder = tmp_path / "locked"
    folder.mkdir()
    with _read_only(folder), pytest.raises(StoreError, match="locked"):
        await SqliteStore(folder / "jobs.db").open()


@pytest.mark.anyio
async def test_a_missing_directory_is_refused_clearly(tmp_path: Path) -> None:
    """A path whose directory does not exist fails to open, saying so."""
    with pytest.raises(StoreError, match="is not a directory"):
        await SqliteStore(tmp_path / "nowhere" / "jobs.db").open()


@pytest.mark.anyio
async def test_a_directory_in_place_of_the_file_is_refused_clearly(tmp_path: Path) -> None:
    """A store path that names a directory fails to open, naming it and the reason."""
    folder = tmp_path / "jobs.db"
    folder.mkdir()
    expected = re.escape(f"cannot open the job store {folder}: Is a directory")
    with pytest.raises(StoreError, match=expected):
        await SqliteStore(folder).open()


class _RefusedConnection(SqliteStore):
    """A store whose ``refused``-th connection to its file fails, as SQLite can (out of file
    descriptors or memory)."""

    def __init__(self, path: Path, refused: int) -> None:
        super().__init__(path, readers=2)
        self.connections = 0
        self.refused = refused

    def _connect(self) -> sqlite3.Connection:
        self.connections += 1
        if self.connections == self.refused:
            raise sqlite3.OperationalError("unable to open database file")
        return super()._connect()


@pytest.mark.anyio
@pytest.mark.parametrize("refused", [1, 2, 3], ids=["setup", "first reader", "last reader"])
async def test_a_connection_refused_at_open_fails_it_and_releases_the_file(
    tmp_path: Path, refused: int
) -> None:
    """A connection SQLite refuses while opening (the setup one or a reader's) fails the open
    with a StoreError naming the file, closes what was opened and releases the file's lock, so
    the next open of that file succeeds."""
    path = tmp_path / "jobs.db"
    failing = _RefusedConnection(path, refused)
    expected = re.escape(f"cannot open the job store {path}: unable to open database file")
    with pytest.raises(StoreError, match=expected):
        await failing.open()
    assert failing.connections == refused
    again = await _opened(path)
    try:
        await Jobs().put(again)
        assert len((await again.list_jobs(JobQuery())).jobs) == 1
    finally:
        await again.close()


@pytest.mark.anyio
async def test_a_read_the_file_cannot_answer_is_a_store_error(store: SqliteStore) -> None:
    """A read SQLite fails (here: a table dropped behind the store's back) raises StoreError
    naming the file and SQLite's reason, and the reader connection stays usable."""
    await Jobs().put(store)
    with sqlite3.connect(store.path) as db:
        db.execute("DROP TABLE events")
    with pytest.raises(StoreError, match=r"could not be read: no such table: events"):
        await store.read_events(0, 10)
    assert len((await store.list_jobs(JobQuery())).jobs) == 1


@pytest.mark.anyio
async def test_a_full_disk_fails_the_write_and_keeps_what_was_written(tmp_path: Path) -> None:
    """When the file cannot grow, a write fails with StoreError and earlier jobs stay intact."""
    path = tmp_path / "small.db"
    store = await _opened(path, max_bytes=160 * 1024)
    jobs = Jobs()
    kept = []
    try:
        with pytest.raises(StoreError, match="full"):
            for _ in range(10_000):
                kept.append(await jobs.put(store, input={"pad": "x" * 2000}))
        assert kept
        for record in kept[:: max(1, len(kept) // 20)]:
            assert await store.get(record.id) == record
        assert (await store.event_bounds()).last == len(kept)
    finally:
        await store.close()
    again = await _opened(path)
    try:
        assert len(await list_all(again, JobQuery(limit=500))) == len(kept)
    finally:
        await again.close()


def test_store_urls() -> None:
    """sqlite URL options are parsed and checked: synchronous and max_bytes (ASCII digits: "²"
    passes isdigit() and was a raw ValueError from int()), nothing else."""
    store = store_from_url("x.db", {"synchronous": "NORMAL", "max_bytes": "4096"})
    assert (store.synchronous, store.max_bytes, store.path) == ("normal", 4096, Path("x.db"))
    assert store_from_url("x.db", {}).synchronous == "full"
    refused = ("-1", "a", "²", "٣", "9" * 5000)
    for bad in ({"synchronous": "off"}, {"cache": "1"}, *({"max_bytes": b} for b in refused)):
        with pytest.raises(StoreError):
            store_from_url("x.db", bad)


@pytest.mark.parametrize(
    "kw", [{"synchronous": "off"}, {"readers": 0}, {"max_bytes": 0}], ids=lambda kw: str(kw)
)
def test_bad_constructor_arguments_are_refused(kw: dict[str, object]) -> None:
    """SqliteStore refuses an unknown synchronous mode, no readers and a zero size cap."""
    with pytest.raises(ValueError, match="must be"):
        SqliteStore("x.db", **kw)  # type: ignore[arg-type]


def test_sqlite_store_is_durable() -> None:
    """SqliteStore says its records outlive the process."""
    assert SqliteStore.durable is True


@pytest.mark.anyio
async def test_reads_do_not_wait_for_a_writer(store: SqliteStore) -> None:
    """While another connection holds the write lock, gets, listings and event reads answer."""
    jobs = Jobs()
    record = await jobs.put(store)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("DELETE FROM events")  # uncommitted: invisible to readers
        with anyio.fail_after(2):
            assert await store.get(record.id) == record
            assert ids((await store.list_jobs(JobQuery())).jobs) == [record.id]
            assert offsets(await store.read_events(0, 10)) == [1]
            assert await store.unfinished() == [record]
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()


_OLD_ID = "0" * 31 + "1"  # a cursor of the form versions before schema v3 gave out


@pytest.mark.parametrize(
    ("query", "reads"),
    [
        (JobQuery(), "SCAN jobs"),
        (JobQuery(cursor="7"), "INTEGER PRIMARY KEY (rowid<?)"),
        (JobQuery(state=JobState.SUCCEEDED), "INDEX jobs_state (state=?)"),
        (JobQuery(state=JobState.QUEUED, cursor="7"), "INDEX jobs_state (state=? AND rowid<?)"),
        (JobQuery(state=JobState.QUEUED, cursor=_OLD_ID), "INDEX jobs_state (state=? AND rowid<?)"),
        (JobQuery(tool="demo.echo"), "INDEX jobs_tool (tool=?)"),
        (JobQuery(plugin="demo"), "INDEX jobs_plugin (plugin=?)"),
        (JobQuery(owner="alice", cursor="7"), "INDEX jobs_owner (owner=? AND rowid<?)"),
    ],
    ids=str,
)
def test_listings_read_an_index_in_order(tmp_path: Path, query: JobQuery, reads: str) -> None:
    """Every listing shape is one range read, backwards in seq order, of the table or an index
    on the filter: no sort."""
    path = tmp_path / "plan.db"
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, str(path))
    sql, params = listing_sql(query, 51)
    plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    db.close()
    assert reads in plan, plan
    assert "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize(
    ("filters", "indexes"),
    [
        ({"state": JobState.RUNNING, "owner": "alice"}, {"jobs_owner_state"}),
        ({"state": JobState.FAILED, "tool": "demo.echo"}, {"jobs_state", "jobs_tool"}),
    ],
    ids=str,
)
def test_combined_filters_use_one_of_their_indexes(
    tmp_path: Path, filters: dict[str, object], indexes: set[str]
) -> None:
    """Two filters together still read one of their indexes in id order, without a sort."""
    path = tmp_path / "plan.db"
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, str(path))
    sql, params = listing_sql(JobQuery(**filters), 51)  # type: ignore[arg-type]
    plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    db.close()
    assert any(f"INDEX {index}" in plan for index in indexes), plan
    assert "TEMP B-TREE" not in plan, plan


@pytest.mark.anyio
async def test_one_process_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second store on a file already open is refused once it waited LOCK_WAIT_S for it (in
    LOCK_POLL_S steps); after close the file is free again."""
    pauses: list[float] = []
    monkeypatch.setattr(sqlite, "_pause", pauses.append)
    path = tmp_path / "jobs.db"
    first = await _opened(path)
    try:
        with pytest.raises(StoreError, match=r"in use by another jobwarden process \(for 2s\)"):
            await SqliteStore(path).open()
    finally:
        await first.close()
    assert sum(pauses) == pytest.approx(sqlite.LOCK_WAIT_S)
    assert set(pauses) == {sqlite.LOCK_POLL_S}
    again = await _opened(path)
    await again.close()


@pytest.mark.anyio
async def test_a_file_let_go_while_waiting_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store opening a file another process still holds (a server killed a moment ago, its
    writer finishing a commit) waits and opens it once let go, rather than failing at once."""
    path = tmp_path / "jobs.db"
    holder = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX)
    pauses: list[float] = []

    def let_go_on_the_third(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            os.close(holder)

    monkeypatch.setattr(sqlite, "_pause", let_go_on_the_third)
    store = SqliteStore(path)
    await store.open()
    await store.close()
    assert len(pauses) == 3


@pytest.mark.parametrize(
    ("sql", "params", "index"),
    [
        (sqlite_child.OLDEST_IN_STATE, ("failed", 500), "jobs_state"),
        (sqlite_child.ENDED_BEFORE, (1.0e9, 500), "jobs_done_at"),
    ],
    ids=["by count", "by age"],
)
def test_retention_reads_an_index_in_order(
    tmp_path: Path, sql: str, params: tuple[object, ...], index: str
) -> None:
    """Retention finds the jobs to purge with one index range read: no scan, no sort."""
    path = tmp_path / "plan.db"
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, str(path))
    plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    db.close()
    assert f"INDEX {index}" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


@pytest.mark.anyio
async def test_every_operation_is_timed(store: SqliteStore) -> None:
    """Each kind of write and read, and each commit, lands in its own latency histogram."""
    jobs = Jobs()
    await jobs.put_finished(store, finished_at=T0)
    record = await jobs.put(store)
    await store.get(record.id)
    await store.list_jobs(JobQuery())
    await store.unfinished()
    await store.read_events(0, 10)
    await store.purge(finished_before=None, keep_finished=0)
    counts = {op: snapshot.count for op, snapshot in store.timings.snapshot().items()}
    assert counts == {
        "put": 2,
        "transition": 2,
        "purge": 1,
        "get": 1,
        "list_jobs": 1,
        "unfinished": 1,
        "read_events": 1,
        "commit": counts["commit"],
    }
    assert 1 <= counts["commit"] <= 5


@pytest.mark.anyio
async def test_a_refused_write_is_timed_too(store: SqliteStore) -> None:
    """A write the file refuses still counts in its histogram: failures are latency too."""
    jobs = Jobs()
    with sqlite3.connect(store.path) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    with pytest.raises(StoreError, match="refused by the test"):
        await jobs.put(store)
    assert store.timings.snapshot()["put"].count == 1
    assert store.timings.snapshot()["commit"].count == 0


@pytest.mark.anyio
async def test_a_write_to_a_closed_store_is_refused_at_once(store: SqliteStore) -> None:
    """After close, put, transition and transition_soon raise StoreError without queueing."""
    jobs = Jobs()
    record = await jobs.put(store)
    await store.close()
    with pytest.raises(StoreError, match="is closed"):
        await jobs.put(store)
    running = msgspec.structs.replace(record, state=JobState.RUNNING, started_at=T0)
    with pytest.raises(StoreError, match="is closed"):
        await store.transition(running, jobs.event(running))
    with pytest.raises(StoreError, match="is closed"):
        store.transition_soon(running, jobs.event(running), lambda error: None)


@pytest.mark.anyio
async def test_a_write_behind_transition_is_reported_once_committed(store: SqliteStore) -> None:
    """transition_soon returns at once and reports None on the loop once the change is in the
    file, after the transitions queued before it."""
    jobs = Jobs()
    record = await jobs.put(store)
    running = msgspec.structs.replace(record, state=JobState.RUNNING, started_at=T0)
    done = msgspec.structs.replace(running, state=JobState.SUCCEEDED, result={"ok": 1})
    reports: list[StoreError | None] = []
    committed = anyio.Event()

    def report(error: StoreError | None) -> None:
        reports.append(error)
        committed.set()

    store.transition_soon(running, jobs.event(running), reports.append)
    store.transition_soon(done, jobs.event(done), report)
    await committed.wait()
    assert reports == [None, None]
    assert await store.get(record.id) == done
    assert offsets(await store.read_events(0, 10, job_id=record.id)) == [1, 2, 3]
    assert store.timings.snapshot()["transition"].count == 2


@pytest.mark.anyio
async def test_a_refused_write_behind_is_reported_as_a_store_error(tmp_path: Path) -> None:
    """A write-behind the file cannot take (it is full) reports a StoreError; one queued on a
    closed store raises StoreError at once."""
    store = await _opened(tmp_path / "small.db", max_bytes=160 * 1024)
    jobs = Jobs()
    record = await jobs.put(store)
    big = msgspec.structs.replace(record, state=JobState.RUNNING, result={"pad": "x" * 400_000})
    reports: list[StoreError | None] = []
    reported = anyio.Event()

    def report(error: StoreError | None) -> None:
        reports.append(error)
        reported.set()

    try:
        store.transition_soon(big, jobs.event(big), report)
        await reported.wait()
    finally:
        await store.close()
    assert len(reports) == 1
    assert isinstance(reports[0], StoreError)
    assert "full" in str(reports[0])
    with pytest.raises(StoreError, match="closed"):
        store.transition_soon(record, jobs.event(record), report)


@pytest.mark.anyio
async def test_a_write_behind_of_an_unknown_job_fails_alone(store: SqliteStore) -> None:
    """In one frame with other writes, a transition of a job the file does not hold reports a
    StoreError to its own callback only: the others commit, no event of it is kept, and its
    terminal state does not count as a finished job."""
    jobs = Jobs()
    known = await jobs.put(store)
    stranger = msgspec.structs.replace(jobs.record(), state=JobState.FAILED, finished_at=T0)
    done = msgspec.structs.replace(known, state=JobState.SUCCEEDED, finished_at=T0)
    reports: dict[str, StoreError | None] = {}
    settled = anyio.Event()

    def report(name: str) -> Callable[[StoreError | None], None]:
        def committed(error: StoreError | None) -> None:
            reports[name] = error
            if len(reports) == 3:
                settled.set()

        return committed

    added = jobs.record()
    put = store.put_then(added, jobs.event(added), report("put"))
    store.transition_soon(stranger, jobs.event(stranger), report("stranger"))
    store.transition_soon(done, jobs.event(done), report("done"))
    assert await put is None
    await settled.wait()
    assert reports["put"] is None
    assert reports["done"] is None
    refused = reports["stranger"]
    assert isinstance(refused, StoreError)
    assert f"job {stranger.id} is not in the store" in str(refused)
    assert await store.get(stranger.id) is None
    assert await store.get(done.id) == done
    assert [event.subject for event in await store.read_events(0, 10)] == [
        known.id,
        added.id,
        known.id,
    ]
    assert await store.purge(finished_before=None, keep_finished=1) == 0


@pytest.mark.anyio
async def test_a_purge_that_fails_alone_takes_no_write_beside_it_down(store: SqliteStore) -> None:
    """A purge SQLite cannot run (a limit past 64 bits) raises StoreError to its caller alone:
    a put and a transition in the same transaction commit, and nothing of the purge is kept."""
    jobs = Jobs()
    finished = await jobs.put_finished(store)
    known = await jobs.put(store)
    running = msgspec.structs.replace(known, state=JobState.RUNNING, started_at=T0)
    added = jobs.record()
    failed: list[BaseException] = []

    async def purge_everything() -> None:
        try:
            await store.purge(finished_before=T0 + T0.resolution, keep_finished=0, limit=2**63)
        except StoreError as exc:
            failed.append(exc)

    before = store.statistics().commits
    # Started in one turn, the three writes go out as one frame: one transaction.
    async with anyio.create_task_group() as tg:
        tg.start_soon(purge_everything)
        tg.start_soon(store.transition, running, jobs.event(running))
        tg.start_soon(store.put, added, jobs.event(added))
    assert store.statistics().commits == before + 1
    assert [str(exc) for exc in failed] == [
        f"the job store {store.path} refused a write: the purge failed:"
        " Python int too large to convert to SQLite INTEGER"
    ]
    assert await store.get(finished.id) == finished
    assert await store.get(known.id) == running
    assert await store.get(added.id) == added
    assert await store.purge(finished_before=None, keep_finished=0, limit=10) == 1


@pytest.mark.anyio
async def test_an_awaited_transition_of_an_unknown_job_raises_alone(store: SqliteStore) -> None:
    """transition() of an unknown job raises StoreError to its caller alone: a transition awaited
    beside it commits."""
    jobs = Jobs()
    known = await jobs.put(store)
    stranger = jobs.record()
    running = msgspec.structs.replace(known, state=JobState.RUNNING, started_at=T0)
    outcomes: dict[str, BaseException | None] = {}

    async def write(name: str, record: JobRecord) -> None:
        try:
            await store.transition(record, jobs.event(record))
        except StoreError as exc:
            outcomes[name] = exc
        else:
            outcomes[name] = None

    async with anyio.create_task_group() as tg:
        tg.start_soon(write, "stranger", stranger)
        tg.start_soon(write, "known", running)
    assert outcomes["known"] is None
    assert isinstance(outcomes["stranger"], StoreError)
    assert await store.get(known.id) == running


def test_a_batch_applied_in_process_raises_for_an_unknown_job_after_committing_the_rest(
    tmp_path: Path,
) -> None:
    """apply_batch commits the writes the file takes, then raises StoreError naming the
    transition of a job it does not hold."""
    path = tmp_path / "jobs.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(db, str(path))
        jobs = Jobs()
        record, stranger = jobs.record(), jobs.record()
        ops: list[sqlite_ops.WriteOp] = [
            sqlite_ops.Put(record, jobs.event(record)),
            sqlite_ops.Transition(stranger, jobs.event(stranger)),
        ]
        with pytest.raises(StoreError, match=f"job {stranger.id} is not in the store"):
            sqlite_ops.apply_batch(db, ops)
        assert db.execute("SELECT id FROM jobs").fetchall() == [(record.id,)]
        assert db.execute("SELECT job_id FROM events").fetchall() == [(record.id,)]
    finally:
        db.close()


def test_a_batch_updates_a_job_once_to_its_last_record_and_keeps_every_event(
    tmp_path: Path,
) -> None:
    """Two changes of one job in a batch leave its last record and count it finished once; rows
    beyond one multi-row statement's worth all go in."""
    db = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    migrate(db, "jobs.db")
    jobs = Jobs()
    count = sqlite_child.ROWS_PER_STATEMENT * 2 + 7
    records = [jobs.record() for _ in range(count)]
    sqlite_ops.apply_batch(db, [sqlite_ops.Put(r, jobs.event(r)) for r in records])
    ops: list[sqlite_ops.WriteOp] = []
    finals = []
    for record in records:
        running = msgspec.structs.replace(record, state=JobState.RUNNING, started_at=T0)
        done = msgspec.structs.replace(running, state=JobState.SUCCEEDED, finished_at=T0)
        ops += [
            sqlite_ops.Transition(running, jobs.event(running)),
            sqlite_ops.Transition(done, jobs.event(done)),
        ]
        finals.append(done)
    assert sqlite_ops.apply_batch(db, ops) == (count + 1, 3 * count, count)
    stored = dict(db.execute("SELECT id, record FROM jobs").fetchall())
    events = db.execute("SELECT count(*), min(offset), max(offset) FROM events").fetchone()
    db.close()
    assert {job_id: msgspec.json.decode(raw) for job_id, raw in stored.items()} == {
        r.id: msgspec.to_builtins(r) for r in finals
    }
    assert events == (3 * count, 1, 3 * count)


@pytest.mark.anyio
async def test_cursors_are_seqs_and_old_id_cursors_still_page_on(store: SqliteStore) -> None:
    """next_cursor is the last listed job's seq; an id cursor (as schema v2 gave out) continues
    below the first job at or after that id, even when that job was purged meanwhile."""
    jobs = Jobs()
    made = [await jobs.put(store) for _ in range(3)]
    done = await jobs.put_finished(store)  # offsets 4..6
    newest = await jobs.put(store)  # 7
    page = await store.list_jobs(JobQuery(limit=2))
    assert (ids(page.jobs), page.next_cursor) == ([newest.id, done.id], "4")
    after_id = await store.list_jobs(JobQuery(limit=2, cursor=done.id))
    assert ids(after_id.jobs) == [made[2].id, made[1].id]
    assert after_id.next_cursor == "2"
    assert await store.purge(finished_before=None, keep_finished=0) == 1
    assert ids((await store.list_jobs(JobQuery(cursor=done.id))).jobs) == ids(made[::-1])
    beyond = "f" * 32
    assert ids((await store.list_jobs(JobQuery(cursor=beyond))).jobs) == ids([newest, *made[::-1]])


@pytest.mark.anyio
@pytest.mark.parametrize(
    "cursor", ["", "abc", "-1", "1.5", "\u0661", str(2**63), "0" * 20, "A" * 32, "0" * 33]
)
async def test_a_cursor_the_store_never_gave_out_is_an_invalid_request(
    store: SqliteStore, cursor: str
) -> None:
    """A cursor that is neither a seq nor a job id is refused with InvalidRequest (a 400)."""
    with pytest.raises(InvalidRequest, match="not a next_cursor"):
        await store.list_jobs(JobQuery(cursor=cursor))


def _v2_file(path: Path, jobs: Jobs) -> list[JobRecord]:
    """A schema-v2 file holding a queued, a running and two finished jobs, written by v2's SQL."""
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, str(path), upto=2)
    records = [
        jobs.record(owner="alice", key="k"),
        jobs.record(state=JobState.RUNNING),
        jobs.record(owner="alice", state=JobState.FAILED, finished_at=T0),
        jobs.record(owner="bob", state=JobState.SUCCEEDED, finished_at=T0),
    ]
    for record in records:
        put = sqlite_ops.Put(record, jobs.event(record))
        db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", put.job_row)
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", put.event_row)
    db.close()
    return records


@pytest.mark.anyio
async def test_a_schema_v2_file_is_migrated_to_v3(tmp_path: Path) -> None:
    """Opening a v2 file replaces its listing indexes with v3's and keeps every job, event, key
    and listing; an id cursor from before the upgrade pages on."""
    path = tmp_path / "v2.db"
    jobs = Jobs()
    queued, running, failed, done = _v2_file(path, jobs)
    store = await _opened(path)
    try:
        with sqlite3.connect(path) as db:
            assert version(db) == LATEST
            indexes = dict(
                db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall()
            )
        assert indexes["jobs_state"] == "CREATE INDEX jobs_state ON jobs (state)"
        assert indexes["jobs_owner_state"].endswith("(owner, state) WHERE owner IS NOT NULL")
        assert await store.unfinished() == [queued, running]
        listed = await list_all(store, JobQuery(limit=1))
        assert ids(listed) == ids([done, failed, running, queued])
        assert ids(await list_all(store, JobQuery(owner="alice"))) == ids([failed, queued])
        assert ids((await store.list_jobs(JobQuery(cursor=failed.id))).jobs) == ids(
            [running, queued]
        )
        again = jobs.record(owner="alice", key="k")
        assert await store.put(again, jobs.event(again)) == queued
        assert offsets(await store.read_events(0, 10, job_id=done.id)) == [4]
        assert await store.purge(finished_before=None, keep_finished=1) == 1
        assert await store.get(failed.id) is None
    finally:
        await store.close()


@pytest.mark.anyio
async def test_an_interrupted_v3_migration_leaves_the_v2_file_intact(tmp_path: Path) -> None:
    """When the v3 step fails at its last statement, open() raises StoreError and the file is
    still v2, with v2's indexes: the step is one transaction."""
    path = tmp_path / "v2.db"
    _v2_file(path, Jobs())
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON schema_version"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    with pytest.raises(StoreError, match="refused by the test"):
        await SqliteStore(path).open()
    with sqlite3.connect(path) as db:
        assert version(db) == 2
        state_index = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'jobs_state'"
        ).fetchone()[0]
    assert state_index == "CREATE INDEX jobs_state ON jobs (state, id)"


@pytest.mark.anyio
async def test_a_killed_writer_process_fails_writes_and_close_still_returns(
    store: SqliteStore,
) -> None:
    """After the writer process is killed, put and transition_soon raise a StoreError naming
    the signal, reads still work, and close() returns (the fixture closes it again)."""
    jobs = Jobs()
    kept = await jobs.put(store)
    pid = store._commits.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    record = jobs.record()
    with pytest.raises(StoreError, match=r"writer process .* was killed by SIGKILL"):
        # The first write may be queued before the end is seen; it fails all the same.
        await store.put(record, jobs.event(record))
    with pytest.raises(StoreError, match="killed by SIGKILL"):
        store.transition_soon(record, jobs.event(record), lambda error: None)
    assert await store.get(kept.id) == kept
    with anyio.fail_after(10):
        await store.close()

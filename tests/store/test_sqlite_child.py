"""The writer process's own code, run in this process: its transactions, its frames, its loop.

The store's tests drive the child as a process, where coverage cannot follow it; these call the
same functions directly, on connections and pipes of the test's own.
"""

from __future__ import annotations

import marshal
import os
import select
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from jobwarden.actors.states import JobState
from jobwarden.records import JobRecord
from jobwarden.store import sqlite_child
from jobwarden.store.sqlite_ops import Purge, Put, Transition, apply_batch
from jobwarden.store.sqlite_schema import migrate
from tests.store.conformance import T0, Jobs


def _migrated(path: Path) -> Path:
    with sqlite3.connect(path, isolation_level=None) as setup:
        setup.execute("PRAGMA journal_mode = WAL")
        migrate(setup, str(path))
    return path


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated file in WAL mode, on a connection like the child's."""
    connection = sqlite_child.connect(str(_migrated(tmp_path / "jobs.db")), "normal", None)
    try:
        yield connection
    finally:
        connection.close()


def _finished(jobs: Jobs, db: sqlite3.Connection, count: int) -> list[JobRecord]:
    """``count`` jobs put, run and succeeded, each finished a second after the one before."""
    records = [jobs.record() for _ in range(count)]
    apply_batch(db, [Put(record, jobs.event(record)) for record in records])
    done = []
    for number, record in enumerate(records):
        running = msgspec.structs.replace(record, state=JobState.RUNNING, started_at=T0)
        finished = msgspec.structs.replace(
            running, state=JobState.SUCCEEDED, finished_at=T0 + timedelta(seconds=number)
        )
        apply_batch(
            db,
            [Transition(running, jobs.event(running)), Transition(finished, jobs.event(finished))],
        )
        done.append(finished)
    return done


def test_a_taken_key_answers_the_record_it_names_and_writes_nothing(
    db: sqlite3.Connection,
) -> None:
    """A second put under an owner's key, in the same transaction or a later one, inserts no job
    and no event and is answered with the first job's record."""
    jobs = Jobs()
    first = jobs.record(owner="alice", key="k")
    same_batch = jobs.record(owner="alice", key="k")
    ops = [Put(first, jobs.event(first)), Put(same_batch, jobs.event(same_batch))]
    assert apply_batch(db, list(ops)) == (1, 1, 0)
    later = jobs.record(owner="alice", key="k")
    again = Put(later, jobs.event(later))
    assert apply_batch(db, [again]) == (None, None, 0)
    assert ops[0].existing is None
    stored = msgspec.json.encode(first)
    assert ops[1].existing == stored
    assert again.existing == stored
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1


def test_a_purge_deletes_the_oldest_finished_jobs_and_trims_the_log(
    db: sqlite3.Connection,
) -> None:
    """A purge by count and age deletes the oldest finished jobs, answers how many, trims the
    events before the oldest job left and reports that offset."""
    jobs = Jobs()
    done = _finished(jobs, db, 5)
    by_count = Purge(None, excess=2, limit=None)
    by_age = Purge(T0 + timedelta(seconds=2, milliseconds=500), excess=0, limit=None)
    applied = sqlite_child.apply(db, [by_count.wire, by_age.wire])
    assert applied.results == [(0, 2), (1, 1)]
    assert (applied.purged, applied.finished) == (True, -3)
    left = [row[0] for row in db.execute("SELECT id FROM jobs ORDER BY seq")]
    assert left == [record.id for record in done[3:]]
    oldest = db.execute("SELECT min(seq) FROM jobs").fetchone()[0]
    assert applied.oldest == oldest
    assert db.execute("SELECT min(offset) FROM events").fetchone()[0] == oldest


def test_a_purge_of_every_job_empties_the_log(db: sqlite3.Connection) -> None:
    """With no job left, no event is left either, and the oldest offset is None."""
    jobs = Jobs()
    _finished(jobs, db, 3)
    applied = sqlite_child.apply(db, [Purge(None, excess=10, limit=2).wire])
    assert applied.results == [(0, 2)]
    applied = sqlite_child.apply(db, [Purge(None, excess=10, limit=None).wire])
    assert applied.results == [(0, 1)]
    assert (applied.purged, applied.oldest) == (True, None)
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_a_purge_that_fails_alone_is_undone_and_refused_alone(db: sqlite3.Connection) -> None:
    """A purge whose limit SQLite cannot bind is answered with why, deletes nothing, and the
    ops beside it commit."""
    jobs = Jobs()
    done = _finished(jobs, db, 2)
    record = jobs.record()
    failing = Purge(T0 + timedelta(days=1), excess=0, limit=2**63)
    applied = sqlite_child.apply(db, [failing.wire, Put(record, jobs.event(record)).wire])
    assert applied.results == [
        (0, "the purge failed: Python int too large to convert to SQLite INTEGER")
    ]
    assert failing.answer(applied.results[0][1]) == applied.results[0][1]
    assert not db.in_transaction
    stored = [row[0] for row in db.execute("SELECT id FROM jobs ORDER BY seq")]
    assert stored == [*(job.id for job in done), record.id]
    assert applied.finished == 0


def test_an_unknown_op_rolls_the_whole_transaction_back(db: sqlite3.Connection) -> None:
    """An op of no known kind raises, and the ops before it in the transaction are undone."""
    jobs = Jobs()
    record = jobs.record()
    with pytest.raises(ValueError, match="unknown write op 9"):
        sqlite_child.apply(db, [Put(record, jobs.event(record)).wire, (9,)])
    assert not db.in_transaction
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


def test_connect_sets_the_page_limit_and_refuses_what_it_cannot_open(tmp_path: Path) -> None:
    """A byte limit becomes the connection's page limit; a path SQLite cannot open raises."""
    connection = sqlite_child.connect(str(tmp_path / "jobs.db"), "full", 1 << 20)
    try:
        page = connection.execute("PRAGMA page_size").fetchone()[0]
        limit = connection.execute("PRAGMA max_page_count").fetchone()[0]
        assert limit == (1 << 20) // page
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        connection.close()
    with pytest.raises(sqlite3.OperationalError):
        sqlite_child.connect(str(tmp_path), "full", None)


def _frame(ops: list[tuple[object, ...]]) -> bytes:
    data = marshal.dumps(ops)
    return sqlite_child.HEADER.pack(len(data)) + data


def test_frames_are_cut_whole_and_a_partial_one_waits(db: sqlite3.Connection) -> None:
    """Complete frames come out in order with the bytes they took; a partial one stays."""
    jobs = Jobs()
    first, second = jobs.record(), jobs.record()
    one = _frame([Put(first, jobs.event(first)).wire])
    two = _frame([Put(second, jobs.event(second)).wire])
    frames, used = sqlite_child._frames(bytearray(one + two + two[:7]))
    assert used == len(one) + len(two)
    assert [frame[0][4] for frame in frames] == [first.id, second.id]
    assert sqlite_child._frames(bytearray(two[:3])) == ([], 0)


def _serve(path: Path, requests: int, replies: int) -> None:
    """The child's loop on a connection of its own (a connection stays in its thread)."""
    connection = sqlite_child.connect(str(path), "normal", None)
    try:
        held = sqlite_child.identity(os.stat(path))
        sqlite_child.serve(connection, requests, replies, str(path), held)
    finally:
        connection.close()


class _Serving:
    """The child's loop running in a thread: ``requests`` is its input's write end, ``output``
    its replies' read end, and ``replies`` what it replied, parsed once the loop was left."""

    def __init__(self, requests: int, output: int, thread: threading.Thread) -> None:
        self.requests = requests
        self.output = output
        self.thread = thread
        self.replies: list[tuple[Any, ...]] = []


@contextmanager
def _serving(path: Path) -> Iterator[_Serving]:
    """``serve`` on ``path`` in a thread, through pipes of the test's own; on exit its input ends,
    the thread is joined and its replies are read."""
    requests_out, requests_in = os.pipe()
    replies_out, replies_in = os.pipe()
    server = threading.Thread(target=_serve, args=(path, requests_out, replies_in))
    server.start()
    serving = _Serving(requests_in, replies_out, server)
    try:
        yield serving
    finally:
        os.close(requests_in)
        server.join()
        os.close(requests_out)
        os.close(replies_in)
        with os.fdopen(replies_out, "rb") as replies:
            data = replies.read()
    frames, used = sqlite_child._frames(bytearray(data))
    assert used == len(data)
    # Replies are cut as frames are, but each is one tuple of fields, not a list of ops.
    serving.replies = cast(list[tuple[Any, ...]], frames)


def test_serve_commits_every_frame_and_replies_until_its_input_ends(tmp_path: Path) -> None:
    """Frames written to the input are committed and covered by the replies, results mapped to
    their own frame; the loop returns when the input ends."""
    jobs = Jobs()
    keyed = jobs.record(owner="bob", key="x")
    duplicate = jobs.record(owner="bob", key="x")
    plain = jobs.record()
    path = _migrated(tmp_path / "jobs.db")
    with _serving(path) as serving:
        os.write(serving.requests, _frame([Put(keyed, jobs.event(keyed)).wire]))
        os.write(
            serving.requests,
            _frame(
                [Put(plain, jobs.event(plain)).wire, Put(duplicate, jobs.event(duplicate)).wire]
            ),
        )
    covered = 0
    results: list[tuple[int, int, object]] = []
    for reply in serving.replies:
        count, *_, found, seconds, error = reply
        assert error is None
        assert seconds >= 0
        results += [(number + covered, index, value) for number, index, value in found]
        covered += count
    assert covered == 2
    assert results == [(1, 1, msgspec.json.encode(keyed))]
    with sqlite3.connect(path) as db:
        stored = {row[0] for row in db.execute("SELECT id FROM jobs")}
    assert stored == {keyed.id, plain.id}


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_serve_stops_acknowledging_once_its_file_is_removed_or_replaced(
    how: str, tmp_path: Path
) -> None:
    """A commit made after the file was removed (or replaced by another) is not acknowledged:
    serve replies once more with frames 0 and why, and returns with its input still open."""
    jobs = Jobs()
    first, second = jobs.record(), jobs.record()
    path = _migrated(tmp_path / "jobs.db")
    with _serving(path) as serving:
        os.write(serving.requests, _frame([Put(first, jobs.event(first)).wire]))
        # The first commit's reply, before the file goes (bounded: a broken serve fails here).
        assert select.select([serving.output], [], [], 30)[0]
        if how == "removed":
            path.unlink()
        else:
            shutil.copy(path, tmp_path / "copy.db")
            os.replace(tmp_path / "copy.db", path)
        os.write(serving.requests, _frame([Put(second, jobs.event(second)).wire]))
        serving.thread.join(30)
        assert not serving.thread.is_alive()
    acknowledged, last = serving.replies
    count, *_, error = acknowledged
    assert (count, error) == (1, None)
    count, *_, error = last
    assert count == 0  # not the commit's reply: the child's last word
    assert error == f"the job store file {path} was removed or replaced while in use" + (
        " (No such file or directory)" if how == "removed" else ""
    )


def test_a_failed_transaction_is_replied_as_an_error(db: sqlite3.Connection) -> None:
    """A transaction SQLite refuses is one reply naming the error, with nothing committed."""
    jobs = Jobs()
    record = jobs.record()
    put = Put(record, jobs.event(record)).wire
    reply = sqlite_child._commit(db, [[put], [put]])  # the same job twice: a unique id clash
    assert reply[0] == 2
    assert reply[1:8] == (None, None, 0, False, None, [], 0.0)
    assert "UNIQUE constraint failed" in reply[8]
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


def test_a_failing_multi_row_statement_ends_the_transaction_and_the_next_one_commits(
    db: sqlite3.Connection,
) -> None:
    """A unique clash inside one multi-row INSERT (OR ROLLBACK) undoes the whole transaction,
    the ops before that statement included, and leaves the connection ready for the next."""
    jobs = Jobs()
    first, clash = jobs.record(), jobs.record()
    running = msgspec.structs.replace(first, state=JobState.RUNNING, started_at=T0)
    apply_batch(db, [Put(first, jobs.event(first))])
    ops = [
        Transition(running, jobs.event(running)).wire,
        Put(clash, jobs.event(clash)).wire,
        Put(clash, jobs.event(clash)).wire,
    ]
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        sqlite_child.apply(db, ops)
    assert not db.in_transaction
    assert db.execute("SELECT state FROM jobs").fetchall() == [("queued",)]
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    apply_batch(db, [Transition(running, jobs.event(running))])
    assert db.execute("SELECT state FROM jobs").fetchall() == [("running",)]


_BIND_QUICKLY_CHECK = """
import sqlite3, sys
from jobwarden.store import sqlite_child
sqlite_child.bind_quickly()
db = sqlite3.connect(":memory:")
db.execute("CREATE TABLE t (body, owner)")
db.execute("INSERT INTO t VALUES (?, ?)", (b'{"a": 1}', None))
print(db.execute("SELECT typeof(body), typeof(owner), body, owner FROM t").fetchone())
"""


def test_bind_quickly_stores_bytes_as_blobs_and_none_as_null() -> None:
    """With the writer's adapters (registered in a process of their own: they are global), a
    bytes parameter is still stored and read back as a BLOB and None as NULL."""
    done = subprocess.run(
        [sys.executable, "-c", _BIND_QUICKLY_CHECK],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.stdout.strip() == "('blob', 'null', b'{\"a\": 1}', None)"


def test_a_child_whose_parent_gave_up_before_it_was_ready_exits_quietly(tmp_path: Path) -> None:
    """The parent closed its end of the replies before the child said ready (its start was
    cancelled): the child exits with status 0 and writes nothing to stderr."""
    path = _migrated(tmp_path / "jobs.db")
    replies, replies_child = os.pipe()
    os.close(replies)
    lock = os.open(path, os.O_RDWR)
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", sqlite_child.__file__, str(path), "full", "0", str(lock)],
            stdin=subprocess.DEVNULL,
            stdout=replies_child,
            stderr=subprocess.PIPE,
            pass_fds=(lock,),
            check=False,
            timeout=60,
        )
    finally:
        os.close(replies_child)
        os.close(lock)
    assert (done.returncode, done.stderr) == (0, b"")

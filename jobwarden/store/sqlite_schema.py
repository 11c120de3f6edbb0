"""The SQLite store's schema: forward migrations, a version table, and the checks made at open.

Each migration moves the file from version N - 1 to N inside one transaction; a file from a newer
jobwarden (a version above the newest known) is refused rather than guessed at.

Tables: ``jobs`` (rowid ``seq`` = the offset of the job's first event, so jobs are in the order
they were stored (their ids' order, for the Supervisor's jobs) and the oldest retained job is the
first row; the record itself as msgspec JSON; the columns listings filter on) and ``events``
(rowid = the event's global offset; the CloudEvent as JSON), and (v4) ``log_floor``, the last
offset of a log a purge emptied, so that offsets never start over. Since v3 every listing index
is keyed on the rowid alone (SQLite appends it to each entry), not on ``(column, id)``: an entry
is a few bytes rather than the 32-character id, and each of a job's two state changes moves
smaller entries. Indexes used by each query:

- listing newest first (``ORDER BY seq DESC``, cursor ``seq < ?``), one range read backwards: the
  table itself (no filter), ``jobs_state``, ``jobs_tool``, ``jobs_plugin``, ``jobs_owner``, and
  ``jobs_owner_state`` ``(owner, state)`` for a principal's listing by state (so a tenant's
  listing of a rare state reads only those rows); the two owner indexes hold only jobs that have
  an owner (none on an open server);
- one job, and a transition's row: ``jobs_id`` (unique); an id cursor of earlier versions is
  looked up there too;
- idempotency: ``jobs_idempotency`` (unique per owner and key; only keyed jobs have an entry);
- recovery: ``jobs_state`` for queued and running, sorted by seq (the unfinished jobs only);
- retention: ``jobs_state`` for the oldest finished jobs of each terminal state, and (v2)
  ``jobs_done_at`` for those that ended before a time;
- one job's events: ``events_job`` ``(job_id, offset)``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime

from jobwarden.errors import StoreError

# A new file's page size. Each commit writes every page it touched to the WAL, one frame (and
# system call) per page: twice SQLite's default halves those calls for the same rows, which
# store_writes measures (about 10% less CPU per job); a listing's read of 50 rows stays a few pages.
PAGE_SIZE = 8192

TERMINAL_SQL = "('succeeded', 'failed', 'timed_out', 'cancelled')"

_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    tool TEXT NOT NULL,
    plugin TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT,
    idempotency TEXT,
    record BLOB NOT NULL
);
CREATE UNIQUE INDEX jobs_id ON jobs (id);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency) WHERE idempotency IS NOT NULL;
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_tool ON jobs (tool, id);
CREATE INDEX jobs_plugin ON jobs (plugin, id);
CREATE INDEX jobs_owner ON jobs (owner, id);
CREATE TABLE events (
    offset INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX events_job ON events (job_id, offset);
"""


def _v1(db: sqlite3.Connection) -> None:
    db.executescript(f"BEGIN; {_V1} COMMIT;")


def _v2(db: sqlite3.Connection) -> None:
    """Retention: when each finished job ended, indexed (only finished jobs have an entry); and
    a principal's jobs by state, so a tenant's listing of a rare state reads only those rows."""
    db.execute("BEGIN IMMEDIATE")
    db.execute("ALTER TABLE jobs ADD COLUMN finished_at REAL")
    rows = db.execute(
        f"SELECT seq, json_extract(record, '$.finished_at') FROM jobs WHERE state IN {TERMINAL_SQL}"
    ).fetchall()
    db.executemany(
        "UPDATE jobs SET finished_at = ? WHERE seq = ?",
        [(datetime.fromisoformat(at).timestamp(), seq) for seq, at in rows if at is not None],
    )
    db.execute("CREATE INDEX jobs_done_at ON jobs (finished_at) WHERE finished_at IS NOT NULL")
    db.execute("CREATE INDEX jobs_owner_state ON jobs (owner, state, id)")
    db.execute("UPDATE schema_version SET version = 2")
    db.execute("COMMIT")


def _v3(db: sqlite3.Connection) -> None:
    """Leaner listing indexes: keyed on the rowid (seq, the order jobs were stored in) rather
    than carrying the 32-character id, and a principal's indexes only for jobs that have one."""
    db.execute("BEGIN IMMEDIATE")
    for index in ("jobs_state", "jobs_tool", "jobs_plugin", "jobs_owner", "jobs_owner_state"):
        db.execute(f"DROP INDEX {index}")
    db.execute("CREATE INDEX jobs_state ON jobs (state)")
    db.execute("CREATE INDEX jobs_tool ON jobs (tool)")
    db.execute("CREATE INDEX jobs_plugin ON jobs (plugin)")
    db.execute("CREATE INDEX jobs_owner ON jobs (owner) WHERE owner IS NOT NULL")
    db.execute("CREATE INDEX jobs_owner_state ON jobs (owner, state) WHERE owner IS NOT NULL")
    db.execute("UPDATE schema_version SET version = 3")
    db.execute("COMMIT")


def _v4(db: sqlite3.Connection) -> None:
    """Where the event log ended when a purge last emptied it (``log_floor``): the next start
    numbers events on from there, never from 1 again, or a subscriber resuming with ``since``
    would take the new events for ones it saw."""
    db.execute("BEGIN IMMEDIATE")
    db.execute("CREATE TABLE log_floor (last INTEGER NOT NULL)")
    db.execute("INSERT INTO log_floor VALUES (0)")
    db.execute("UPDATE schema_version SET version = 4")
    db.execute("COMMIT")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3, _v4)
LATEST = len(MIGRATIONS)


def version(db: sqlite3.Connection) -> int:
    """The file's schema version; 0 for a file without jobwarden's tables."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        raise StoreError("the schema_version table is empty: not a jobwarden database")
    return int(row[0])


def check(db: sqlite3.Connection, path: str) -> int:
    """The file's schema version, or ``StoreError`` when this jobwarden must not use it (a
    newer schema, another application's database, which must stay as it is); changes nothing."""
    found = version(db)
    if found > LATEST:
        raise StoreError(
            f"{path} has schema version {found}, newer than this jobwarden understands"
            f" ({LATEST}); upgrade jobwarden or point --store at another file"
        )
    if found == 0:
        others = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name LIMIT 4"
            )
        ]
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise StoreError(
                f"{path} holds tables of another application ({shown}) and no jobwarden schema:"
                " not a jobwarden database; point --store at another file"
            )
    return found


def migrate(db: sqlite3.Connection, path: str, *, upto: int = LATEST) -> int:
    """Bring the file to version ``upto`` (default: the newest) and return the version found."""
    found = check(db, path)
    for number in range(found + 1, upto + 1):
        MIGRATIONS[number - 1](db)
    return found

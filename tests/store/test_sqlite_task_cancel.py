"""asyncio's Task.cancel() of a task starting or stopping a supervisor on the SQLite store.

An application embedding jobwarden on asyncio cancels its tasks natively (``asyncio.run``'s
Ctrl-C, ``asyncio.timeout``, a ``TaskGroup`` whose sibling failed), and anyio's shielded scopes do
not hold against that: whatever the start or the stop began must still be undone or finished, or
the writer process outlives the supervisor and keeps the file locked.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import anyio
import pytest

from jobwarden import Supervisor, builtin
from jobwarden.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Task.cancel() is asyncio's: trio cancels only through scopes, which shields hold against."""
    return "asyncio"


async def _reopen(path: Path) -> None:
    """Open and close the file again: nothing left behind holds its lock."""
    store = SqliteStore(path)
    await store.open()
    await store.close()


async def test_a_start_cancelled_while_the_file_opens_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel while a worker thread opens the file ends the start once that thread is done."""
    path = tmp_path / "jobs.db"
    entered, release, opened = threading.Event(), threading.Event(), threading.Event()
    real_open = SqliteStore._open

    def held_open(self: SqliteStore) -> None:
        entered.set()
        release.wait()
        try:
            real_open(self)
        finally:
            opened.set()

    monkeypatch.setattr(SqliteStore, "_open", held_open)
    store = SqliteStore(path)

    async def start() -> None:
        async with Supervisor(plugins=[builtin], store=store):
            pytest.fail("the start was cancelled")

    task = asyncio.ensure_future(start())
    await anyio.to_thread.run_sync(entered.wait)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert opened.is_set()
    assert store.statistics().commits == 0
    monkeypatch.undo()
    await _reopen(path)


async def test_a_stop_cancelled_again_still_closes_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second cancel while the supervisor closes its store lets the close finish first."""
    path = tmp_path / "jobs.db"
    store = SqliteStore(path)
    started, closing, go_on = anyio.Event(), anyio.Event(), anyio.Event()
    real_close = store.close

    async def held_close() -> None:
        closing.set()
        await go_on.wait()
        await real_close()

    monkeypatch.setattr(store, "close", held_close)

    async def serve() -> None:
        async with Supervisor(plugins=[builtin], store=store) as sup:
            await sup.wait((await sup.submit("builtin.echo", {"text": "hi"})).id)
            started.set()
            await anyio.sleep_forever()

    task = asyncio.ensure_future(serve())
    await started.wait()
    task.cancel()
    await closing.wait()
    task.cancel()
    await anyio.wait_all_tasks_blocked()
    assert not task.done()
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _reopen(path)

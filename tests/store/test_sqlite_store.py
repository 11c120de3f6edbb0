"""SqliteStore: the shared store conformance suite, plus what only a file on disk can show."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobwarden.store import JobStore
from jobwarden.store.sqlite import SqliteStore
from tests.store.conformance import StoreConformance


class TestSqliteStore(StoreConformance):
    """The conformance suite against a SQLite file in a fresh temporary directory."""

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path

    async def make_store(self) -> JobStore:
        return SqliteStore(self.folder / "jobs.db")

"""A tool's exception whose class is named with a lone surrogate fails its job with a printable
kind, on every store."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.errors import OutcomeType
from jobwarden.store.base import JobStore
from jobwarden.store.memory import MemoryStore
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import UNDECODABLE, KeyIn, TextOut

pytestmark = pytest.mark.anyio


class Oddly(Exception):
    """An exception class renamed at run time after a file name that is not valid UTF-8."""


Oddly.__module__ = f"mod_{UNDECODABLE}"
Oddly.__qualname__ = f"Oddly_{UNDECODABLE}"


def odd_plugin() -> Plugin:
    """A tool raising an exception whose module and class names hold a lone surrogate."""
    plugin = Plugin("odd", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def raise_odd(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Raise the oddly named exception."""
        raise Oddly(inp.key)

    return plugin


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_an_exception_named_with_a_lone_surrogate_fails_only_its_job(
    store_kind: str, tmp_path: Path
) -> None:
    """The job fails as plugin_error with the class's name escaped, stored and readable as
    JSON, and the runner does not crash."""
    store: JobStore = MemoryStore() if store_kind == "memory" else SqliteStore(tmp_path / "j.db")
    async with Supervisor(plugins=[odd_plugin()], store=store) as sup:
        rec = await sup.submit("odd.raise_odd", {"key": "k"})
        done = await sup.wait(rec.id, timeout=10)
        listed = (await sup.list_jobs()).jobs
        assert sup.statistics().restarts == 0
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == OutcomeType.PLUGIN_ERROR
    assert done.error.details == {"exception": "mod_caf\\udcff.Oddly_caf\\udcff"}
    assert done.error.message == "Oddly: k"
    assert [job.id for job in listed] == [rec.id]
    msgspec.json.encode(listed)

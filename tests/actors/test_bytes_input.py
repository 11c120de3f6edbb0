"""A Struct input holding bytes: kept as bytes in the record, base64 wherever it becomes JSON."""

from __future__ import annotations

import base64
from pathlib import Path

import msgspec
import pytest

from jobwarden import JobState, Plugin, SqliteStore, Supervisor, ToolContext

pytestmark = pytest.mark.anyio

blobs = Plugin("blobs")


class BlobIn(msgspec.Struct):
    data: bytes


class BlobOut(msgspec.Struct):
    size: int


@blobs.tool()
async def size(inp: BlobIn, ctx: ToolContext) -> BlobOut:
    """The length of the bytes it was given."""
    return BlobOut(size=len(inp.data))


PAYLOAD = bytes(range(256)) * 64


async def test_struct_input_keeps_its_bytes_in_the_record() -> None:
    """The record's input holds the caller's bytes themselves, not an eager base64 copy."""
    async with Supervisor(plugins=[blobs]) as sup:
        record = await sup.submit("blobs.size", BlobIn(data=PAYLOAD))
        assert record.input == {"data": PAYLOAD}
        done = await sup.wait(record.id, timeout=5)
    assert done.state is JobState.SUCCEEDED
    assert done.result == {"size": len(PAYLOAD)}
    assert msgspec.json.decode(msgspec.json.encode(done.input)) == {
        "data": base64.b64encode(PAYLOAD).decode()
    }


async def test_sqlite_stores_struct_bytes_as_base64(tmp_path: Path) -> None:
    """Read back from the SQLite file, a Struct's bytes are the base64 text JSON gives them."""
    path = tmp_path / "jobs.db"
    async with Supervisor(plugins=[blobs], store=SqliteStore(path)) as sup:
        record = await sup.submit("blobs.size", BlobIn(data=PAYLOAD))
        assert (await sup.wait(record.id, timeout=5)).state is JobState.SUCCEEDED
    async with Supervisor(plugins=[blobs], store=SqliteStore(path)) as sup:
        stored = await sup.get(record.id)
    assert stored.input == {"data": base64.b64encode(PAYLOAD).decode()}

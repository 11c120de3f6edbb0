"""A job's result is what it reads as through JSON, the same live and stored, on every store."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec
import pytest

from jobwarden import JobState, MemoryStore, Plugin, Supervisor, ToolContext
from jobwarden.errors import OutcomeType
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import KeyIn

pytestmark = pytest.mark.anyio

RETURNED: dict[str, Any] = {
    "tuple": ((1, 2), [1, 2]),
    "int keys": ({1: "a"}, {"1": "a"}),
    "float keys": ({1.5: 1}, {"1.5": 1}),
    "nested": ({"a": ({2: (3,)},)}, {"a": [{"2": [3]}]}),
}


class Measure(msgspec.Struct):
    """A result with a number field."""

    value: float


def shaped_plugin(returned: Any) -> Plugin:
    """Tools returning ``returned`` untyped, a Measure of it, and a dict with int keys typed."""
    plugin = Plugin("shaped", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def loose(inp: KeyIn, ctx: ToolContext) -> Any:
        """Return the value as it is."""
        return returned

    @plugin.tool(timeout=5.0)
    async def measure(inp: KeyIn, ctx: ToolContext) -> Measure:
        """Return the value in a float field."""
        return Measure(value=returned)

    @plugin.tool(timeout=5.0)
    async def keyed(inp: KeyIn, ctx: ToolContext) -> dict[int, str]:
        """Return a dict whose declared keys are ints."""
        return {1: "a", 2: "b"}

    return plugin


@pytest.mark.parametrize("durable", [False, True])
@pytest.mark.parametrize("shape", list(RETURNED))
async def test_a_result_is_the_same_live_and_stored(
    tmp_path: Path, durable: bool, shape: str
) -> None:
    """The record a wait returns holds the result as a read of the stored job gives it (a list
    for a tuple, str keys), not the Python objects returned."""
    returned, read = RETURNED[shape]
    path = tmp_path / "jobs.db"
    store = SqliteStore(path) if durable else MemoryStore()
    async with Supervisor(plugins=[shaped_plugin(returned)], store=store) as sup:
        live = await sup.wait((await sup.submit("shaped.loose", {})).id, timeout=5)
    assert (live.state, live.result) == (JobState.SUCCEEDED, read)
    assert msgspec.json.decode(msgspec.json.encode(live)) == msgspec.to_builtins(live)
    if durable:
        async with Supervisor(plugins=[shaped_plugin(returned)], store=SqliteStore(path)) as sup:
            assert (await sup.get(live.id)).result == read


@pytest.mark.parametrize(
    ("tool", "value"),
    [
        ("shaped.measure", math.nan),
        ("shaped.measure", math.inf),
        ("shaped.measure", -math.inf),
        ("shaped.loose", math.nan),
        ("shaped.loose", [math.inf]),
    ],
)
async def test_nan_or_infinity_in_a_result_is_invalid_output(tool: str, value: Any) -> None:
    """NaN or infinity in a result, which JSON would write as null, is invalid_output saying
    so, in a number field and through Any alike, not a result holding a null never returned."""
    async with Supervisor(plugins=[shaped_plugin(value)]) as sup:
        done = await sup.wait((await sup.submit(tool, {})).id, timeout=5)
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == OutcomeType.INVALID_OUTPUT
    assert done.error.message.endswith(
        "it holds NaN or infinity where a number must be (JSON has none: it reads as null)"
    )


async def test_a_result_typed_with_number_keys_fits_its_type() -> None:
    """A dict declared with int keys is a valid result, its keys read back as strings."""
    async with Supervisor(plugins=[shaped_plugin(0.5)]) as sup:
        done = await sup.wait((await sup.submit("shaped.keyed", {})).id, timeout=5)
        measured = await sup.wait((await sup.submit("shaped.measure", {})).id, timeout=5)
    assert (done.state, done.result) == (JobState.SUCCEEDED, {"1": "a", "2": "b"})
    assert (measured.state, measured.result) == (JobState.SUCCEEDED, {"value": 0.5})

"""The dashboard's submit form, generated from a JSON Schema with every shape msgspec writes."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Any, Literal

import msgspec
import pytest
from playwright.async_api import expect

from jobwarden import Plugin, ToolContext
from tests.fakes import Gates
from tests.transport.browser import dashboard, row
from tests.transport.conftest import serve

pytestmark = pytest.mark.anyio


class Colour(enum.Enum):
    """An enum: a $defs entry of its own."""

    RED = "red"
    BLUE = "blue"


class Point(msgspec.Struct, forbid_unknown_fields=True):
    """A nested object, reached through $ref."""

    x: int
    y: int


class Everything(msgspec.Struct, forbid_unknown_fields=True):
    """One member of each kind the form handles."""

    name: str
    ratio: float
    loud: bool
    colour: Colour
    where: Point
    tags: list[str]
    maybe: int | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    mode: Literal["fast", "slow"] = "fast"


def shapes_plugin(gates: Gates) -> Iterable[Plugin]:
    """A plugin whose one tool takes ``Everything`` and hands it back."""
    plugin = Plugin("shapes", version="1.0.0")

    @plugin.tool(timeout=10)
    async def mirror(inp: Everything, ctx: ToolContext) -> Everything:
        """Return the input."""
        return inp

    return [plugin]


async def test_generated_form_covers_every_schema_shape() -> None:
    """Strings, numbers, booleans, enums, a nested $ref object, an array, an optional and a
    free-form object all reach the tool as typed JSON."""
    async with serve(keys=None, plugins=shapes_plugin) as server, dashboard(server) as page:
        fields = page.locator("#submit-fields")
        await fields.locator('input[name="name"]').fill("<b>bold</b>")
        await fields.locator('input[name="ratio"]').fill("0.25")
        await fields.locator('input[name="loud"]').check()
        await fields.locator('select[name="colour"]').select_option(label="blue")
        where = fields.locator('fieldset[data-name="where"]')
        await expect(where.locator("legend")).to_have_text("where (Point)")
        await where.locator('input[name="x"]').fill("3")
        await where.locator('input[name="y"]').fill("-4")
        await fields.get_by_role("button", name="Add tags item").click()
        await fields.get_by_role("button", name="Add tags item").click()
        await fields.locator('input[name="tags[0]"]').fill("a")
        await fields.locator('input[name="tags[1]"]').fill("b")
        await fields.locator('textarea[name="extra"]').fill('{"deep": [1, {"k": null}]}')
        await expect(fields.locator('select[name="mode"]')).to_have_value("0")
        await page.locator("#submit button[type=submit]").click()
        await expect(page.locator("#submit-ok")).to_contain_text("Submitted job")
        job_id = (await page.locator("#submit-ok").inner_text()).rsplit(" ", 1)[-1]
        await expect(page.locator(row(job_id))).to_have_attribute("data-state", "succeeded")
        record = await server.job("admin", job_id)
    assert record["input"] == {
        "name": "<b>bold</b>",
        "ratio": 0.25,
        "loud": True,
        "colour": "blue",
        "where": {"x": 3, "y": -4},
        "tags": ["a", "b"],
        "extra": {"deep": [1, {"k": None}]},
        "mode": "fast",
    }


async def test_raw_json_mode_starts_from_the_form_and_sends_as_typed() -> None:
    """Switching to raw JSON carries the form's values over; what is typed there is sent as is."""
    async with serve(keys=None, plugins=shapes_plugin) as server, dashboard(server) as page:
        await page.locator('#submit-fields input[name="name"]').fill("from the form")
        await page.locator("#submit-raw").check()
        carried = re.compile(r'"name": "from the form"')
        await expect(page.locator("#submit-json")).to_have_value(carried)
        await page.locator("#submit-json").fill('{"name": "raw", "ratio": 1}')
        await page.locator("#submit button[type=submit]").click()
        error = page.locator("#submit-error")
        await expect(error).to_contain_text("invalid_input")
        await expect(error).to_contain_text("loud")


async def test_a_free_form_member_with_bad_json_is_named() -> None:
    """Text that is not JSON in a free-form member is refused in the page, naming the member."""
    async with serve(keys=None, plugins=shapes_plugin) as server, dashboard(server) as page:
        await page.locator('#submit-fields textarea[name="extra"]').fill("{oops")
        await page.locator("#submit button[type=submit]").click()
        await expect(page.locator("#submit-error")).to_contain_text("extra: not valid JSON")
        assert (await server.get_json("admin", "/v1/jobs"))["jobs"] == []

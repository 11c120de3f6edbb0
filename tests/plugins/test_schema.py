"""Tool types' JSON Schemas say exactly what validation accepts: which base64 a bytes member
takes, and repeated items in a set."""

from __future__ import annotations

import base64
import binascii
import re

import jsonschema
import msgspec
import pytest

from jobwarden import Plugin, ToolContext, builtin
from jobwarden.plugins.schema import BASE64_PATTERN, type_schema

VALID = ["", "YQ==", "YWI=", "YWJj", "YWJjZA==", "YR==", "+/+/"]
# Unpadded, over-padded, URL-safe alphabet, spaces, two strings run together, a final newline.
INVALID = ["YQ", "YQ=", "Y===", "====", "YWJjZA", "-_8=", "YQ ==", "YQ==YQ==", "YQ==\n"]


class Blob(msgspec.Struct):
    """Bytes in every position a schema can hold them."""

    data: bytes
    parts: list[bytes]
    maybe: bytes | None = None
    fallback: bytes = b"\x00"


class Holds(msgspec.Struct):
    """A struct whose schema sits in ``$defs``."""

    blob: Blob


def _accepted_by_msgspec(text: str) -> bool:
    try:
        msgspec.convert({"data": text, "parts": []}, Blob)
    except msgspec.ValidationError:
        return False
    return True


def _accepted_by_b64decode(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _matches(text: str) -> bool:
    # JSON Schema's ``$`` does not match before a final newline; Python's fullmatch does the same.
    return re.fullmatch(BASE64_PATTERN.removeprefix("^").removesuffix("$"), text) is not None


@pytest.mark.parametrize("text", VALID + INVALID)
def test_base64_pattern_accepts_what_msgspec_and_b64decode_accept(text: str) -> None:
    """The pattern, msgspec's bytes decoding and ``b64decode(validate=True)`` agree on a string."""
    assert _matches(text) == _accepted_by_msgspec(text) == _accepted_by_b64decode(text)
    assert _matches(text) == (text in VALID)


def test_type_schema_gives_every_bytes_member_the_pattern() -> None:
    """Every base64 string in a type's schema, nested or optional, gets the pattern; msgspec's
    schema is otherwise unchanged and a default stays a value."""
    schema = type_schema(Holds)
    blob = schema["$defs"]["Blob"]["properties"]
    base64_string = {"type": "string", "contentEncoding": "base64", "pattern": BASE64_PATTERN}
    assert blob["data"] == base64_string
    assert blob["parts"] == {"type": "array", "items": base64_string}
    assert blob["maybe"]["anyOf"][0] == base64_string
    assert blob["fallback"] == {**base64_string, "default": "AA=="}
    bare = msgspec.json.schema(Holds)
    bare_blob = bare["$defs"]["Blob"]["properties"]
    assert {k: v for k, v in blob["data"].items() if k != "pattern"} == bare_blob["data"]
    assert schema["$ref"] == bare["$ref"]


def test_a_tools_schemas_carry_the_pattern() -> None:
    """``builtin.sha256``'s input schema (as /v1/tools and the OpenAPI document serve it) says
    its ``data`` is padded standard base64."""
    sha256 = builtin.tools["sha256"]
    data = sha256.input_schema()["$defs"]["Sha256In"]["properties"]["data"]
    assert data == {"type": "string", "contentEncoding": "base64", "pattern": BASE64_PATTERN}


class Tagged(msgspec.Struct):
    """An input with sets, as a field and inside a list."""

    tags: frozenset[int] = frozenset()
    groups: list[set[str]] = []


def test_an_input_schema_takes_the_repeated_items_a_set_accepts() -> None:
    """A set in an input type accepts an array with repeated items (held once each), and its
    input schema says the same: no uniqueItems, so that schema and validation agree."""
    demo = Plugin("demo")

    @demo.tool()
    async def tag(inp: Tagged, ctx: ToolContext) -> frozenset[int]:
        return inp.tags

    tool = demo.tools["tag"]
    data = {"tags": [1, 1], "groups": [["a", "a"]]}
    jsonschema.validate(data, tool.input_schema())
    assert tool.validate_input(data) == Tagged(tags=frozenset({1}), groups=[{"a"}])
    # What a set encodes to has no repeated items: the output schema keeps saying so.
    assert tool.output_schema() == {
        "type": "array",
        "items": {"type": "integer"},
        "uniqueItems": True,
    }

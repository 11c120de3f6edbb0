"""JSON Schemas of tool types: msgspec's, made exact about the base64 it accepts for bytes."""

from __future__ import annotations

from typing import Any

import msgspec

BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
"""Standard base64 with its padding, nothing around it: what msgspec decodes into ``bytes``, and
``base64.b64decode(s, validate=True)`` accepts (in JSON Schema's regex dialect, where ``$`` does
not match before a final newline as Python's does)."""

BASE64_STRING: dict[str, Any] = {"contentEncoding": "base64", "pattern": BASE64_PATTERN}
"""What a base64 string member adds to its schema."""

# Values, not schemas: a default or an example that looks like a base64 schema stays as it is.
_LITERAL_KEYWORDS = frozenset({"const", "default", "enum", "examples"})


def type_schema(tp: Any, *, accepted: bool = False) -> dict[str, Any]:
    """msgspec's JSON Schema of ``tp``, each base64 string in it given ``BASE64_PATTERN``.

    msgspec says ``contentEncoding: base64``, which JSON Schema 2020-12 makes an annotation that
    validators and generators may ignore; the pattern makes the rule one they apply.
    ``accepted``: the schema of what a conversion to ``tp`` accepts rather than of what a value
    of ``tp`` encodes to: a set (``uniqueItems``) is read from an array with repeated items,
    which it holds once each, so the schema does not say that such an array is invalid.
    """
    schema: dict[str, Any] = _with_patterns(msgspec.json.schema(tp), accepted)
    return schema


def _with_patterns(schema: Any, accepted: bool) -> Any:
    if isinstance(schema, dict):
        found = {
            key: value if key in _LITERAL_KEYWORDS else _with_patterns(value, accepted)
            for key, value in schema.items()
        }
        if found.get("contentEncoding") == "base64" and "pattern" not in found:
            found["pattern"] = BASE64_PATTERN
        if accepted and found.get("type") == "array" and found.get("uniqueItems") is True:
            del found["uniqueItems"]
        return found
    if isinstance(schema, list):
        return [_with_patterns(item, accepted) for item in schema]
    return schema

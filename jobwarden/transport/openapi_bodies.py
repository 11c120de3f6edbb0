"""The request bodies of a server's OpenAPI document: a variant per tool that can take them.

A bare ``SubmitBody`` or ``AnalyzeBody`` fits requests the server refuses (an unknown tool, an
input of the wrong shape); given the server's tools, each becomes one of a variant per tool,
exact about what that tool accepts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The seed routes hand a tool {"image_bytes": <image>, "mime_type": <mime_type>}: the body member
# that becomes each input member.
SEED_INPUT = {"image": "image_bytes", "mime_type": "mime_type"}


def one_per_tool(
    body: dict[str, Any], tools: Mapping[str, dict[str, Any]], components: dict[str, Any]
) -> dict[str, Any]:
    """``body`` (SubmitBody's schema) as one variant per tool; each tool's named input types go
    to ``components`` as ``<tool>.<type>``. ``input`` is required where ``{}``, the server's
    default for it, is not an input the tool accepts: the tool's input has required members, or
    is not an object at all (an ``array_like`` input type's is an array)."""
    variants = []
    for name, schema in tools.items():
        defs = schema.get("$defs", {})
        for type_name, type_schema in defs.items():
            components[f"{name}.{type_name}"] = rehomed(type_schema, name)
        root = rehomed({k: v for k, v in schema.items() if k != "$defs"}, name)
        properties = {**body["properties"], "tool": {"const": name}, "input": root}
        variant = {**body, "title": f"SubmitBody ({name})", "properties": properties}
        taken = _object_of(schema)
        if taken.get("type") != "object" or taken.get("required"):
            variant["required"] = [*body["required"], "input"]
        variants.append(variant)
    return {"title": body["title"], "description": body["description"], "oneOf": variants}


def one_per_seed_tool(
    body: dict[str, Any],
    plugins: Mapping[str, Sequence[str]],
    tools: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """``body`` (AnalyzeBody's schema) as one variant per tool the seed routes can run: a tool
    whose input ``{"image_bytes", "mime_type"}`` can fit. ``plugins``: each plugin's tools, the
    first the one run when the body names none. The tools' named types are expected in the
    components already (``one_per_tool`` puts them there).

    With no such tool no body fits, and the schema says so: every request is refused.
    """
    variants = []
    for plugin, names in plugins.items():
        for position, name in enumerate(names):
            members = _seed_members(tools[name])
            if members is None:
                continue
            properties = {**body["properties"], "plugin": {"const": plugin}}
            for member, schema in members.items():
                base = body["properties"][member]
                if schema is not True and schema != base:
                    properties[member] = {"allOf": [base, rehomed(schema, name)]}
            short = name.removeprefix(f"{plugin}.")
            required = list(body["required"])
            if position == 0:
                properties["tool"] = {"enum": [short, None]}
            else:
                properties["tool"] = {"const": short}
                required.append("tool")
            variants.append(
                {
                    **body,
                    "title": f"AnalyzeBody ({name})",
                    "properties": properties,
                    "required": required,
                }
            )
    head = {"title": body["title"], "description": body["description"]}
    return {**head, "oneOf": variants} if variants else {**head, "not": {}}


def rehomed(schema: Any, tool: str) -> Any:
    """``schema`` with its references to ``#/$defs/X`` made ``#/components/schemas/<tool>.X``."""
    if isinstance(schema, dict):
        return {
            key: (
                value.replace("#/$defs/", f"#/components/schemas/{tool}.", 1)
                if key == "$ref" and isinstance(value, str)
                else rehomed(value, tool)
            )
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [rehomed(item, tool) for item in schema]
    return schema


def _object_of(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a tool's input schema refers to: msgspec names a Struct in ``$defs``."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        found: dict[str, Any] = schema["$defs"][ref.removeprefix("#/$defs/")]
        return found
    return schema


def _seed_members(schema: dict[str, Any]) -> dict[str, Any] | None:
    """What the tool asks of each seed body member that becomes its input (``True``: nothing);
    None if no seed body gives it an input it accepts."""
    root = _object_of(schema)
    if root.get("type") != "object" or not set(root.get("required", ())) <= {*SEED_INPUT.values()}:
        return None
    members = {}
    for member, field in SEED_INPUT.items():
        found = root.get("properties", {}).get(field, root.get("additionalProperties", True))
        if found is False:
            return None
        members[member] = found
    return members

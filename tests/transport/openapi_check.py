"""A test-only middleware that checks every JSON response against the server's OpenAPI document."""

from __future__ import annotations

from typing import Any

import jsonschema
import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from jobwarden.transport.openapi import build_spec


class OpenApiChecker:
    """Validates responses; ``problems`` lists every mismatch seen (empty when all conform)."""

    def __init__(self) -> None:
        self.spec = build_spec()
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource("urn:spec", resource)
        self.problems: list[str] = []
        self.checked = 0

    def schema_for(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        """The documented JSON schema of that response, or None if it is not JSON."""
        operation = self.spec["paths"].get(path, {}).get(method.lower())
        if operation is None:
            self.problems.append(f"{method} {path}: not in the OpenAPI document")
            return None
        response = operation["responses"].get(str(status))
        if response is None:
            self.problems.append(f"{method} {path}: status {status} not documented")
            return None
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema is None or "$ref" not in schema:
            return schema  # none, or written out in place (the document's own: an object)
        return {"$ref": "urn:spec" + schema["$ref"]}

    def check(self, method: str, path: str, status: int, body: bytes) -> None:
        """Record a problem unless ``body`` matches the documented schema."""
        schema = self.schema_for(method, path, status)
        if schema is None:
            return
        self.checked += 1
        try:
            validator = jsonschema.Draft202012Validator(schema, registry=self._registry)
            validator.validate(msgspec.json.decode(body))
        except (jsonschema.ValidationError, msgspec.DecodeError) as exc:
            self.problems.append(f"{method} {path} {status}: {str(exc)[:400]}")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Pass the request on, then check a JSON answer."""
        response = await handler(request)
        resource = request.match_info.route.resource
        if (
            isinstance(response, web.Response)
            and response.content_type == "application/json"
            and resource is not None
            and isinstance(response.body, bytes)
        ):
            self.check(request.method, resource.canonical, response.status, response.body)
        return response

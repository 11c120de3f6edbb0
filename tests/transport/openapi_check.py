"""A test-only middleware that checks every JSON response against the server's OpenAPI document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from jobwarden.transport.openapi import build_spec

# The headers the API sends with some statuses, for clients to act on: each must be documented
# where it is sent.
CHECKED_HEADERS = ("Allow", "Retry-After", "Upgrade", "WWW-Authenticate")


class OpenApiChecker:
    """Validates responses; ``problems`` lists every mismatch seen (empty when all conform)."""

    def __init__(self) -> None:
        self.spec = build_spec()
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource("urn:spec", resource)
        self.problems: list[str] = []
        self.checked = 0

    def response_for(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        """The documented response, or None (a problem recorded) if there is none."""
        operation = self.spec["paths"].get(path, {}).get(method.lower())
        if operation is None:
            self.problems.append(f"{method} {path}: not in the OpenAPI document")
            return None
        response: dict[str, Any] | None = operation["responses"].get(str(status))
        if response is None:
            self.problems.append(f"{method} {path}: status {status} not documented")
        return response

    def check_headers(
        self, method: str, path: str, status: int, headers: Mapping[str, str]
    ) -> None:
        """Record a problem for each of the API's own headers (``CHECKED_HEADERS``) that the
        response sends undocumented, or that it documents as required and the response lacks."""
        response = self.response_for(method, path, status)
        if response is not None:
            self._check_headers(f"{method} {path} {status}", response, headers)

    def _check_headers(
        self, where: str, response: dict[str, Any], headers: Mapping[str, str]
    ) -> None:
        documented = response.get("headers", {})
        for name in CHECKED_HEADERS:
            if name in headers and name not in documented:
                self.problems.append(f"{where}: header {name} not documented")
            if name not in headers and documented.get(name, {}).get("required"):
                self.problems.append(f"{where}: required header {name} missing")

    def check(self, method: str, path: str, status: int, body: bytes) -> None:
        """Record a problem unless ``body`` matches the documented schema."""
        response = self.response_for(method, path, status)
        if response is not None:
            self._check_body(f"{method} {path} {status}", response, body)

    def _check_body(self, where: str, response: dict[str, Any], body: bytes) -> None:
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return
        if "$ref" in schema:
            schema = {"$ref": "urn:spec" + schema["$ref"]}
        # else written out in place (the document's own: an object)
        self.checked += 1
        try:
            validator = jsonschema.Draft202012Validator(schema, registry=self._registry)
            validator.validate(msgspec.json.decode(body))
        except (jsonschema.ValidationError, msgspec.DecodeError) as exc:
            self.problems.append(f"{where}: {str(exc)[:400]}")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Pass the request on, then check its status and the API's own headers, and a JSON
        answer's body (a websocket's status is its handshake's, 101)."""
        response = await handler(request)
        resource = request.match_info.route.resource
        if resource is None:
            return response
        # aiohttp answers HEAD with the GET handler.
        method = "GET" if request.method == "HEAD" else request.method
        where = f"{method} {resource.canonical} {response.status}"
        documented = self.response_for(method, resource.canonical, response.status)
        if documented is None:
            return response
        self._check_headers(where, documented, response.headers)
        if (
            isinstance(response, web.Response)
            and response.content_type == "application/json"
            and isinstance(response.body, bytes)
        ):
            self._check_body(where, documented, response.body)
        return response

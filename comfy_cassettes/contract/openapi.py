"""The OpenAPI 3.1 document of a replay server: the admin API from ``ADMIN_ROUTES`` and its models, and the
ComfyUI routes from ``contract/comfy.py``; served at ``/__cassettes__/openapi.json``, written by
``comfy-cassettes openapi``.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, cast

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from ..version import __version__
from . import bodies as m
from .comfy import SCHEMAS as COMFY_SCHEMAS
from .comfy import comfy_paths
from .routes import ADMIN_ROUTES, AdminRoute

REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEME = "adminToken"


class _Schema(GenerateJsonSchema):
    """Pydantic's JSON Schema without the titles it derives from field names (noise in a generated client)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _named(body: Any) -> str:
    return body.__name__ if isinstance(body, type) and issubclass(body, BaseModel) else ""


@functools.lru_cache(maxsize=1)
def _admin_schemas() -> tuple[dict[int, Any], dict[str, Any]]:
    """Each admin body/answer type's schema (a $ref for models) and the components they define."""
    types: dict[int, Any] = {}
    for route in ADMIN_ROUTES:
        for item in (route.body, route.query, *route.answers.values()):
            if item is not None:
                types[id(item)] = item
    inputs: list[tuple[Any, JsonSchemaMode, TypeAdapter[Any]]] = [
        (key, "validation", TypeAdapter(item)) for key, item in types.items()
    ]
    mapping, defs = TypeAdapter.json_schemas(inputs, ref_template=REF_TEMPLATE, schema_generator=_Schema)
    return {key: schema for (key, _), schema in mapping.items()}, dict(defs.get("$defs", {}))


def _schema_of(item: Any) -> dict[str, Any]:
    return copy.deepcopy(_admin_schemas()[0][id(item)])


def _query_parameters(route: AdminRoute) -> list[dict[str, Any]]:
    if route.query is None:
        return []
    parameters = []
    for name, info in route.query.model_fields.items():
        schema = TypeAdapter(cast(Any, info.annotation)).json_schema()
        options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
        parameters.append({"name": name, "in": "query", "required": False, "description": info.description or "",
                           "schema": options[0] if len(options) == 1 else {"anyOf": options}})
    return parameters


_STATUS_TEXT = {
    200: "", 201: "added: ", 400: "refused: the body, a key or the query is wrong (problems and accepted say which): ",
    404: "not found: ", 408: "timed out: ", 409: "conflict: ",
}


def _operation(route: AdminRoute) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.name, "summary": route.summary, "tags": ["admin"],
        # Open on loopback unless the server was given a token; with one (any other address) it is required.
        "security": [{}, {SECURITY_SCHEME: []}],
    }
    parameters = [{"name": name, "in": "path", "required": True, "description": text, "schema": {"type": "string"}}
                  for name, text in route.path_params.items()] + _query_parameters(route)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        schema = _schema_of(route.body)
        if route.body is m.NoBody:
            schema = {"type": "object", "maxProperties": 0}
        required = route.body is m.FaultRules or bool(isinstance(route.body, type) and issubclass(route.body, BaseModel)
                                                       and any(f.is_required() for f in route.body.model_fields.values()))
        operation["requestBody"] = {"required": required, "content": {"application/json": {"schema": schema}},
                                    "description": "JSON; an empty body reads as {}" if not required else "JSON"}
    responses: dict[str, Any] = {}
    for status, answer in route.answers.items():
        own = answer.__dict__.get("__doc__") if _named(answer) else None
        description = (_STATUS_TEXT.get(status, "") + (own.strip().splitlines()[0] if own else "")).rstrip(": ") or "OK"
        responses[str(status)] = {"description": description, "content": {"application/json": {"schema": _schema_of(answer)}}}
    if route.name != "openapi":
        responses["401"] = {"description": "the server has an admin token and the request did not carry it",
                            "content": {"application/json": {"schema": _schema_of(m.Refusal)}}}
    operation["responses"] = responses
    return operation


@functools.lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ADMIN_ROUTES:
        paths.setdefault(route.full_path, {})[route.method.lower()] = _operation(route)
    paths.update(comfy_paths())
    schemas = {**_admin_schemas()[1], **COMFY_SCHEMAS}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "comfy-cassettes replay server",
            "version": __version__,
            "description": (
                "A ComfyUI replayed from cassettes. The `comfyui` operations are ComfyUI's own API (each also at "
                "`/api/...`), with the shapes real captures of ComfyUI 0.3.64 show; the `admin` operations under "
                "`/__cassettes__` control the replay: reset, request journal, faults, manual clock. Admin bodies are "
                "strict: an unknown or mistyped key is a 400 naming it and the accepted keys."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8189", "description": "comfy-cassettes serve (default port)"}],
        "tags": [{"name": "comfyui", "description": "ComfyUI's API, as the replay serves it"},
                 {"name": "admin", "description": "the replay's control API"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {SECURITY_SCHEME: {
                "type": "http", "scheme": "bearer",
                "description": "needed only when the server has an admin token: always when it is bound to an address "
                               "other than loopback (serve prints it), or when given --admin-token",
            }},
        },
    }


def openapi_document() -> dict[str, Any]:
    """The document (a fresh copy: callers may change theirs)."""
    return copy.deepcopy(_document())

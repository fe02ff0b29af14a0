"""The error bodies the OpenAPI document promises are the ones the API sends.

Litestar documents a handler's bad input (400) with its own body, ``{status_code, detail,
extra}``; this API answers with a ``Problem`` (errors.py), and the Mistral facade with
Mistral's fault. A generated client (or schemathesis, tests/integration/
test_api_openapi_live.py) believed the document and found every 400 wrong."""

from __future__ import annotations

from litestar.openapi.spec import OpenAPI, OpenAPIType, Reference, Schema

from runstream_api.mistral.routes import PREFIX as MISTRAL_PREFIX

_STRING = Schema(type=OpenAPIType.STRING)


def _problem(tombstone: Schema | Reference) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["status", "error", "message"],
        properties={
            "status": Schema(type=OpenAPIType.INTEGER, description="The HTTP status"),
            "error": Schema(type=OpenAPIType.STRING, description="A short code: bad_input, ..."),
            "message": Schema(
                type=OpenAPIType.STRING, description="What went wrong, and what to do"
            ),
            "field": Schema(type=OpenAPIType.STRING, description="The request field at fault"),
            "command_id": _STRING,
            "tombstone": tombstone,
        },
        description="An error: what went wrong, and the field at fault for bad input",
    )


MISTRAL_FAULT = Schema(
    type=OpenAPIType.OBJECT,
    required=["faultcode", "faultstring"],
    properties={
        "faultcode": Schema(type=OpenAPIType.STRING, description="Client or Server"),
        "faultstring": _STRING,
        "debuginfo": Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),
    },
    description="A Mistral API fault",
)


def _litestars_own(schema: Schema | Reference | None) -> bool:
    return isinstance(schema, Schema) and schema.required == ["detail", "status_code"]


def openapi_errors(doc: OpenAPI) -> OpenAPI:
    """Every 400 Litestar documented with its own body: the API's Problem (Mistral's fault
    under /v2) instead."""
    schemas = doc.components.schemas if doc.components else None
    tombstone: Schema | Reference = (
        Reference(ref="#/components/schemas/Tombstone")
        if schemas and "Tombstone" in schemas
        else Schema(type=OpenAPIType.OBJECT)
    )
    problem = _problem(tombstone)
    for path, item in (doc.paths or {}).items():
        body = MISTRAL_FAULT if path.startswith(MISTRAL_PREFIX) else problem
        for operation in (item.get, item.put, item.post, item.delete, item.patch):
            if operation is None or not operation.responses:
                continue
            response = operation.responses.get("400")
            if response is None or isinstance(response, Reference):
                continue
            for media in (response.content or {}).values():
                if _litestars_own(media.schema):
                    media.schema = body
    return doc

"""Times on the wire: ISO 8601 with the zone (UTC), never epoch floats.

The contracts and read models keep times as epoch seconds (cheap to store and compare);
what the API sends converts every ``at`` / ``*_at`` field on the way out (``to_wire`` for
a model, ``iso_responses`` as the routers' after-request hook, ``openapi_times`` so the
schema says so too). A zero time means "not yet" (a run not started): null. User data is
left alone: a run's arguments or labels may well have a key ending in ``_at``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response
from litestar.openapi.spec import OpenAPI, OpenAPIType, Reference, Schema

from runstream.query import iso

# Keys whose values are the user's data, never converted.
USER_DATA = frozenset({"args", "labels", "input", "output", "results", "result_types", "stats"})


def _is_time(key: str, value: Any) -> bool:
    return (
        (key == "at" or key.endswith("_at"))
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    )


def iso_times(value: Any) -> Any:
    """Builtins (``msgspec.to_builtins`` of a model) with the time fields as ISO 8601."""
    if isinstance(value, list):
        return [iso_times(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {
        key: (iso(item) if _is_time(key, item) else item if key in USER_DATA else iso_times(item))
        for key, item in value.items()
    }


def to_wire(model: Any) -> Any:
    return iso_times(msgspec.to_builtins(model))


def _has_model(content: Any) -> bool:
    if isinstance(content, msgspec.Struct):
        return True
    return isinstance(content, list) and bool(content) and isinstance(content[0], msgspec.Struct)


async def iso_responses(response: Response[Any]) -> Response[Any]:
    """After a handler: a model it answers with goes out with ISO 8601 times."""
    # Files and streams (no ``content``) go out as they are.
    if _has_model(getattr(response, "content", None)):
        response.content = to_wire(response.content)
    return response


def _time_schema(schema: Schema) -> None:
    for name, prop in (schema.properties or {}).items():
        if not isinstance(prop, Schema):
            continue
        if (name == "at" or name.endswith("_at")) and prop.type in (
            OpenAPIType.NUMBER,
            OpenAPIType.INTEGER,
        ):
            prop.type = [OpenAPIType.STRING, OpenAPIType.NULL]
            prop.format = "date-time"  # type: ignore[assignment]
            prop.description = "ISO 8601 with zone (UTC); null: not yet"
            if prop.default is not None:
                prop.default = None  # 0.0 ("not yet") goes out as null
        elif name not in USER_DATA:
            _time_schema(prop)
    for sub in [*(schema.one_of or []), *(schema.any_of or []), *(schema.all_of or [])]:
        if isinstance(sub, Schema):
            _time_schema(sub)
    if isinstance(schema.items, Schema):
        _time_schema(schema.items)


def openapi_times(doc: OpenAPI) -> OpenAPI:
    """The generated document, with the time fields of every model as the wire has them."""
    if doc.components and doc.components.schemas:
        for schema in doc.components.schemas.values():
            if not isinstance(schema, Reference):
                _time_schema(schema)
    return doc

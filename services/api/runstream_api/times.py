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


# Whether a key names a time, per key seen (model field names: a small set).
_TIME_KEYS: dict[str, bool] = {}
_MAX_TIME_KEYS = 10_000


def _is_time_key(key: str) -> bool:
    known = _TIME_KEYS.get(key)
    if known is None:
        known = key == "at" or key.endswith("_at")
        if len(_TIME_KEYS) < _MAX_TIME_KEYS:
            _TIME_KEYS[key] = known
    return known


def iso_times(value: Any) -> Any:
    """Builtins fresh from ``msgspec.to_builtins`` (changed in place, and returned) with
    the time fields as ISO 8601. In place and with the key test remembered: a page of 50
    runs went through here in more time than its query took."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            item_kind = type(item)
            if item_kind is float or item_kind is int:  # never bool: type(True) is bool
                if _is_time_key(key):
                    value[key] = iso(item)
            elif (item_kind is dict or item_kind is list) and key not in USER_DATA:
                iso_times(item)
    elif kind is list:
        for item in value:
            if type(item) is dict or type(item) is list:
                iso_times(item)
    return value


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

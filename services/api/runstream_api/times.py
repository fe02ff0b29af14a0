"""Times on the wire: ISO 8601 with the zone (UTC), never epoch floats.

The contracts and read models keep times as epoch seconds (cheap to store and compare);
what the API sends converts every ``at`` / ``*_at`` field on the way out (``to_wire`` for
a model, ``iso_responses`` as the routers' after-request hook, ``openapi_times`` so the
schema says so too). A zero time means "not yet" (a run not started): null. User data is
left alone: a run's arguments or labels may well have a key ending in ``_at``.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
import msgspec.inspect as mi
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


# Field types that never hold a dict or a list.
_SCALARS = (mi.IntType, mi.FloatType, mi.StrType, mi.BoolType, mi.NoneType, mi.LiteralType)


@functools.cache
def _layout(cls: type[msgspec.Struct]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """A Struct's fields as ``iso_times`` would treat them: the time keys among those that
    hold only scalars, and (attribute, key) of those that may hold more, user data aside.
    Keys as ``to_builtins`` writes them (encode names)."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    times: list[str] = []
    nested: list[tuple[str, str]] = []
    for f in info.fields:
        kinds = f.type.types if isinstance(f.type, mi.UnionType) else (f.type,)
        if all(isinstance(k, _SCALARS) for k in kinds):
            if _is_time_key(f.encode_name):
                times.append(f.encode_name)
        elif f.encode_name not in USER_DATA:
            nested.append((f.name, f.encode_name))
    return tuple(times), tuple(nested)


def _struct_times(model: msgspec.Struct, wire: Any) -> None:
    """``iso_times`` on ``wire`` (``to_builtins(model)``), led by the model's layout: only
    the keys that can be times or hold some are looked at (a page of 50 runs has 1,500)."""
    if type(wire) is not dict:  # an array-like Struct
        iso_times(wire)
        return
    times, nested = _layout(type(model))
    value: Any
    for key in times:
        value = wire.get(key)  # absent: omitted as a default
        if type(value) is float or type(value) is int:
            wire[key] = iso(value)
    for name, key in nested:
        value = wire.get(key)
        kind = type(value)
        if kind is dict or kind is list:
            source = getattr(model, name)
            if isinstance(source, msgspec.Struct):
                _struct_times(source, value)
            elif kind is list and type(source) is list and len(source) == len(value):
                for item, item_wire in zip(source, value, strict=True):
                    if isinstance(item, msgspec.Struct):
                        _struct_times(item, item_wire)
                    elif type(item_wire) is dict or type(item_wire) is list:
                        iso_times(item_wire)
            else:
                iso_times(value)
        elif (kind is float or kind is int) and _is_time_key(key):
            wire[key] = iso(value)


def to_wire(model: Any) -> Any:
    wire = msgspec.to_builtins(model)
    if isinstance(model, msgspec.Struct):
        _struct_times(model, wire)
        return wire
    if type(model) is list and type(wire) is list:
        for item, item_wire in zip(model, wire, strict=True):
            if isinstance(item, msgspec.Struct):
                _struct_times(item, item_wire)
            else:
                iso_times(item_wire)
        return wire
    return iso_times(wire)


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

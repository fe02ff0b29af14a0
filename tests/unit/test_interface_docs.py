"""The interface documents: the checked-in AsyncAPI document is the generated one, and the
OpenAPI document the API generates is valid OpenAPI 3.1."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from litestar.exceptions.base_exceptions import LitestarDeprecationWarning
from openapi_spec_validator import validate

from runstream import asyncapi
from runstream.settings import Settings
from runstream_api.app import create_app

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_checked_in_asyncapi_document_is_up_to_date() -> None:
    checked_in = (DOCS / "asyncapi.json").read_text()
    assert checked_in == asyncapi.text(), "run 'make asyncapi' and commit docs/asyncapi.json"


def test_the_asyncapi_document_carries_the_contracts_schemas() -> None:
    doc = json.loads(asyncapi.text())
    assert doc["asyncapi"].startswith("3.")
    assert {"commands", "feed"} <= set(doc["channels"])
    schemas = doc["components"]["schemas"]
    assert {"StartRun", "DeleteRun", "RunQueued", "RunDeleted", "CommandRejected"} <= set(schemas)
    command = schemas["commands.Message.Payload"]["properties"]["c"]
    assert "$ref" in command or "anyOf" in command


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in ([v] if k == "$ref" else _refs(v))]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def test_the_asyncapi_addresses_parameters_component_keys_and_references_are_valid() -> None:
    """AsyncAPI 3: braces in a channel address name a parameter the channel declares (a
    shard's hash tag is one), a component's key has only letters, digits, '.', '-', '_',
    and every reference leads somewhere."""
    doc = json.loads(asyncapi.text())
    for name, channel in doc["channels"].items():
        named = re.findall(r"\{([^{}]*)\}", channel["address"])
        assert named == [asyncapi.SHARD_PARAMETER], (name, channel["address"])
        assert set(named) == set(channel["parameters"]), name
        assert channel["parameters"][named[0]]["examples"][0] == "{rs:s0}"
    for kind, components in doc["components"].items():
        for key in components:
            assert re.fullmatch(r"[A-Za-z0-9.\-_]+", key), (kind, key)
    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert _resolve(doc, ref) is not None, ref


def test_the_openapi_document_is_valid_openapi_31() -> None:
    with warnings.catch_warnings():
        # Litestar 2.x warns of what 3.0 will drop (inferred dependencies); not this test's.
        warnings.simplefilter("ignore", LitestarDeprecationWarning)
        app = create_app(Settings())
    spec = app.openapi_schema.to_schema()
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises OpenAPIValidationError naming what is wrong

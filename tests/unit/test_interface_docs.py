"""The interface documents: the checked-in AsyncAPI document is the generated one, and the
OpenAPI document the API generates is valid OpenAPI 3.1."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

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
    command = schemas["commands:Message:Payload"]["properties"]["c"]
    assert "$ref" in command or "anyOf" in command


def test_the_openapi_document_is_valid_openapi_31() -> None:
    with warnings.catch_warnings():
        # Litestar 2.x warns of what 3.0 will drop (inferred dependencies); not this test's.
        warnings.simplefilter("ignore", LitestarDeprecationWarning)
        app = create_app(Settings())
    spec = app.openapi_schema.to_schema()
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises OpenAPIValidationError naming what is wrong

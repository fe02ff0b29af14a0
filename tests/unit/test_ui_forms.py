"""The UI's start form from a parameter JSON Schema, and the guide shared with the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream.domain.scenarios import load_registry
from runstream.settings import load_settings
from runstream_api.ui import schema_form


def synthetic_form() -> list[schema_form.FormField]:
    registry = load_registry(load_settings().scenario_modules)
    return schema_form.fields(registry.get("synthetic").describe()["parameters"])


def test_fields_follow_the_schema() -> None:
    form = {f.name: f for f in synthetic_form()}
    assert form["items"].widget == "number" and form["items"].step == "1"
    assert form["items"].minimum == 0 and form["items"].default == 100
    assert form["delay_ms"].step == "any"
    assert form["namespace"].widget == "text" and form["namespace"].max_length == 100
    enum = schema_form.fields(
        {"type": "object", "properties": {"d": {"enum": ["a", "b"]}, "x": {"type": "array"}}}
    )
    assert (enum[0].widget, enum[0].choices) == ("select", ("a", "b"))
    assert enum[1].widget == "json"


def test_arguments_leave_empty_fields_to_the_defaults() -> None:
    args = schema_form.arguments(synthetic_form(), {"items": "7", "namespace": "", "seed": "x"})
    assert args == {"items": 7, "seed": "x"}  # the bad number is left for validation


def test_bad_json_and_missing_required_name_the_field() -> None:
    form = schema_form.fields(
        {"type": "object", "required": ["x"], "properties": {"x": {"type": "array"}}}
    )
    with pytest.raises(schema_form.FormError) as missing:
        schema_form.arguments(form, {})
    assert missing.value.field == "x"
    with pytest.raises(schema_form.FormError, match="x must be JSON"):
        schema_form.arguments(form, {"x": "[1,"})
    assert schema_form.field_of("Expected `int`, got `str` - at `$.items`") == "items"


def test_guide_text_is_the_readmes() -> None:
    root = Path(__file__).resolve().parents[2]
    guide = (root / "services/api/runstream_api/ui/guide.md").read_text()
    readme = (root / "README.md").read_text()
    for line in guide.splitlines():
        text = line.lstrip("#").strip()
        assert text in readme, f"README lacks the guide's line {text!r}"

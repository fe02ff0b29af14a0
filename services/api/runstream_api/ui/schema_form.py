"""A start form from a scenario's parameter JSON Schema, and the form's values back as the
run's arguments. Validation is the scenario's own (``Scenario.validate``, as the API and
the workers do it): the form only turns texts into what it plainly means."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

# msgspec names the bad field as "... - at `$.items`".
_AT_FIELD = re.compile(r"at `\$\.([A-Za-z0-9_]+)")


@dataclass(frozen=True)
class FormField:
    name: str
    widget: str  # number, text, select, checkbox, json
    required: bool
    default: Any
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: str = "any"
    max_length: int | None = None
    description: str = ""
    rule: str = ""  # a short hint of the schema's rule (pattern, length)

    @property
    def default_text(self) -> str:
        if self.default is None:
            return ""
        if self.widget == "json":
            return msgspec.json.encode(self.default).decode()
        return str(self.default)


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(schema, schema.get("$defs", {})[ref.removeprefix("#/$defs/")])
    return node


def _hint(prop: Mapping[str, Any]) -> str:
    parts = []
    if "minLength" in prop or "maxLength" in prop:
        parts.append(f"{prop.get('minLength', 0)} to {prop.get('maxLength', '∞')} characters")
    if "pattern" in prop:
        parts.append(f"matching {prop['pattern']}")
    if "minimum" in prop or "maximum" in prop:
        parts.append(f"from {prop.get('minimum', '-∞')} to {prop.get('maximum', '∞')}")
    return "; ".join(parts)


def fields(schema: Mapping[str, Any]) -> list[FormField]:
    root = _resolve(schema, schema)
    required = set(root.get("required", []))
    out = []
    for name, raw in root.get("properties", {}).items():
        prop = _resolve(schema, raw)
        kind = prop.get("type")
        common: dict[str, Any] = {
            "name": name,
            "required": name in required,
            "default": prop.get("default"),
            "description": str(prop.get("description", "")),
            "rule": _hint(prop),
        }
        if "enum" in prop:
            out.append(FormField(widget="select", choices=tuple(map(str, prop["enum"])), **common))
        elif kind in ("integer", "number"):
            out.append(
                FormField(
                    widget="number",
                    minimum=prop.get("minimum"),
                    maximum=prop.get("maximum"),
                    step="1" if kind == "integer" else "any",
                    **common,
                )
            )
        elif kind == "boolean":
            out.append(FormField(widget="checkbox", **common))
        elif kind == "string":
            out.append(FormField(widget="text", max_length=prop.get("maxLength"), **common))
        else:
            out.append(FormField(widget="json", **common))
    return out


class FormError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def field_of(message: str) -> str | None:
    """The parameter a validation message is about, if it names one."""
    match = _AT_FIELD.search(message)
    return match.group(1) if match else None


def arguments(form: list[FormField], values: Mapping[str, str]) -> dict[str, Any]:
    """The form's texts as arguments: empty means the default (left out); a text that is
    no number stays a text, for the scenario's validation to name what is wrong."""
    args: dict[str, Any] = {}
    for f in form:
        if f.widget == "checkbox":
            args[f.name] = values.get(f.name, "") in ("on", "true", "1")
            continue
        text = values.get(f.name, "").strip()
        if not text:
            if f.required:
                raise FormError(f"{f.name} is required", f.name)
            continue
        if f.widget == "json":
            try:
                args[f.name] = msgspec.json.decode(text)
            except msgspec.DecodeError as exc:
                raise FormError(f"{f.name} must be JSON: {exc}", f.name) from None
        elif f.widget == "number":
            args[f.name] = _number(text, integer=f.step == "1")
        else:
            args[f.name] = text
    return args


def _number(text: str, integer: bool) -> Any:
    """The number a text plainly is; else the text itself, for the validation to name."""
    try:
        return int(text) if integer else float(text)
    except ValueError:
        return text

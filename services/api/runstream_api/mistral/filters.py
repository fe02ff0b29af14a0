"""Mistral's list filters: ``?field=value`` or ``?field=op:value`` with op one of eq, neq,
in, nin (comma-separated values), gt, gte, lt, lte, has (substring). Parsed into
``Filter``s and applied to execution documents (dicts of strings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPERATORS = ("eq", "neq", "in", "nin", "gt", "gte", "lt", "lte", "has")
MAX_VALUE_LENGTH = 1000


class BadFilter(ValueError):
    """A filter that cannot be applied; the message names the field."""


@dataclass(frozen=True)
class Filter:
    field: str
    op: str
    values: tuple[str, ...]

    def matches(self, doc: dict[str, Any]) -> bool:
        raw = doc.get(self.field)
        value = "" if raw is None else str(raw)
        first = self.values[0]
        match self.op:
            case "eq":
                return value == first
            case "neq":
                return value != first
            case "in":
                return value in self.values
            case "nin":
                return value not in self.values
            case "gt":
                return value > first
            case "gte":
                return value >= first
            case "lt":
                return value < first
            case "lte":
                return value <= first
            case _:  # has
                return first in value


def parse_filter(field: str, text: str, allowed: frozenset[str]) -> Filter:
    if field not in allowed:
        raise BadFilter(f"cannot filter on {field!r}: one of {', '.join(sorted(allowed))}")
    if len(text) > MAX_VALUE_LENGTH:
        raise BadFilter(f"filter {field} is longer than {MAX_VALUE_LENGTH} characters")
    op, sep, rest = text.partition(":")
    if not sep or op not in OPERATORS:
        # No operator (or a value that only looks like one, e.g. a time): equality.
        op, rest = "eq", text
    values = tuple(v.strip() for v in rest.split(",")) if op in ("in", "nin") else (rest,)
    return Filter(field, op, values)


def parse_filters(params: dict[str, str], allowed: frozenset[str]) -> list[Filter]:
    return [parse_filter(field, text, allowed) for field, text in params.items()]

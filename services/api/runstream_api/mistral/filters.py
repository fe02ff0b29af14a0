"""Mistral's list parameters on the read side's query model (``runstream.query``).

A filter is ``?field=value`` or ``?field=op:value`` with op one of eq, neq, in, nin
(comma-separated values), gt, gte, lt, lte, has (substring), on an execution field that
maps onto a run field; ``sort_keys``/``sort_dirs`` map the same way and ``marker`` is an
execution id. Values are translated to the run's (a Mistral state to the runstream states
shown as it, an execution id to its run id, Mistral's ``YYYY-MM-DD HH:MM:SS`` UTC times to
ISO 8601). Fields with no run field (``state_info``, ``input``, ``output`` ...) cannot be
filtered on or sorted by: a 400 names them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from runstream import query
from runstream.domain.scenarios import Registry
from runstream_api.mistral import mapping

OPERATORS = query.OPERATORS
MAX_VALUE_LENGTH = 1000
_EQUALITY = frozenset({"eq", "neq", "in", "nin"})
# Execution field -> run field.
RUN_FIELD = {
    "id": "id",
    "workflow_name": "scenario",
    "workflow_id": "scenario",
    "state": "state",
    "description": "description",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "source_execution_id": "source_run_id",
}
# workflow_id is a hash of the name: its order is not the name's.
SORTABLE = frozenset(RUN_FIELD) - {"workflow_id"}


class BadFilter(ValueError):
    """A filter, sort or marker that cannot be applied; the message names the field."""


def _states(values: Iterable[str]) -> list[str]:
    out = []
    for value in values:
        if value not in mapping.MISTRAL_STATES:
            raise BadFilter(f"bad state {value!r}: one of {', '.join(mapping.MISTRAL_STATES)}")
        out += [run for run, shown in mapping.STATES.items() if shown == value]
    return out


def run_id_of(value: str, field: str = "marker") -> str:
    run_id = mapping.uuid_to_run(value.strip())
    if run_id is None:
        raise BadFilter(f"{field}: {value[:60]!r} is not an execution id")
    return run_id


def _time(value: str, field: str) -> str:
    text = value.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(
            f"{field}: {text[:60]!r} is not a time (YYYY-MM-DD HH:MM:SS, UTC)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # Mistral's times are UTC without a zone
    return when.isoformat()


def parse_filter(field: str, text: str, registry: Registry) -> query.Filter:
    if field not in RUN_FIELD:
        raise BadFilter(f"cannot filter on {field!r}: one of {', '.join(sorted(RUN_FIELD))}")
    if len(text) > MAX_VALUE_LENGTH:
        raise BadFilter(f"filter {field} is longer than {MAX_VALUE_LENGTH} characters")
    op, sep, rest = text.partition(":")
    if not sep or op not in OPERATORS:
        # No operator (or a value that only looks like one, e.g. a time): equality.
        op, rest = "eq", text
    values = [v.strip() for v in rest.split(",")] if op in ("in", "nin") else [rest]
    convert: Callable[[str], str] | None = None
    if field == "state":
        if op not in _EQUALITY:
            raise BadFilter(f"operator {op!r} does not apply to state: eq, neq, in or nin")
        values = _states(values)
        op = {"eq": "in", "neq": "nin"}.get(op, op)
    elif field == "workflow_id":
        if op not in _EQUALITY:
            raise BadFilter(f"operator {op!r} does not apply to workflow_id: eq, neq, in or nin")
        by_id = {mapping.workflow_id(s.name): s.name for s in registry}
        # An id no workflow has matches no run.
        values = [by_id.get(v, "") for v in values]
        op = {"eq": "in", "neq": "nin"}.get(op, op)
    elif field in ("id", "source_execution_id"):
        if op not in (*_EQUALITY, *query.RANGE_OPS):
            raise BadFilter(f"operator {op!r} does not apply to {field}")
        convert = lambda v: run_id_of(v, field)  # noqa: E731
    elif field in ("created_at", "updated_at"):
        convert = lambda v: _time(v, field)  # noqa: E731
    if convert is not None:
        values = [convert(v) for v in values]
    try:
        return query.make_filter(RUN_FIELD[field], op, ",".join(values), context=f"{field}={text}")
    except query.BadQuery as exc:
        raise BadFilter(str(exc)) from None


def parse_filters(params: Iterable[tuple[str, str]], registry: Registry) -> list[query.Filter]:
    return [parse_filter(field, text, registry) for field, text in params]


def sort_keys(keys: str, dirs: str) -> tuple[query.SortKey, ...]:
    """Mistral's comma-separated sort_keys and sort_dirs (one direction for all, or one
    per key) as the query's sort keys."""
    names = [k.strip() for k in (keys or "created_at").split(",") if k.strip()]
    directions = [d.strip() for d in (dirs or "").split(",") if d.strip()]
    for d in directions:
        if d not in ("asc", "desc"):
            raise BadFilter(f"bad sort_dirs {d!r}: asc or desc")
    specs = []
    for i, name in enumerate(names):
        if name not in SORTABLE:
            raise BadFilter(f"cannot sort by {name!r}: one of {', '.join(sorted(SORTABLE))}")
        direction = directions[i] if i < len(directions) else (directions or ["asc"])[0]
        specs.append(f"{RUN_FIELD[name]}:{direction}")
    try:
        return query.parse_sort(specs)
    except query.BadQuery as exc:
        raise BadFilter(str(exc)) from None

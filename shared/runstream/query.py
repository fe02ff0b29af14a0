"""Run queries: Mistral's filter operators over the fields of a run summary, sorting, paging.

One table, ``FIELDS``, says for every queryable field its type and how it is indexed; the
parser, the index postings (what ``append.lua`` writes per run) and the reference matcher
(``matches``, which the Lua query must agree with) are all driven by it.

A filter is ``field=op:value`` with op one of ``eq, neq, in, nin, gt, gte, lt, lte, has``
(``in``/``nin`` take comma-separated values; ``field=value`` means ``eq``). Times are ISO
8601 with a zone. A missing value (a run not started yet has no ``started_at``) matches
only ``neq`` and ``nin``, and sorts before every present value.
"""

from __future__ import annotations

import enum
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from runstream.domain.run import RunSummary

OPERATORS = ("eq", "neq", "in", "nin", "gt", "gte", "lt", "lte", "has")
RANGE_OPS = frozenset({"gt", "gte", "lt", "lte"})
MAX_LIMIT = 1000


class Kind(enum.Enum):
    ID = "a run id"
    KEYWORD = "a text, indexed by value"  # eq/in are set lookups
    TEXT = "a text"  # every operator reads the summary
    NUMBER = "a number"
    TIME = "a time (ISO 8601 with a zone)"
    LABELS = "labels (key=value)"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    read: Callable[[Any], Any]  # a RunSummary, or a Tombstone (TOMBSTONE_FIELDS)
    equality_only: bool = False  # a yes/no field: eq, neq, in, nin
    # The index keeps a sorted set of its values (sorting walks it). A keyword rarely sorted
    # by has none, which saves a write per run: its matches are sorted as they are read.
    sorted_set: bool = True
    # A text with many values also has a lexical index (a sorted set ordered by the whole
    # text, runstream.query.lex_prefix): sorting by it walks runs in text order instead of
    # reading every run whose text shares the score's 6 bytes.
    lexical: bool = False

    @property
    def sortable(self) -> bool:
        return self.kind is not Kind.LABELS


def _f(name: str, kind: Kind) -> Field:
    if kind is Kind.TIME:  # 0: not (yet) happened
        return Field(name, kind, lambda s: getattr(s, name) or None)
    return Field(name, kind, lambda s: getattr(s, name))


# The queryable fields. To add one: give RunSummary the field (with a default), then a row
# here; the index picks it up on the next append of each run (or `runctl rebuild-index`).
# A Lua-side read of the summary uses the same JSON name (see lua/query.lua).
FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        _f("id", Kind.ID),
        _f("scenario", Kind.KEYWORD),
        Field("scenario_version", Kind.KEYWORD, lambda s: s.scenario_version, sorted_set=False),
        _f("state", Kind.KEYWORD),
        Field("name", Kind.KEYWORD, lambda s: s.name, lexical=True),
        _f("actor", Kind.KEYWORD),
        Field("description", Kind.KEYWORD, lambda s: s.description, lexical=True),
        _f("labels", Kind.LABELS),
        _f("created_at", Kind.TIME),
        _f("updated_at", Kind.TIME),
        _f("started_at", Kind.TIME),
        _f("ended_at", Kind.TIME),
        _f("duration_ms", Kind.NUMBER),
        _f("items_processed", Kind.NUMBER),
        _f("priority", Kind.NUMBER),
        Field("source_run_id", Kind.KEYWORD, lambda s: s.source_run_id, sorted_set=False),
        _f("input_bytes", Kind.NUMBER),
        _f("output_bytes", Kind.NUMBER),
        _f("effects_left", Kind.NUMBER),
        Field(
            "tracked",
            Kind.KEYWORD,
            lambda s: "true" if s.tracked else "false",
            equality_only=True,
            sorted_set=False,
        ),
    )
}
ARGS_PREFIX = "args."
SORTABLE = tuple(name for name, f in FIELDS.items() if f.sortable)

# What ``runctl list --deleted`` queries: the tombstones of deleted runs (store.events).
TOMBSTONE_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("id", Kind.ID, lambda t: t.run_id),
        _f("scenario", Kind.KEYWORD),
        _f("actor", Kind.KEYWORD),
        _f("deleted_at", Kind.TIME),
        _f("effects_left", Kind.NUMBER),
        _f("irreversible", Kind.NUMBER),
    )
}


@dataclass(frozen=True, slots=True)
class Schema:
    """What a query runs over: its fields, whether ``args.<name>`` exists, its order."""

    fields: dict[str, Field]
    has_args: bool
    default_sort: tuple[SortKey, ...]

    def field_names(self) -> str:
        return ", ".join([*self.fields, *(["args.<name>"] if self.has_args else [])])

    def sort_names(self) -> str:
        names = [n for n, f in self.fields.items() if f.sortable]
        return ", ".join([*names, *(["args.<name>"] if self.has_args else [])])


class BadQuery(ValueError):
    """A filter, sort key or paging option that cannot be used; the message says why."""


# --------------------------------------------------------------------------- values
def parse_time(text: str) -> float:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadQuery(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-01T00:00:00Z)") from None
    if when.tzinfo is None:
        raise BadQuery(f"time {text!r} has no zone: add Z or an offset such as +01:00")
    return when.timestamp()


def iso(ts: float | None) -> str | None:
    """A stored time as ISO 8601 with its zone (UTC), milliseconds kept."""
    if ts is None or ts == 0:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadQuery(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadQuery(f"{text!r} is not a finite number")
    return value


def arg_text(value: Any) -> str:
    """The canonical text of an argument value: what ``args.x=eq:...`` compares with."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _arg_number(value: Any) -> float | None:
    if type(value) is bool or not isinstance(value, (int, float)):  # a tuple: faster
        return None
    return float(value) if math.isfinite(value) else None


def _score(value: float) -> str:
    return repr(float(value))


_BASE32 = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}


def text_score(text: str) -> str:
    """An order-keeping score for a text: its first 6 UTF-8 bytes as a 48-bit number
    (exact in a double). Ties are broken on the whole text (lua/query.lua)."""
    head = text.encode()[:6].ljust(6, b"\0")
    return _score(int.from_bytes(head, "big"))


_TO_BASE32 = str.maketrans("0123456789ABCDEFGHJKMNPQRSTVWXYZ", "0123456789ABCDEFGHIJKLMNOPQRSTUV")


def id_score(run_id: str) -> str:
    """Run ids are Crockford base32: the first 10 characters (50 bits) keep their order."""
    head = run_id[:10].ljust(10, "0")
    if _BASE32.keys() >= set(head):
        return _score(int(head.translate(_TO_BASE32), 32))
    value = 0
    for c in head:  # not a run id: other characters count as 0
        value = value * 32 + _BASE32.get(c, 0)
    return _score(value)


# --------------------------------------------------------------------------- filters
@dataclass(frozen=True, slots=True)
class Filter:
    field: str  # a FIELDS name or args.<name>
    op: str
    values: tuple[Any, ...]  # parsed: floats for numbers and times, else text

    def describe(self) -> str:
        return f"{self.field}={self.op}:{','.join(str(v) for v in self.values)}"


_OP_PREFIX = re.compile(r"^([a-z]+):(.*)$", re.S)


def parse_filter(text: str, schema: Schema | None = None) -> Filter:
    """``field=op:value`` (``field=value`` for eq), checked against the schema's fields."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise BadQuery(f"bad filter {text!r}: expected FIELD=OP:VALUE, e.g. state=eq:running")
    match = _OP_PREFIX.match(rest)
    op, raw = (match.group(1), match.group(2)) if match else ("eq", rest)
    if op not in OPERATORS:
        raise BadQuery(
            f"unknown operator {op!r} in filter {text!r}; operators: {', '.join(OPERATORS)}"
        )
    return make_filter(name, op, raw, context=text, schema=schema)


def make_filter(
    name: str, op: str, raw: str, *, context: str = "", schema: Schema | None = None
) -> Filter:
    schema = schema or RUNS
    where = f" in filter {context!r}" if context else ""
    if op not in OPERATORS:
        raise BadQuery(f"unknown operator {op!r}{where}; operators: {', '.join(OPERATORS)}")
    texts = raw.split(",") if op in ("in", "nin") else [raw]
    if name.startswith(ARGS_PREFIX) and schema.has_args:
        if len(name) == len(ARGS_PREFIX):
            raise BadQuery(f"filter{where} names no argument: use args.<name>")
        if op in RANGE_OPS:
            return Filter(name, op, tuple(_checked(_number, t, name, where) for t in texts))
        return Filter(name, op, tuple(texts))
    field = schema.fields.get(name)
    if field is None:
        raise BadQuery(f"unknown field {name!r}{where}; fields: {schema.field_names()}")
    kind = field.kind
    if field.equality_only and op not in ("eq", "neq", "in", "nin"):
        raise BadQuery(f"operator {op!r} does not apply to {name} (true or false){where}")
    if kind in (Kind.NUMBER, Kind.TIME) and op == "has":
        raise BadQuery(f"operator 'has' does not apply to {name} ({kind.value}){where}")
    if kind is Kind.LABELS:
        if op in RANGE_OPS:
            raise BadQuery(f"operator {op!r} does not apply to labels{where}")
        if op != "has":
            for t in texts:
                if split_label(t) is None:
                    raise BadQuery(f"bad label {t!r}{where}: expected key=value")
    if kind is Kind.NUMBER:
        return Filter(name, op, tuple(_checked(_number, t, name, where) for t in texts))
    if kind is Kind.TIME:
        return Filter(name, op, tuple(_checked(parse_time, t, name, where) for t in texts))
    return Filter(name, op, tuple(texts))


def split_label(text: str) -> tuple[str, str] | None:
    """``key=value`` as (key, value); None when either side is empty or there is no ``=``."""
    key, eq, value = text.partition("=")
    return (key, value) if eq and key and value else None


def _checked(parse: Callable[[str], float], text: str, name: str, where: str) -> float:
    try:
        return parse(text)
    except BadQuery as exc:
        raise BadQuery(f"bad value for {name}{where}: {exc}") from None


# --------------------------------------------------------------------------- sorting
@dataclass(frozen=True, slots=True)
class SortKey:
    field: str
    desc: bool = False


DEFAULT_SORT = (SortKey("created_at"),)


def _sortable(name: str, schema: Schema) -> bool:
    if schema.has_args and name.startswith(ARGS_PREFIX):
        return len(name) > len(ARGS_PREFIX)
    return name in schema.fields and schema.fields[name].sortable


def parse_sort(specs: list[str], schema: Schema | None = None) -> tuple[SortKey, ...]:
    """``key[:asc|desc]``, repeated or comma-separated; the run id breaks remaining ties."""
    schema = schema or RUNS
    keys: list[SortKey] = []
    for spec in (part.strip() for s in specs for part in s.split(",")):
        if not spec:
            continue
        name, _, direction = spec.partition(":")
        if not _sortable(name, schema):
            raise BadQuery(f"cannot sort by {name!r}; sort keys: {schema.sort_names()}")
        if direction not in ("", "asc", "desc"):
            raise BadQuery(f"bad sort direction {direction!r} in {spec!r}: asc or desc")
        if any(k.field == name for k in keys):
            raise BadQuery(f"sort key {name!r} given twice")
        keys.append(SortKey(name, direction == "desc"))
    return tuple(keys) or schema.default_sort


RUNS = Schema(FIELDS, has_args=True, default_sort=DEFAULT_SORT)
TOMBSTONES = Schema(TOMBSTONE_FIELDS, has_args=False, default_sort=(SortKey("deleted_at"),))


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """What ``Client.search``/``count`` take: filters, sort keys, a page."""

    filters: tuple[Filter, ...] = ()
    sort: tuple[SortKey, ...] = DEFAULT_SORT
    limit: int = 50
    marker: str | None = None  # the run id the previous page ended with


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"--limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


def build(
    filters: list[str],
    labels: list[str] | None = None,
    sort: list[str] | None = None,
    limit: int = 50,
    marker: str | None = None,
    schema: Schema | None = None,
) -> Query:
    """A query from command-line texts (runctl's --filter, --label, --sort); over runs,
    or over the tombstones of deleted runs with ``schema=TOMBSTONES``."""
    parsed = [parse_filter(f, schema) for f in filters]
    parsed += [
        make_filter("labels", "eq", lab, context=f"--label {lab}", schema=schema)
        for lab in labels or []
    ]
    return Query(
        filters=tuple(parsed),
        sort=parse_sort(sort or [], schema),
        limit=check_limit(limit),
        marker=marker,
    )


# --------------------------------------------------------------------------- reference
def _values(item: Any, name: str, fields: dict[str, Field]) -> list[Any] | None:
    """The field's value(s) in a run, None when missing; labels are a list of k=v."""
    if name.startswith(ARGS_PREFIX) and name not in fields:
        arg = name[len(ARGS_PREFIX) :]
        return [item.args[arg]] if arg in item.args else None
    value = fields[name].read(item)
    if name == "labels":
        return [f"{k}={v}" for k, v in value.items()]
    return None if value is None else [value]


def _compare(op: str, value: Any, wanted: Any) -> bool:
    if op in ("eq", "in"):
        return bool(value == wanted)
    if op == "gt":
        return bool(value > wanted)
    if op == "gte":
        return bool(value >= wanted)
    if op == "lt":
        return bool(value < wanted)
    return bool(value <= wanted)


def _matches_one(f: Filter, item: Any, fields: dict[str, Field]) -> bool:
    present = _values(item, f.field, fields)
    negated = f.op in ("neq", "nin")
    op = {"neq": "eq", "nin": "in"}.get(f.op, f.op)
    hit = False
    is_arg = f.field.startswith(ARGS_PREFIX)
    for value in present or []:
        if op == "has":
            hit = isinstance(value, str) and f.values[0] in value
        elif is_arg and op in RANGE_OPS:
            number = _arg_number(value)
            hit = number is not None and _compare(op, number, f.values[0])
        elif is_arg:
            hit = arg_text(value) in f.values
        elif isinstance(value, str):
            hit = any(_compare(op, value.encode(), str(w).encode()) for w in f.values)
        else:
            hit = any(_compare(op, float(value), w) for w in f.values)
        if hit:
            break
    return not hit if negated else hit


def matches(item: Any, filters: tuple[Filter, ...], schema: Schema | None = None) -> bool:
    """The reference meaning of a query: the index must return exactly these runs (or
    tombstones, with ``schema=TOMBSTONES``)."""
    fields = (schema or RUNS).fields
    return all(_matches_one(f, item, fields) for f in filters)


def sort_value(item: Any, name: str, schema: Schema | None = None) -> tuple[int, Any]:
    """A sort key's value: missing first, texts by their UTF-8 bytes. An argument's: its
    number when it is one, else its text (arg_text), after every number."""
    fields = (schema or RUNS).fields
    if name.startswith(ARGS_PREFIX) and name not in fields:
        arg = name[len(ARGS_PREFIX) :]
        if arg not in item.args:
            return (0, 0)
        raw = item.args[arg]
        number = _arg_number(raw)
        return (1, number) if number is not None else (2, arg_text(raw).encode())
    value = fields[name].read(item)
    if value is None:
        return (0, 0)
    return (1, value.encode() if isinstance(value, str) else float(value))


class _Desc:
    """Reverses the order of one component of a sort tuple."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and bool(self.v == other.v)


def sort_tuple(
    item: Any, keys: tuple[SortKey, ...], schema: Schema | None = None
) -> tuple[Any, ...]:
    """The full order of a query: its keys, then the id (in the first key's direction)."""
    schema = schema or RUNS
    parts: list[Any] = []
    for k in keys:
        v = sort_value(item, k.field, schema)
        parts.append(_Desc(v) if k.desc else v)
    last = schema.fields["id"].read(item).encode()
    parts.append(_Desc(last) if keys[0].desc else last)
    return tuple(parts)


def page(
    items: list[Any], q: Query, id_of: Callable[[Any], str], schema: Schema | None = None
) -> list[Any]:
    """A query's page over items held in memory (the tombstones): the matches in order,
    after the marker (which must be one of ``items``: LookupError if not)."""
    hits = sorted(
        (i for i in items if matches(i, q.filters, schema)),
        key=lambda i: sort_tuple(i, q.sort, schema),
    )
    if q.marker is not None:
        marker = next((i for i in items if id_of(i) == q.marker), None)
        if marker is None:
            raise LookupError(q.marker)
        after = sort_tuple(marker, q.sort, schema)
        hits = [i for i in hits if after < sort_tuple(i, q.sort, schema)]
    return hits[: q.limit]


# --------------------------------------------------------------------------- postings
Posting = dict[Literal["z", "s", "t", "l"], Any]
LEXICAL = tuple(name for name, f in FIELDS.items() if f.lexical)


def lex_prefix(text: str) -> str:
    """What a run's member of a lexical index starts with (then its id): the text with NUL
    escaped as NUL 0x01, then NUL NUL. Members then sort by the text bytewise, then by the
    run id, and the first NUL NUL ends the text."""
    return text.replace("\0", "\0\1") + "\0\0"


def postings(summary: RunSummary) -> Posting:
    """What the index holds for one run: a score per sorted set (sort keys, number and
    time ranges, numeric arguments), the value sets it belongs to (eq/in lookups), and
    its texts, one JSON object (keyword and text fields, arguments that are no numbers:
    read by sorting and text operators without decoding the summary).
    lua/index_update.lua applies the difference to the previous postings. (Computed on
    every append: the part a run was started with is kept per run while it stays the
    same, and text scores are cached.)"""
    static = _static_postings(summary)
    z = dict(static.z)
    s = list(static.s)
    t = dict(static.t)
    for step in _CHANGING_STEPS:
        step(summary, z, s, t)
    return {"z": z, "s": s, "t": _texts_encoder.encode(t).decode(), "l": dict(static.l)}


# One step per field: its postings written into (z, s, t), as postings() describes.
_Step = Callable[[RunSummary, dict[str, str], list[str], dict[str, str]], None]


def _step(name: str, read: Callable[[Any], Any], kind: Kind, sorted_set: bool) -> _Step:
    """The field's step, its kind decided once here rather than for every run."""
    member = f"{name}="
    if kind is Kind.KEYWORD and sorted_set:

        def keyword(summary: Any, z: dict[str, str], s: list[str], t: dict[str, str]) -> None:
            value = read(summary)
            z[name] = _text_score(value)
            s.append(member + value)
            t[name] = value

        return keyword
    if kind is Kind.KEYWORD:

        def unsorted_keyword(
            summary: Any, z: dict[str, str], s: list[str], t: dict[str, str]
        ) -> None:
            value = read(summary)
            s.append(member + value)
            t[name] = value

        return unsorted_keyword
    if kind is Kind.NUMBER or kind is Kind.TIME:

        def number(summary: Any, z: dict[str, str], s: list[str], t: dict[str, str]) -> None:
            value = read(summary)
            z[name] = "-inf" if value is None else repr(float(value))

        return number
    if kind is Kind.TEXT:

        def text(summary: Any, z: dict[str, str], s: list[str], t: dict[str, str]) -> None:
            value = read(summary)
            z[name] = _text_score(value)
            t[name] = value

        return text
    if kind is Kind.ID:

        def run_id(summary: Any, z: dict[str, str], s: list[str], t: dict[str, str]) -> None:
            z[name] = id_score(read(summary))

        return run_id

    def labels(summary: Any, z: dict[str, str], s: list[str], t: dict[str, str]) -> None:
        s.extend(f"labels={k}={v}" for k, v in read(summary).items())

    return labels


@dataclass(frozen=True, slots=True)
class _Static:
    """The postings of the fields a run was started with, and what they were made of."""

    made_of: tuple[Any, ...]
    labels: dict[str, str]
    args: dict[str, Any]
    z: dict[str, str]
    s: list[str]
    t: dict[str, str]
    l: dict[str, str]  # noqa: E741 (the postings' own name for it)


_static_by_run: dict[str, _Static] = {}
STATIC_REMEMBERED = 4096  # runs (the worker appends to a run several times in a row)


def _static_postings(summary: RunSummary) -> _Static:
    made_of = _started_attributes(summary)
    known = _static_by_run.get(summary.id)
    if (
        known is not None
        and known.made_of == made_of
        and known.labels == summary.labels
        and known.args == summary.args
    ):
        return known
    z: dict[str, str] = {}
    s: list[str] = []
    t: dict[str, str] = {}
    for step in _STARTED_STEPS:
        step(summary, z, s, t)
    for arg, value in summary.args.items():
        text = arg_text(value)
        s.append(f"{ARGS_PREFIX}{arg}={text}")
        number = _arg_number(value)
        if number is not None:
            z[f"{ARGS_PREFIX}{arg}"] = _score(number)
        else:
            t[f"{ARGS_PREFIX}{arg}"] = text
    lexical = {name: lex_prefix(t[name]) for name in LEXICAL}
    static = _Static(made_of, dict(summary.labels), dict(summary.args), z, s, t, lexical)
    if len(_static_by_run) >= STATIC_REMEMBERED:
        del _static_by_run[next(iter(_static_by_run))]
    _static_by_run[summary.id] = static
    return static


_texts_encoder = msgspec.json.Encoder()
# What a run is started with (checked on every use, so a change is never missed); the
# rest changes as it runs.
_STARTED_NAMES = frozenset(
    {
        "id",
        "scenario",
        "scenario_version",
        "name",
        "actor",
        "description",
        "labels",
        "created_at",
        "priority",
        "source_run_id",
        "tracked",
    }
)
# A lexical index entry is written with the run's other started postings.
assert set(LEXICAL) <= _STARTED_NAMES
_POSTED = tuple((name, f.read, f.kind, f.sorted_set) for name, f in FIELDS.items())
_STARTED = tuple(p for p in _POSTED if p[0] in _STARTED_NAMES)
_CHANGING = tuple(p for p in _POSTED if p[0] not in _STARTED_NAMES)
_STARTED_STEPS = tuple(_step(*p) for p in _STARTED)
_CHANGING_STEPS = tuple(_step(*p) for p in _CHANGING)
# What the started fields' postings are made of (labels and args are compared on their own).
_started_attributes = operator.attrgetter(*sorted(_STARTED_NAMES - {"labels"}))
# Keyword values repeat across runs (scenario, actor, state ...); others rarely do (names):
# a plain dict, emptied when full, costs a miss far less than an LRU's eviction.
_text_scores: dict[str, str] = {}
TEXT_SCORES_REMEMBERED = 4096


def _text_score(text: str) -> str:
    score = _text_scores.get(text)
    if score is None:
        if len(_text_scores) >= TEXT_SCORES_REMEMBERED:
            _text_scores.clear()
        score = _text_scores[text] = text_score(text)
    return score

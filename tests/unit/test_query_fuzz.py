"""Fuzzing the API's query parsers (hypothesis): whatever a caller sends as filters, sort
keys or Mistral list parameters ends as a query or as a clean 400 naming the parameter,
never as another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runstream.domain.scenarios import load_registry
from runstream.query import FIELDS, OPERATORS
from runstream_api import run_query
from runstream_api.errors import ApiError
from runstream_api.mistral import filters as mistral

REGISTRY = load_registry(())
NAMES = st.sampled_from([*FIELDS, "args.items", "args.", "labels", "sort", "colour", ""])
MISTRAL_NAMES = st.sampled_from([*mistral.RUN_FIELD, "state_info", "input", "x"])
PIECES = st.sampled_from(
    [
        *OPERATORS,
        ":",
        ",",
        "=",
        "running",
        "SUCCESS",
        "2026-11-01T00:00:00Z",
        "2026-11-01 00:00:00",
        "1e309",
        "nan",
        "-1",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "0b3c5d1e-0000-4000-8000-000000000000",
        "\x00",
        "é",
    ]
)
VALUES = st.one_of(st.text(max_size=40), st.lists(PIECES, max_size=6).map("".join))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=4))
def test_run_filters_parse_or_are_a_400_naming_the_parameter(
    params: list[tuple[str, str]],
) -> None:
    try:
        found = run_query.filters_of(params)
    except ApiError as exc:
        assert exc.problem.status == 400
        assert exc.problem.field in {name for name, _ in params}
        return
    assert len(found) == sum(1 for name, _ in params if name not in run_query.PAGING)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=30), st.lists(PIECES, max_size=4).map("".join))))
def test_sort_keys_parse_or_are_a_400_naming_sort(sort: list[str]) -> None:
    try:
        run_query.build([], sort, 50, None, None)
    except ApiError as exc:
        assert exc.problem.status == 400 and exc.problem.field == "sort"


@settings(max_examples=400, deadline=None)
@given(MISTRAL_NAMES, VALUES)
def test_mistral_filters_parse_or_are_a_bad_filter(name: str, value: str) -> None:
    try:
        found = mistral.parse_filter(name, value, REGISTRY)
    except mistral.BadFilter as exc:
        assert str(exc)
        return
    assert found.field == mistral.RUN_FIELD[name]


@settings(max_examples=200, deadline=None)
@given(VALUES, VALUES)
def test_mistral_sort_keys_parse_or_are_a_bad_filter(keys: str, dirs: str) -> None:
    try:
        assert mistral.sort_keys(keys, dirs)
    except mistral.BadFilter as exc:
        assert str(exc)

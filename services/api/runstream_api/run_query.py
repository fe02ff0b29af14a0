"""The read side's query model over HTTP: ``GET /runs?state=in:running,stopped&
created_at=gte:2026-11-01T00:00:00Z&sort=created_at:desc&limit=50&marker=...&count=true``.

Every query parameter but the paging ones is a filter ``FIELD=OP:VALUE`` on a field of
``runstream.query.FIELDS`` (or ``args.<name>``, ``labels``), repeated to combine (AND).
The query runs on the index (``Client.search``/``count``), never over all runs here.
"""

from __future__ import annotations

from collections.abc import Iterable

from runstream.domain.run import STATES, RunSummary
from runstream.ids import is_run_id
from runstream.query import BadQuery, Filter, Query, make_filter, parse_filter, parse_sort
from runstream.store.search import MarkerNotFound
from runstream.tokens import ALL_PROJECTS, TokenRecord
from runstream_api.context import ApiContext
from runstream_api.errors import bad_input

# Query parameters that are no filters.
PAGING = frozenset({"sort", "limit", "marker", "count"})
# Filter values no state can take are refused rather than matching nothing silently.
_STATE_OPS = frozenset({"eq", "neq", "in", "nin"})


def checked_state(f: Filter) -> Filter:
    if f.field == "state" and f.op in _STATE_OPS:
        for value in f.values:
            if value not in STATES:
                raise BadQuery(f"bad state {value!r}: one of {', '.join(STATES)}")
    return f


def filters_of(params: Iterable[tuple[str, str]]) -> list[Filter]:
    """The filters among the query parameters; 400 naming the parameter at fault."""
    found = []
    for name, value in params:
        if name in PAGING:
            continue
        try:
            found.append(checked_state(parse_filter(f"{name}={value}")))
        except BadQuery as exc:
            raise bad_input(str(exc), field=name) from None
    return found


def project_filter(api: ApiContext, caller: TokenRecord) -> Filter | None:
    """A token for one project sees that project's runs: those of its scenarios."""
    if caller.project == ALL_PROJECTS:
        return None
    names = [s.name for s in api.registry if s.project == caller.project]
    # No scenario of the project: a name no scenario has (names are never empty).
    return make_filter("scenario", "in", ",".join(names) or "")


def build(
    filters: list[Filter], sort: list[str], limit: int, marker: str | None, scope: Filter | None
) -> Query:
    try:
        keys = parse_sort(sort)
    except BadQuery as exc:
        raise bad_input(str(exc), field="sort") from None
    if marker is not None and not is_run_id(marker):
        raise bad_input(f"marker {marker[:40]!r} is not a run id", field="marker")
    scoped = [*filters, scope] if scope is not None else filters
    return Query(filters=tuple(scoped), sort=keys, limit=limit, marker=marker)


async def search(api: ApiContext, q: Query) -> list[RunSummary]:
    try:
        return await api.client.search(q)
    except MarkerNotFound:
        raise bad_input(
            f"marker {q.marker} is not a run this query lists (deleted meanwhile?)",
            field="marker",
        ) from None
    except BadQuery as exc:
        raise bad_input(str(exc)) from None


async def count(api: ApiContext, q: Query) -> int:
    try:
        return await api.client.count(q)
    except BadQuery as exc:
        raise bad_input(str(exc)) from None

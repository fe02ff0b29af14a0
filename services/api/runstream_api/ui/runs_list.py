"""The runs page: the read side's query (filters, sort, marker paging, count) from a form,
and bulk actions over the runs selected on it, previewed before they are sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Template

from runstream.contracts.commands import DeleteMode
from runstream.domain.run import STATES
from runstream.ids import is_run_id, new_id
from runstream.query import FIELDS, BadQuery, Filter, Query, SortKey, make_filter, parse_sort
from runstream.store.search import MarkerNotFound
from runstream.tokens import ALL_PROJECTS, TokenRecord
from runstream_api.auth import require, visible_project
from runstream_api.context import ApiContext
from runstream_api.ui import commands, present
from runstream_api.ui.render import page

PAGE_SIZES = (25, 50, 100, 200)
# The columns the table sorts by (the query's sort keys).
COLUMNS = (
    ("name", "Run"),
    ("scenario", "Scenario"),
    ("state", "State"),
    ("items_processed", "Progress"),
    ("actor", "Actor"),
    ("created_at", "Created (UTC)"),
    ("duration_ms", "Duration"),
    ("effects_left", "Effects left"),
)
TIME_FIELDS = ("created_from", "created_to", "ended_from", "ended_to")


def _time(text: str, what: str) -> str:
    """A ``datetime-local`` value (taken as UTC) or ISO 8601 as the query's ISO text."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"{what}: {text!r} is not a date and time (YYYY-MM-DDTHH:MM)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.isoformat()


@dataclass
class RunFilters:
    """What the filter form holds; its texts, as given, fill the form again."""

    state: str = ""
    scenario: str = ""
    labels: str = ""
    actor: str = ""
    created_from: str = ""
    created_to: str = ""
    ended_from: str = ""
    ended_to: str = ""
    sort: str = "created_at:desc"
    limit: int = 50
    marker: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, query: dict[str, str]) -> RunFilters:
        known = {k: v.strip() for k, v in query.items() if k in cls.__dataclass_fields__}
        limit_text = known.pop("limit", "50")
        limit = int(limit_text) if limit_text.isdigit() else 50
        limit = limit if limit in PAGE_SIZES else 50
        known.pop("params", None)
        made = cls(**{**known, "limit": limit})  # type: ignore[arg-type]
        made.params = {k: v for k, v in known.items() if v}
        made.params["limit"] = str(limit)
        return made

    def query(self, project_scenarios: list[str] | None) -> Query:
        """The read side's query; BadQuery naming the field that cannot be used."""
        filters: list[Filter] = []
        if self.state:
            if self.state not in STATES:
                raise BadQuery(f"state: {self.state!r} is not one of {', '.join(STATES)}")
            filters.append(make_filter("state", "eq", self.state))
        if self.scenario:
            filters.append(make_filter("scenario", "eq", self.scenario))
        if project_scenarios is not None:
            # A token for one project sees that project's runs only.
            filters.append(make_filter("scenario", "in", ",".join(project_scenarios) or "-"))
        for label in self.labels.replace(",", " ").split():
            filters.append(make_filter("labels", "eq", label, context=f"label {label}"))
        if self.actor:
            filters.append(make_filter("actor", "eq", self.actor))
        for name, op, text in (
            ("created_at", "gte", self.created_from),
            ("created_at", "lte", self.created_to),
            ("ended_at", "gte", self.ended_from),
            ("ended_at", "lte", self.ended_to),
        ):
            if text:
                filters.append(make_filter(name, op, _time(text, name)))
        if self.marker and not is_run_id(self.marker):
            raise BadQuery(f"marker: {self.marker!r} is not a run id")
        return Query(
            filters=tuple(filters),
            sort=self.sort_keys(),
            limit=self.limit,
            marker=self.marker or None,
        )

    def sort_keys(self) -> tuple[SortKey, ...]:
        return parse_sort([self.sort]) if self.sort else parse_sort(["created_at:desc"])

    def sorted_by(self) -> tuple[str, bool]:
        first = self.sort_keys()[0]
        return first.field, first.desc


def project_scenarios(api: ApiContext, caller: TokenRecord) -> list[str] | None:
    if caller.project == ALL_PROJECTS:
        return None
    return [s.name for s in api.registry if s.project == caller.project]


class RunsPage(Controller):
    path = "/runs"

    @get("/", name="ui-runs")
    async def runs(
        self, request: Request[Any, Any, Any], api: ApiContext, ui_caller: TokenRecord
    ) -> Template:
        require(ui_caller, "viewer", visible_project(ui_caller))
        filters = RunFilters.of(dict(request.query_params))
        runs: list[Any] = []
        total = 0
        error = ""
        try:
            q = filters.query(project_scenarios(api, ui_caller))
            runs = await api.client.search(q)
            total = await api.client.count(q)
        except (BadQuery, MarkerNotFound) as exc:
            error = str(exc)
        next_marker = runs[-1].id if len(runs) == filters.limit else None
        sort_field, sort_desc = filters.sorted_by() if not error else ("created_at", True)
        return page(
            "runs.html",
            request,
            ui_caller,
            status=400 if error else 200,
            filters=filters,
            runs=runs,
            total=total,
            error=error,
            next_marker=next_marker,
            columns=COLUMNS,
            sort_field=sort_field,
            sort_desc=sort_desc,
            states=STATES,
            scenarios=[s.name for s in api.registry],
            page_sizes=PAGE_SIZES,
            may_operate=present.may(ui_caller, "operator", visible_project(ui_caller)),
            may_admin=present.may(ui_caller, "admin", visible_project(ui_caller)),
            sortable=set(FIELDS),
            deleted=request.query_params.get("deleted", ""),
        )

    @post("/bulk", name="ui-bulk", status_code=200)
    async def bulk(
        self, request: Request[Any, Any, Any], api: ApiContext, ui_caller: TokenRecord
    ) -> Template:
        form = await request.form()
        action = str(form.get("action", ""))
        run_ids = [str(r) for r in form.getall("run")] if "run" in form else []
        run_ids = [r for r in dict.fromkeys(run_ids) if is_run_id(r)]
        back = str(form.get("back", "")) or "?"
        if action not in present.BY_NAME:
            return self._bulk_page(request, ui_caller, back, error=f"unknown action {action!r}")
        if not run_ids:
            return self._bulk_page(request, ui_caller, back, error="select at least one run")
        reason = str(form.get("reason", ""))[:200]
        mode: DeleteMode = "keep_effects" if form.get("mode") == "keep_effects" else "revert"
        preview = await commands.preview(api, action, run_ids)
        if form.get("confirm") != "yes":
            return self._bulk_page(
                request, ui_caller, back, preview=preview, reason=reason, mode=mode
            )
        bulk_id = new_id()
        sent = [
            commands.command_for(
                action, run_id, ui_caller, reason=reason, mode=mode, bulk_id=bulk_id
            )
            for run_id in preview.fit
        ]
        statuses = await commands.send_all(api, ui_caller, sent)
        return self._bulk_page(
            request, ui_caller, back, preview=preview, statuses=statuses, bulk_id=bulk_id
        )

    def _bulk_page(
        self,
        request: Request[Any, Any, Any],
        caller: TokenRecord,
        back: str,
        *,
        error: str = "",
        **context: Any,
    ) -> Template:
        return page(
            "bulk.html",
            request,
            caller,
            status=400 if error else 200,
            error=error,
            back=back if back.startswith("?") else "?",
            actions=present.BY_NAME,
            **context,
        )

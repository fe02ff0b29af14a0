"""One run: header, arguments, timeline, effects, logs, results, and the actions its state
fits (revert and delete go through a dialog that shows what they will do first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.response import Redirect, Template

from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import RunSummary
from runstream.tokens import TokenRecord
from runstream_api.auth import project_of, require_run
from runstream_api.context import ApiContext
from runstream_api.errors import ApiError, bad_input
from runstream_api.outcomes import CommandStatus
from runstream_api.runs_routes import existing, revert_plan
from runstream_api.ui import commands, present
from runstream_api.ui.render import PREFIX, page

LOG_LINES = 500
# Events that only record progress: the timeline counts them instead of listing each.
PROGRESS_EVENTS = frozenset({"ChunkPrepared", "ItemsProcessed", "ChunkVoided"})


@dataclass(frozen=True)
class TimelineEntry:
    id: str
    at: float
    kind: str
    actor: str
    detail: str
    command_id: str


@dataclass(frozen=True)
class Conflict:
    element: str
    reason: str


def _detail(event: ev.Event) -> str:
    match event:
        case ev.RunQueued():
            return f"scenario {event.scenario} {event.scenario_version}".strip()
        case ev.RunStopped() | ev.RunCancelled():
            return f"reason: {event.reason}" if event.reason else ""
        case ev.RunFailed():
            return event.error
        case ev.RevertStarted():
            parts = ["force" if event.force else "", "then delete" if event.then_delete else ""]
            return ", ".join(p for p in parts if p)
        case ev.RunReverted():
            return (
                f"{event.compensated} compensated, {event.skipped} skipped, "
                f"{event.irreversible} irreversible not taken back"
            )
        case ev.CommandRejected():
            return f"{event.command_type} rejected: {event.reason}"
        case ev.RunPinned():
            return "pinned" if event.pinned else "unpinned"
    return ""


def timeline(history: list[tuple[str, ev.Event]]) -> tuple[list[TimelineEntry], int]:
    """The lifecycle events with actor and reason, and how many progress events there were."""
    entries: list[TimelineEntry] = []
    progress = 0
    for entry_id, event in history:
        kind = ev.event_type(event)
        if kind in PROGRESS_EVENTS or kind == "EffectsCompensated":
            progress += 1
            continue
        entries.append(
            TimelineEntry(
                id=entry_id,
                at=event.at,
                kind=kind,
                actor=str(getattr(event, "actor", "")),
                detail=_detail(event),
                command_id=event.command_id,
            )
        )
    return entries, progress


def conflicts(history: list[tuple[str, ev.Event]]) -> list[Conflict]:
    """The elements the run's reverts skipped, and why (who changed them since)."""
    return [
        Conflict(s.element, s.reason)
        for _, event in history
        if isinstance(event, ev.EffectsCompensated)
        for s in event.skipped
    ]


async def _run_context(
    api: ApiContext, caller: TokenRecord, run_id: str, *, live_part: bool = False
) -> tuple[RunSummary, dict[str, Any]]:
    """What the run's page shows; ``live_part``: only what changes as it goes on (no log,
    results or arguments: the page follows the log on its own)."""
    client = api.client
    run = await existing(client, run_id)
    require_run(api, caller, "viewer", run)
    project = project_of(api, run.scenario)
    state = (await client.store.load(run_id)).state
    history = await client.store.history(run_id)
    entries, progress = timeline(history)
    context = {
        "run": run,
        "actions": present.offered(state, caller, project),
        "may_rerun": present.may(caller, "operator", project),
        "timeline": entries,
        "progress_events": progress,
        "conflicts": conflicts(history),
        "active": run.state in ("queued", "running", "reverting"),
    }
    if not live_part:
        dropped, lines = await client.logs(run_id, count=LOG_LINES)
        context |= {
            "log_lines": lines,
            "log_dropped": dropped,
            "results": await client.results(run_id),
        }
    return run, context


def _gone(request: Request[Any, Any, Any], caller: TokenRecord, exc: ApiError) -> Template:
    return page(
        "gone.html",
        request,
        caller,
        status=exc.problem.status,
        problem=exc.problem,
        tombstone=exc.problem.tombstone,
    )


class RunPage(Controller):
    path = "/runs/{run_id:str}"

    @get("/", name="ui-run")
    async def run(
        self, request: Request[Any, Any, Any], api: ApiContext, ui_caller: TokenRecord, run_id: str
    ) -> Template:
        try:
            _, context = await _run_context(api, ui_caller, run_id)
        except ApiError as exc:
            if exc.problem.status in (404, 410):
                return _gone(request, ui_caller, exc)
            raise
        return page("run.html", request, ui_caller, **context)

    @get("/live", name="ui-run-live")
    async def live(
        self, request: Request[Any, Any, Any], api: ApiContext, ui_caller: TokenRecord, run_id: str
    ) -> Template:
        """The parts of the page that change as the run goes on (swapped in live)."""
        try:
            _, context = await _run_context(api, ui_caller, run_id, live_part=True)
        except ApiError as exc:
            if exc.problem.status in (404, 410):
                return _gone(request, ui_caller, exc)
            raise
        return page("run_live.html", request, ui_caller, **context)

    @get("/logs", name="ui-run-logs")
    async def logs(
        self,
        request: Request[Any, Any, Any],
        api: ApiContext,
        ui_caller: TokenRecord,
        run_id: str,
        after: str = "",
    ) -> Template:
        """Log lines after entry ``after`` (the page appends them)."""
        run = await existing(api.client, run_id)
        require_run(api, ui_caller, "viewer", run)
        _, lines = await api.client.logs(run_id, after=after, count=LOG_LINES)
        return page("log_lines.html", request, ui_caller, log_lines=lines)

    @get("/results/{name:str}", name="ui-run-result")
    async def result(
        self, api: ApiContext, ui_caller: TokenRecord, run_id: str, name: str
    ) -> Response[bytes]:
        require_run(api, ui_caller, "viewer", await existing(api.client, run_id))
        files = {f.name: f for f in await api.client.results(run_id)}
        content = await api.client.result(run_id, name)
        media = files[name].media_type if name in files else "application/octet-stream"
        return Response(
            content,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{_safe(name)}"'},
        )

    @get("/results.tar.gz", name="ui-run-archive")
    async def archive(
        self, api: ApiContext, ui_caller: TokenRecord, run_id: str
    ) -> Response[bytes]:
        require_run(api, ui_caller, "viewer", await existing(api.client, run_id))
        return Response(
            await api.client.results_archive(run_id),
            media_type="application/gzip",
            headers={"Content-Disposition": f'attachment; filename="{run_id}-results.tar.gz"'},
        )

    @get("/revert", name="ui-run-revert-dialog")
    async def revert_dialog(
        self,
        request: Request[Any, Any, Any],
        api: ApiContext,
        ui_caller: TokenRecord,
        run_id: str,
    ) -> Template:
        """The dry-run plan: what will be compensated, the conflicts, the irreversible."""
        run = await existing(api.client, run_id)
        require_run(api, ui_caller, "viewer", run)
        plan = await revert_plan(api.client, run_id, force=False)
        return page("revert_dialog.html", request, ui_caller, run=run, plan=plan)

    @get("/delete", name="ui-run-delete-dialog")
    async def delete_dialog(
        self,
        request: Request[Any, Any, Any],
        api: ApiContext,
        ui_caller: TokenRecord,
        run_id: str,
    ) -> Template:
        run = await existing(api.client, run_id)
        require_run(api, ui_caller, "viewer", run)
        return page("delete_dialog.html", request, ui_caller, run=run)

    @post("/act/{action:str}", name="ui-run-act", status_code=200)
    async def act(
        self,
        request: Request[Any, Any, Any],
        api: ApiContext,
        ui_caller: TokenRecord,
        run_id: str,
        action: str,
    ) -> Template | Redirect:
        form = await request.form()
        if action == "rerun":
            source = await existing(api.client, run_id)
            require_run(api, ui_caller, "viewer", source)
            rerun = await api.client.rerun_command(run_id, {}, actor=ui_caller.subject)
            status = await commands.send(api, ui_caller, rerun)
            if status.status == "rejected":
                return await self._after(request, api, ui_caller, run_id, status)
            return Redirect(f"{PREFIX}/runs/{rerun.run_id}", status_code=303)
        if action not in present.BY_NAME:
            raise bad_input(
                f"unknown action {action!r}: one of rerun, {', '.join(present.BY_NAME)}"
            )
        mode: cmd.DeleteMode = "keep_effects" if form.get("mode") == "keep_effects" else "revert"
        command = commands.command_for(
            action,
            run_id,
            ui_caller,
            reason=str(form.get("reason", ""))[:200],
            force=form.get("force") == "yes",
            mode=mode,
        )
        status = await commands.send(api, ui_caller, command)
        if action == "delete" and status.status != "rejected" and status.run is None:
            return Redirect(f"{PREFIX}/runs?deleted={run_id}", status_code=303)
        return await self._after(request, api, ui_caller, run_id, status)

    async def _after(
        self,
        request: Request[Any, Any, Any],
        api: ApiContext,
        caller: TokenRecord,
        run_id: str,
        status: CommandStatus,
    ) -> Template:
        """The run's page again, with the command's outcome said at its top."""
        try:
            _, context = await _run_context(api, caller, run_id)
        except ApiError as exc:
            return _gone(request, caller, exc)
        return page(
            "run.html",
            request,
            caller,
            status=409 if status.status == "rejected" else 200,
            outcome=status,
            headers={"HX-Push-Url": f"{PREFIX}/runs/{run_id}"},
            **context,
        )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200]

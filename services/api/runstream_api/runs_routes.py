"""Runs: list, one run, its history, and the lifecycle commands.

Every write becomes one command published through the Client (never applied here). Its
``command_id`` comes from the ``Idempotency-Key`` header when there is one, so a retried
request is applied once. Without ``?wait=true`` the answer is 202 with a Location to poll
(``/commands/{command_id}``); with it, 200 once the command took effect, 409 if it was
rejected, 202 if it had not taken effect within ``timeout`` seconds (it goes on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import HeaderParameter, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from runstream import revert
from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import Rejected, RunSummary
from runstream.domain.scenarios import BadArguments, Scenario
from runstream.ids import RUN_ID_PATTERN, new_id
from runstream.keys import Fields
from runstream.store import replies
from runstream.store.network import NetworkStore
from runstream.tokens import Role, TokenRecord
from runstream_api import dispatch, run_query
from runstream_api.auth import project_of, require, require_run, visible_project
from runstream_api.bodies import DeleteBody, ReasonBody, RevertBody, StartBody
from runstream_api.context import ApiContext
from runstream_api.errors import ApiError, bad_input, gone, not_found, rejected
from runstream_api.outcomes import CommandStatus

MAX_PAGE = 500
# The role each command needs (viewer: reading only).
ROLE_FOR: dict[type[cmd.Command], Role] = {
    cmd.StartRun: "operator",
    cmd.StopRun: "operator",
    cmd.ContinueRun: "operator",
    cmd.CancelRun: "operator",
    cmd.RevertRun: "admin",
    cmd.DeleteRun: "admin",
    cmd.TrackRun: "operator",
}
MAX_WAIT_S = 300.0

RunIdParam = Annotated[str, Parameter(pattern=RUN_ID_PATTERN, description="A run id (26 chars)")]
KeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="A retried request with the same key is applied once.",
    ),
]
WaitParam = Annotated[
    bool, Parameter(description="Wait until the command took effect (or was rejected).")
]
TimeoutParam = Annotated[
    float, Parameter(gt=0, le=MAX_WAIT_S, description="Seconds ?wait=true waits at most.")
]


class RunPage(msgspec.Struct, kw_only=True, omit_defaults=True):
    runs: list[RunSummary]
    # Pass as ?marker= for the next page; absent on the last page.
    next_marker: str | None = None
    # How many runs match (every page), when asked with ?count=true.
    count: int | None = None


LIST_DOC = (
    "Every query parameter but sort, limit, marker and count is a filter FIELD=OP:VALUE "
    "(FIELD=VALUE for eq) on a run field (id, scenario, scenario_version, state, name, "
    "actor, description, labels, created_at, updated_at, started_at, ended_at, duration_ms, "
    "items_processed, priority, source_run_id, input_bytes, output_bytes, effects_left, "
    "tracked) or an argument (args.NAME); OP is one of eq, neq, in, nin (comma-separated "
    "values), gt, gte, lt, lte, has (substring); times are ISO 8601 with a zone. Repeated "
    "filters all apply. Example: ?state=in:running,stopped&created_at=gte:2026-11-01T00:00:00Z"
    "&sort=created_at:desc&limit=50&count=true. Default order: oldest first."
)


class HistoryEntry(msgspec.Struct, kw_only=True):
    id: str
    event: ev.Event


class HistoryPage(msgspec.Struct, kw_only=True):
    events: list[HistoryEntry]
    next_after: str | None = None


async def existing(client: Client, run_id: str) -> RunSummary:
    """The run, or 404 (never existed) / 410 with its tombstone (deleted)."""
    found = await client.find(run_id)
    if found is not None:
        return found
    tomb = await client.store.tombstone(run_id)
    if tomb is not None:
        raise gone(tomb)
    raise not_found(f"run {run_id} does not exist")


def answer(status: CommandStatus) -> Response[CommandStatus]:
    if status.status == "rejected":
        raise rejected(f"{status.command} rejected: {status.reason}", status.command_id)
    if status.status == "done":
        return Response(status, status_code=HTTP_200_OK)
    return Response(
        status,
        status_code=HTTP_202_ACCEPTED,
        headers={"Location": f"/commands/{status.command_id}"},
    )


def known_scenario(api: ApiContext, name: str) -> Scenario[Any]:
    """The registered scenario ``name``, else 422 on field ``scenario`` listing the known ones."""
    found = api.registry.find(name)
    if found is None:
        known = ", ".join(s.name for s in api.registry)
        raise bad_input(f"unknown scenario {name!r}; scenarios: {known}", "scenario", 422)
    return found


async def publish(
    api: ApiContext,
    request: Request[Any, Any, Any],
    command: cmd.Command,
    key: str | None,
    wait: bool,
    timeout: float,
) -> Response[CommandStatus]:
    client = api.client
    # dispatch.publish checks the command (BadCommand: 400) before it writes anything.
    print_ = await dispatch.request_fingerprint(request)
    until: dispatch.Until = "done" if wait else "pending"
    return answer(
        await dispatch.publish(client, key, print_, command, until=until, timeout=timeout)
    )


async def run_command(
    api: ApiContext,
    request: Request[Any, Any, Any],
    caller: TokenRecord,
    run_id: str,
    key: str | None,
    wait: bool,
    timeout: float,
    make: Callable[[str], cmd.Command],
) -> Response[CommandStatus]:
    """A command for an existing run, by a caller with the role it needs: 404/410 before
    anything is sent (a retry of a delete that took effect answers as the delete did).
    ``make(command_id)`` builds it; its actor is the caller's subject."""
    if key is not None:
        dispatch.check_key(key)
    command_id = dispatch.command_id_for(caller.subject, key)
    command = make(command_id)
    needed = ROLE_FOR[type(command)]
    try:
        run = await existing(api.client, run_id)
    except ApiError as exc:
        tomb = exc.problem.tombstone
        if tomb is not None and key is not None:
            sent = await dispatch.sent_command(api.client, command_id)
            if sent is not None:
                require(caller, needed, project_of(api, tomb.scenario))
                return answer(await dispatch.status_of(api.client, sent))
        raise
    require_run(api, caller, needed, run)
    return await publish(api, request, command, key, wait, timeout)


class RunsController(Controller):
    path = "/runs"
    tags = ("runs",)

    @get("/", summary="List runs: filters, sort, marker paging, count", description=LIST_DOC)
    async def list_runs(
        self,
        api: ApiContext,
        caller: TokenRecord,
        request: Request[Any, Any, Any],
        sort: Annotated[
            list[str] | None,
            Parameter(description="KEY[:asc|desc], comma-separated or repeated."),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="Page size.")] = 50,
        marker: Annotated[
            str | None, Parameter(description="The last run of the page before.")
        ] = None,
        count: Annotated[
            bool, Parameter(description="Also say how many runs match (all pages).")
        ] = False,
    ) -> RunPage:
        require(caller, "viewer", visible_project(caller))
        filters = run_query.filters_of(request.query_params.multi_items())
        q = run_query.build(
            filters, sort or [], limit, marker, run_query.project_filter(api, caller)
        )
        # One more than asked: whether a next page exists.
        runs = await run_query.search(api, msgspec.structs.replace(q, limit=limit + 1))
        page, more = runs[:limit], len(runs) > limit
        total = await run_query.count(api, q) if count else None
        return RunPage(runs=page, next_marker=page[-1].id if more else None, count=total)

    @post(
        "/",
        summary="Start a run",
        status_code=HTTP_202_ACCEPTED,
        responses={},
    )
    async def start(
        self,
        api: ApiContext,
        caller: TokenRecord,
        request: Request[Any, Any, Any],
        data: StartBody,
        idempotency_key: KeyHeader = None,
        wait: WaitParam = False,
        timeout: TimeoutParam = 60.0,
    ) -> Response[CommandStatus]:
        if idempotency_key is not None:
            dispatch.check_key(idempotency_key)
        actor = caller.subject
        command_id = dispatch.command_id_for(actor, idempotency_key)
        if data.source_run_id is not None:
            require_run(api, caller, "viewer", await existing(api.client, data.source_run_id))
            command = await api.client.rerun_command(
                data.source_run_id,
                data.args,
                actor=actor,
                name=data.name,
                description=data.description,
            )
            if data.scenario is not None and data.scenario != command.scenario:
                raise bad_input(
                    f"run {data.source_run_id} is of scenario {command.scenario!r}, "
                    f"not {data.scenario!r}",
                    field="scenario",
                )
            command = msgspec.structs.replace(command, command_id=command_id)
        else:
            if data.scenario is None:
                raise bad_input("scenario is required (or source_run_id for a re-run)", "scenario")
            command = cmd.StartRun(
                run_id=new_id(),
                command_id=command_id,
                actor=actor,
                scenario=data.scenario,
                args=data.args,
                name=data.name or "",
                description=data.description or "",
            )
        scenario = known_scenario(api, command.scenario)
        try:
            scenario.validate(command.args)
        except BadArguments as exc:
            raise bad_input(str(exc), field="args", status=422) from None
        require(caller, "operator", scenario.project)
        response = await publish(api, request, command, idempotency_key, wait, timeout)
        response.headers["Content-Location"] = f"/runs/{response.content.run_id}"
        return response

    @get("/{run_id:str}", summary="One run")
    async def get_run(self, api: ApiContext, caller: TokenRecord, run_id: RunIdParam) -> RunSummary:
        run = await existing(api.client, run_id)
        require_run(api, caller, "viewer", run)
        return run

    @get("/{run_id:str}/history", summary="The run's events, oldest first")
    async def history(
        self,
        api: ApiContext,
        caller: TokenRecord,
        run_id: RunIdParam,
        after: Annotated[
            str | None, Parameter(pattern=r"^\d+-\d+\Z", description="An event id.")
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> HistoryPage:
        client = api.client
        require_run(api, caller, "viewer", await existing(client, run_id))
        start = f"({after}" if after else "-"
        raw = await client.redis.xrange(client.keys.events(run_id), start, "+", count=limit + 1)
        entries = [
            HistoryEntry(id=i.decode(), event=ev.decode_event(f[Fields.EVENT]))
            for i, f in replies.entries(raw)
        ]
        page = entries[:limit]
        more = len(entries) > limit
        return HistoryPage(events=page, next_after=page[-1].id if more else None)

    @post("/{run_id:str}/stop", summary="Stop at the next item boundary", status_code=200)
    async def stop(
        self,
        api: ApiContext,
        caller: TokenRecord,
        request: Request[Any, Any, Any],
        run_id: RunIdParam,
        data: ReasonBody | None = None,
        idempotency_key: KeyHeader = None,
        wait: WaitParam = False,
        timeout: TimeoutParam = 60.0,
    ) -> Response[CommandStatus]:
        body = data or ReasonBody()
        return await run_command(
            api,
            request,
            caller,
            run_id,
            idempotency_key,
            wait,
            timeout,
            lambda c: cmd.StopRun(
                run_id=run_id, command_id=c, actor=caller.subject, reason=body.reason
            ),
        )

    @post("/{run_id:str}/continue", summary="Resume a stopped run", status_code=200)
    async def continue_(
        self,
        api: ApiContext,
        caller: TokenRecord,
        request: Request[Any, Any, Any],
        run_id: RunIdParam,
        idempotency_key: KeyHeader = None,
        wait: WaitParam = False,
        timeout: TimeoutParam = 60.0,
    ) -> Response[CommandStatus]:
        return await run_command(
            api,
            request,
            caller,
            run_id,
            idempotency_key,
            wait,
            timeout,
            lambda c: cmd.ContinueRun(run_id=run_id, command_id=c, actor=caller.subject),
        )

    @post("/{run_id:str}/cancel", summary="End a run for good", status_code=200)
    async def cancel(
        self,
        api: ApiContext,
        caller: TokenRecord,
        request: Request[Any, Any, Any],
        run_id: RunIdParam,
        data: ReasonBody | None = None,
        idempotency_key: KeyHeader = None,
        wait: WaitParam = False,
        timeout: TimeoutParam = 60.0,
    ) -> Response[CommandStatus]:
        body = data or ReasonBody()
        return await run_command(
            api,
            request,
            caller,
            run_id,
            idempotency_key,
            wait,
            timeout,
            lambda c: cmd.CancelRun(
                run_id=run_id, command_id=c, actor=caller.subject, reason=body.reason
            ),
        )

    @post("/{run_id:str}/revert", summary="Take back the run's network changes", status_code=200)
    async def revert_(
        self,
        api: ApiContext,
        caller: TokenRecord,
        request: Request[Any, Any, Any],
        run_id: RunIdParam,
        data: RevertBody | None = None,
        dry_run: Annotated[bool, Parameter(description="Show the plan; change nothing.")] = False,
        idempotency_key: KeyHeader = None,
        wait: WaitParam = False,
        timeout: TimeoutParam = 60.0,
    ) -> Response[CommandStatus] | Response[revert.Plan]:
        body = data or RevertBody()
        if dry_run:
            # A dry run changes nothing: reading the run is enough.
            require_run(api, caller, "viewer", await existing(api.client, run_id))
            return Response(await revert_plan(api.client, run_id, body.force))
        return await run_command(
            api,
            request,
            caller,
            run_id,
            idempotency_key,
            wait,
            timeout,
            lambda c: cmd.RevertRun(
                run_id=run_id, command_id=c, actor=caller.subject, force=body.force
            ),
        )

    @post(
        "/{run_id:str}/delete",
        summary="Remove the run for good (a tombstone stays)",
        status_code=200,
    )
    async def delete(
        self,
        api: ApiContext,
        caller: TokenRecord,
        request: Request[Any, Any, Any],
        run_id: RunIdParam,
        data: DeleteBody | None = None,
        idempotency_key: KeyHeader = None,
        wait: WaitParam = False,
        timeout: TimeoutParam = 60.0,
    ) -> Response[CommandStatus]:
        body = data or DeleteBody()
        return await run_command(
            api,
            request,
            caller,
            run_id,
            idempotency_key,
            wait,
            timeout,
            lambda c: cmd.DeleteRun(
                run_id=run_id, command_id=c, actor=caller.subject, mode=body.mode
            ),
        )


async def revert_plan(client: Client, run_id: str, force: bool) -> revert.Plan:
    """What a revert would do now (409 if it would be rejected); nothing changes."""
    await existing(client, run_id)
    run = await client.store.load(run_id)
    state = msgspec.structs.replace(run.state)  # as stored: the check below records
    try:
        run.handle(cmd.RevertRun(run_id=run_id, force=force), 0.0)
    except Rejected as exc:
        raise rejected(f"revert would be rejected: {exc}") from None
    return await revert.plan(client.store, NetworkStore(client.redis, client.keys), state, force)


class CommandsController(Controller):
    path = "/commands"
    tags = ("commands",)

    @get("/{command_id:str}", summary="Where a command the API sent stands")
    async def command_status(
        self,
        api: ApiContext,
        caller: TokenRecord,
        command_id: Annotated[str, Parameter(pattern=r"^[A-Za-z0-9._:-]{1,64}\Z")],
    ) -> CommandStatus:
        sent = await dispatch.sent_command(api.client, command_id)
        if sent is None:
            raise not_found(f"no command {command_id} was sent through this API (or it expired)")
        status = await dispatch.status_of(api.client, sent)
        if status.run is not None:
            require_run(api, caller, "viewer", status.run)
        else:
            require(caller, "viewer", visible_project(caller))
        return status

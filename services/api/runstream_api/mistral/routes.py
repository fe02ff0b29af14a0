"""OpenStack Mistral v2's executions and workflows, over runs and scenarios (at /v2).

Existing Mistral clients work unchanged, pointed at ``http://HOST:PORT/v2`` with no
Keystone: the API token goes in ``X-Auth-Token`` (mistralclient's ``auth_token``). Errors
are Mistral's ``{"faultstring": ...}``. See ``mapping`` for the state mapping.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from litestar.types import ExceptionHandlersMap

from runstream.contracts import commands as cmd
from runstream.domain.run import RunSummary
from runstream.domain.scenarios import BadArguments
from runstream.ids import new_id
from runstream.query import Query
from runstream.tokens import TokenRecord
from runstream_api import dispatch, run_query
from runstream_api.auth import require, require_run, visible_project
from runstream_api.context import ApiContext
from runstream_api.errors import EXCEPTION_HANDLERS, ApiError, Problem
from runstream_api.mistral import filters, mapping
from runstream_api.runs_routes import MAX_PAGE, existing

# Query parameters of a list that are not filters.
_PAGING = frozenset({"marker", "limit", "sort_keys", "sort_dirs", "fields"})
# Accepted and ignored: Mistral options that mean nothing here.
_IGNORED = frozenset({"include_output", "all_projects", "nulls", "project_id", "task_execution_id"})
_FIELDS = frozenset(f.name for f in msgspec.structs.fields(mapping.Execution))
WAIT_S = 60.0


def fault(status: int, message: str) -> ApiError:
    return ApiError(Problem(status=status, error="mistral", message=message))


def _mistral_fault(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Any error of the facade in Mistral's shape: the Problem's message as faultstring."""
    handler = next(
        h for t, h in EXCEPTION_HANDLERS.items() if isinstance(t, type) and isinstance(exc, t)
    )
    problem_response = handler(request, exc)
    problem: dict[str, Any] = problem_response.content  # a Problem, as sent (to_wire)
    status = int(problem["status"])
    body = {
        "faultcode": "Client" if status < 500 else "Server",
        "faultstring": problem["message"],
        "debuginfo": None,
    }
    return Response(body, status_code=status, headers=problem_response.headers)


MISTRAL_HANDLERS: ExceptionHandlersMap = {t: _mistral_fault for t in EXCEPTION_HANDLERS}


def _json_object(value: Any, field: str) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise fault(400, f"{field} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise fault(400, f"{field} must be a JSON object")
    return value


async def _run_of(api: ApiContext, execution_id: str) -> RunSummary:
    run_id = mapping.uuid_to_run(execution_id)
    if run_id is None:
        raise fault(404, f"Execution not found [id={execution_id}]")
    try:
        return await existing(api.client, run_id)
    except ApiError as exc:
        raise fault(404, f"Execution not found [id={execution_id}]: {exc}") from None


def _output(run: RunSummary) -> dict[str, Any]:
    out: dict[str, Any] = {"items_processed": run.items_processed, "effects": run.effects}
    if run.error:
        out["error"] = run.error
    return out


def _doc(run: RunSummary) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(mapping.execution(run, _output(run)))
    return doc


@get("/executions", summary="Mistral: list executions")
async def list_executions(
    api: ApiContext,
    caller: TokenRecord,
    request: Request[Any, Any, Any],
    marker: str | None = None,
    limit: Annotated[int | None, Parameter(ge=1, le=MAX_PAGE)] = None,
    sort_keys: str = "created_at",
    sort_dirs: str = "asc",
    fields: str = "",
) -> dict[str, Any]:
    require(caller, "viewer", visible_project(caller))
    params = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if k not in _PAGING and k not in _IGNORED
    ]
    try:
        wanted = filters.parse_filters(params, api.registry)
        order = filters.sort_keys(sort_keys, sort_dirs)
        after = filters.run_id_of(marker) if marker else None
    except filters.BadFilter as exc:
        raise fault(400, str(exc)) from None
    scope = run_query.project_filter(api, caller)
    size = limit or MAX_PAGE
    # One more than asked: whether a next page exists.
    q = Query(
        filters=(*wanted, *([scope] if scope else [])), sort=order, limit=size + 1, marker=after
    )
    runs = await run_query.search(api, q)
    page, more = [_doc(r) for r in runs[:size]], len(runs) > size
    if fields:
        keep = {f.strip() for f in fields.split(",")} | {"id"}
        unknown = keep - _FIELDS
        if unknown:
            raise fault(400, f"unknown fields: {', '.join(sorted(unknown))}")
        page = [{k: v for k, v in d.items() if k in keep} for d in page]
    body: dict[str, Any] = {"executions": page}
    if more:
        again = {k: v for k, v in request.query_params.items() if k != "marker"}
        again["marker"] = page[-1]["id"]
        again.setdefault("limit", str(size))
        body["next"] = f"{str(request.base_url).rstrip('/')}/v2/executions?{urlencode(again)}"
    return body


@get("/executions/{execution_id:str}", summary="Mistral: one execution")
async def get_execution(api: ApiContext, caller: TokenRecord, execution_id: str) -> dict[str, Any]:
    run = await _run_of(api, execution_id)
    require_run(api, caller, "viewer", run)
    return _doc(run)


@post("/executions", summary="Mistral: start an execution", status_code=HTTP_201_CREATED)
async def create_execution(
    api: ApiContext,
    caller: TokenRecord,
    request: Request[Any, Any, Any],
    data: dict[str, Any],
) -> Response[dict[str, Any]]:
    client = api.client
    args = _json_object(data.get("input"), "input")
    _json_object(data.get("params"), "params")  # accepted (env etc. mean nothing here)
    description = str(data.get("description") or "")
    source = data.get("source_execution_id")
    name = data.get("workflow_name") or ""
    if not name and data.get("workflow_id"):
        name = next(
            (s.name for s in api.registry if mapping.workflow_id(s.name) == data["workflow_id"]),
            "",
        )
        if not name:
            raise fault(404, f"Workflow not found [id={data['workflow_id']}]")
    key = request.headers.get("idempotency-key")
    if key is not None:
        dispatch.check_key(key)
    command_id = dispatch.command_id_for(caller.subject, key)
    if source:
        source_run = await _run_of(api, str(source))
        require_run(api, caller, "operator", source_run)
        command = await client.rerun_command(
            source_run.id, args, actor=caller.subject, description=description or None
        )
        command = msgspec.structs.replace(command, command_id=command_id)
    else:
        if not name:
            raise fault(400, "workflow_name, workflow_id or source_execution_id is required")
        try:
            scenario = api.registry.get(str(name))
        except BadArguments:
            raise fault(404, f"Workflow not found [workflow_identifier={name}]") from None
        require(caller, "operator", scenario.project)
        run_id = new_id()
        if data.get("id"):
            wanted_id = mapping.uuid_to_run(str(data["id"]))
            if wanted_id is None:
                raise fault(400, f"bad id {data['id']!r}: a UUID")
            if (found := await client.find(wanted_id)) is not None:
                return Response(_doc(found), status_code=200)
            run_id = wanted_id
        command = cmd.StartRun(
            run_id=run_id,
            command_id=command_id,
            actor=caller.subject,
            scenario=scenario.name,
            args=args,
            description=description,
        )
    try:
        api.registry.get(command.scenario).validate(command.args)
    except BadArguments as exc:
        raise fault(400, str(exc)) from None
    print_ = await dispatch.request_fingerprint(request)
    status = await dispatch.publish(client, key, print_, command, until="accepted", timeout=15.0)
    if status.status == "rejected":
        raise fault(400, f"execution not started: {status.reason}")
    run = status.run or await client.find(command.run_id)
    if run is None:
        raise fault(503, "no worker took the execution yet; is a worker running?")
    return Response(_doc(run), status_code=HTTP_201_CREATED)


class ExecutionUpdate(msgspec.Struct, kw_only=True):
    state: str | None = None
    state_info: str | None = None
    description: str | None = None
    params: Any = None


@put("/executions/{execution_id:str}", summary="Mistral: pause, resume or cancel")
async def update_execution(
    api: ApiContext,
    caller: TokenRecord,
    request: Request[Any, Any, Any],
    execution_id: str,
    data: ExecutionUpdate,
) -> dict[str, Any]:
    run = await _run_of(api, execution_id)
    require_run(api, caller, "operator", run)
    actor = caller.subject
    reason = data.state_info or ""
    command: cmd.Command
    match data.state:
        case "PAUSED":
            command = cmd.StopRun(run_id=run.id, actor=actor, reason=reason)
        case "RUNNING":
            command = cmd.ContinueRun(run_id=run.id, actor=actor)
        case "CANCELLED":
            command = cmd.CancelRun(run_id=run.id, actor=actor, reason=reason)
        case None:
            raise fault(400, "state is required: PAUSED, RUNNING or CANCELLED")
        case other:
            raise fault(
                400, f"cannot set state {other!r}: PAUSED (stop), RUNNING (continue) or CANCELLED"
            )
    key = request.headers.get("idempotency-key")
    if key is not None:
        dispatch.check_key(key)
        command = msgspec.structs.replace(command, command_id=dispatch.command_id_for(actor, key))
    print_ = await dispatch.request_fingerprint(request)
    status = await dispatch.publish(api.client, key, print_, command, until="done", timeout=WAIT_S)
    if status.status == "rejected":
        raise fault(409, f"cannot set state {data.state}: {status.reason}")
    return _doc(status.run or run)


@delete(
    "/executions/{execution_id:str}", summary="Mistral: delete", status_code=HTTP_204_NO_CONTENT
)
async def delete_execution(
    api: ApiContext,
    caller: TokenRecord,
    execution_id: str,
    force: bool = False,
) -> None:
    run = await _run_of(api, execution_id)
    require_run(api, caller, "admin", run)
    # Mistral's force deletes whatever the state; here it keeps the run's effects.
    command = cmd.DeleteRun(
        run_id=run.id, actor=caller.subject, mode="keep_effects" if force else "plain"
    )
    status = await dispatch.publish(api.client, None, "", command, until="done", timeout=WAIT_S)
    if status.status == "rejected":
        raise fault(409, f"cannot delete: {status.reason}")
    if status.status != "done":
        raise fault(503, f"delete of {execution_id} not done within {WAIT_S:g}s; it goes on")


@get("/workflows", summary="Mistral: the workflows (scenarios)")
async def list_workflows(api: ApiContext, caller: TokenRecord) -> dict[str, Any]:
    visible = [s for s in api.registry if caller.project in ("*", s.project)]
    require(caller, "viewer", caller.project if caller.project != "*" else "default")
    return {"workflows": [msgspec.to_builtins(mapping.workflow(s)) for s in visible]}


@get("/workflows/{identifier:str}", summary="Mistral: one workflow (by name or id)")
async def get_workflow(api: ApiContext, caller: TokenRecord, identifier: str) -> mapping.Workflow:
    for s in api.registry:
        if identifier in (s.name, mapping.workflow_id(s.name)):
            require(caller, "viewer", s.project)
            return mapping.workflow(s)
    raise fault(404, f"Workflow not found [workflow_identifier={identifier}]")


# Where the facade is served (Mistral clients are pointed at http://HOST:PORT/v2).
PREFIX = "/v2"


def mistral_router() -> Router:
    return Router(
        path=PREFIX,
        route_handlers=[
            list_executions,
            get_execution,
            create_execution,
            update_execution,
            delete_execution,
            list_workflows,
            get_workflow,
        ],
        exception_handlers=MISTRAL_HANDLERS,
        tags=["mistral v2"],
    )

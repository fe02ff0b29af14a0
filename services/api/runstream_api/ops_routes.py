"""Operations over many runs and the service itself: bulk actions (with a dry run), the
network's stats, the dead-letter queue (admin), tombstones, and tracked runs."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED

from runstream import bulk
from runstream.contracts import commands as cmd
from runstream.domain.run import RunSummary
from runstream.ids import new_id
from runstream.query import BadQuery, parse_filter
from runstream.store import dlq
from runstream.store.events import Tombstone
from runstream.tokens import TokenRecord
from runstream_api import dispatch, run_query
from runstream_api.auth import require, visible_project
from runstream_api.context import ApiContext
from runstream_api.errors import ApiError, Problem, bad_input, not_found
from runstream_api.outcomes import CommandStatus
from runstream_api.runs_routes import (
    ROLE_FOR,
    KeyHeader,
    TimeoutParam,
    WaitParam,
    known_scenario,
    publish,
)

BulkAction = Literal["stop", "continue", "cancel", "revert", "delete"]
# Runs one bulk request may touch: beyond, narrow the filters.
MAX_BULK = 10_000
LETTER_ID = r"^\d{1,20}-\d{1,20}\Z"


class BulkBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One command for every run the filters match (``where``: FIELD=OP:VALUE, as GET
    /runs takes them, at least one). ``dry_run``: say which runs, send nothing."""

    action: BulkAction
    where: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)]
    dry_run: bool = False
    reason: cmd.ShortText = ""
    force: bool = False
    mode: cmd.DeleteMode = "plain"
    # Wait until each command took effect (else: until each was accepted or rejected).
    wait: bool = False


class BulkRun(msgspec.Struct, kw_only=True):
    id: str
    scenario: str
    state: str
    name: str


class BulkPreview(msgspec.Struct, kw_only=True):
    dry_run: bool
    count: int
    first: list[BulkRun]


class BulkOutcome(msgspec.Struct, kw_only=True):
    run_id: str
    outcome: str  # done | rejected | timeout
    detail: str


class BulkResult(msgspec.Struct, kw_only=True):
    bulk_id: str
    counts: dict[str, int]
    runs: list[BulkOutcome]


def bulk_command(body: BulkBody, run_id: str, bulk_id: str, actor: str) -> cmd.Command:
    base: dict[str, Any] = {
        "run_id": run_id,
        "command_id": new_id(),
        "actor": actor,
        "bulk_id": bulk_id,
    }
    match body.action:
        case "stop":
            return cmd.StopRun(**base, reason=body.reason)
        case "continue":
            return cmd.ContinueRun(**base)
        case "cancel":
            return cmd.CancelRun(**base, reason=body.reason)
        case "revert":
            return cmd.RevertRun(**base, force=body.force)
        case _:
            return cmd.DeleteRun(**base, mode=body.mode)


def _brief(run: RunSummary) -> BulkRun:
    return BulkRun(id=run.id, scenario=run.scenario, state=run.state, name=run.name)


class BulkController(Controller):
    path = "/runs/bulk"
    tags = ("runs",)

    @post(
        "/", summary="One action for every run a query matches (dry_run: preview)", status_code=200
    )
    async def bulk_action(
        self, api: ApiContext, caller: TokenRecord, data: BulkBody, timeout: TimeoutParam = 60.0
    ) -> BulkPreview | BulkResult:
        filters = []
        for text in data.where:
            try:
                filters.append(run_query.checked_state(parse_filter(text)))
            except BadQuery as exc:
                raise bad_input(str(exc), field="where") from None
        scope = run_query.project_filter(api, caller)
        bulk_id = new_id()
        needed = ROLE_FOR[type(bulk_command(data, new_id(), bulk_id, caller.subject))]
        require(caller, "viewer" if data.dry_run else needed, visible_project(caller))
        matches = await bulk.matches(api.client, [*filters, *([scope] if scope else [])])
        if len(matches) > MAX_BULK:
            raise bad_input(
                f"the filters match {len(matches)} runs, more than {MAX_BULK}: narrow them",
                field="where",
            )
        if data.dry_run:
            shown = matches[: bulk.SHOWN_IN_DRY_RUN]
            return BulkPreview(dry_run=True, count=len(matches), first=[_brief(r) for r in shown])
        results = await bulk.apply(
            api.client,
            (r.id for r in matches),
            lambda run_id: bulk_command(data, run_id, bulk_id, caller.subject),
            wait=data.wait,
            timeout=timeout,
        )
        return BulkResult(
            bulk_id=bulk_id,
            counts=bulk.counts(results),
            runs=[
                BulkOutcome(run_id=r.run_id, outcome=r.outcome, detail=r.detail) for r in results
            ],
        )


class TrackBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A run executed elsewhere, recorded with its outcome (Nextmv's tracked run)."""

    scenario: cmd.ScenarioName
    status: cmd.TrackedStatus
    input: Any
    output: Any
    duration_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    error: cmd.ShortText = ""
    log: list[str] = []
    name: cmd.ShortText = ""
    description: cmd.ShortText = ""


@post(
    "/runs/tracked",
    summary="Record a run executed elsewhere (like runctl track)",
    status_code=HTTP_202_ACCEPTED,
    tags=["runs"],
)
async def track_run(
    api: ApiContext,
    caller: TokenRecord,
    request: Request[Any, Any, Any],
    data: TrackBody,
    idempotency_key: KeyHeader = None,
    wait: WaitParam = False,
    timeout: TimeoutParam = 60.0,
) -> Response[CommandStatus]:
    if idempotency_key is not None:
        dispatch.check_key(idempotency_key)
    scenario = known_scenario(api, data.scenario)
    require(caller, ROLE_FOR[cmd.TrackRun], scenario.project)
    command = cmd.TrackRun(
        run_id=new_id(),
        command_id=dispatch.command_id_for(caller.subject, idempotency_key),
        actor=caller.subject,
        scenario=data.scenario,
        status=data.status,
        input=json.dumps(data.input),
        output=json.dumps(data.output),
        duration_ms=data.duration_ms,
        error=data.error,
        log=data.log,
        name=data.name,
        description=data.description,
    )
    response = await publish(api, request, command, idempotency_key, wait, timeout)
    response.headers["Content-Location"] = f"/runs/{response.content.run_id}"
    return response


class NetworkStats(msgspec.Struct, kw_only=True):
    stats: dict[str, int]


@get("/network/stats", summary="The shared network's size", tags=["network"])
async def network_stats(api: ApiContext, caller: TokenRecord) -> NetworkStats:
    require(caller, "viewer", visible_project(caller))
    return NetworkStats(stats=await api.client.network_stats())


class Tombstones(msgspec.Struct, kw_only=True):
    tombstones: list[Tombstone]


@get("/tombstones", summary="Deleted runs: who deleted them, when, effects left", tags=["runs"])
async def tombstones(api: ApiContext, caller: TokenRecord) -> Tombstones:
    require(caller, "admin", visible_project(caller))
    return Tombstones(tombstones=await api.client.tombstones())


class DeadLetters(msgspec.Struct, kw_only=True):
    letters: list[dlq.DeadLetter]


class Retried(msgspec.Struct, kw_only=True):
    id: str
    # The new entry id of the command, published again.
    published_as: str


LetterId = Annotated[str, Parameter(pattern=LETTER_ID, description="A dead letter's entry id.")]


class DeadLettersController(Controller):
    """Messages workers could not handle (malformed, or failing again and again): listed,
    retried (published again; a command applied before changes nothing) or dropped."""

    path = "/dead-letters"
    tags = ("dead letters",)

    @get("/", summary="The dead-lettered messages, oldest first (admin)")
    async def list_letters(self, api: ApiContext, caller: TokenRecord) -> DeadLetters:
        require(caller, "admin", visible_project(caller))
        return DeadLetters(letters=await api.client.dead_letters())

    async def _letter(self, api: ApiContext, caller: TokenRecord, letter_id: str) -> dlq.DeadLetter:
        require(caller, "admin", visible_project(caller))
        # The pattern allows 20 digits; Redis refuses a part past 2**64 - 1 (was a 503).
        if any(int(part) >= 2**64 for part in letter_id.split("-")):
            raise bad_input(f"{letter_id} is no stream entry id: too large", "letter_id")
        letter = await api.client.dead_letter(letter_id)
        if letter is None:
            raise not_found(f"no dead-lettered message {letter_id}")
        return letter

    @post("/{letter_id:str}/retry", summary="Publish a dead letter again (admin)", status_code=200)
    async def retry(self, api: ApiContext, caller: TokenRecord, letter_id: LetterId) -> Retried:
        letter = await self._letter(api, caller, letter_id)
        try:
            new = await api.client.retry_dead_letter(letter)
        except dlq.NotRetryable as exc:
            raise ApiError(Problem(status=409, error="not_retryable", message=str(exc))) from None
        return Retried(id=letter_id, published_as=new)

    @delete("/{letter_id:str}", summary="Drop a dead letter for good (admin)", status_code=204)
    async def drop(self, api: ApiContext, caller: TokenRecord, letter_id: LetterId) -> None:
        await api.client.drop_dead_letter(await self._letter(api, caller, letter_id))

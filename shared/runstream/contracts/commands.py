"""Commands: what a caller asks runstream to do. Imperative names, frozen, tagged by type.

Every command carries ``command_id`` (the idempotency key: the same id is applied once),
``run_id``, ``actor`` and ``issued_at``. New fields get defaults; field types never change.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec

from runstream.ids import COMMAND_ID_PATTERN, RUN_ID_PATTERN, new_id

RunId = Annotated[str, msgspec.Meta(pattern=RUN_ID_PATTERN)]
CommandId = Annotated[str, msgspec.Meta(pattern=COMMAND_ID_PATTERN)]
Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ShortText = Annotated[str, msgspec.Meta(max_length=2000)]
# Labels are queried as ``key=value``: neither part may hold '=' or ','.
LABEL_PATTERN = r"^[A-Za-z0-9_.:/@+-]{1,100}$"
LabelPart = Annotated[str, msgspec.Meta(pattern=LABEL_PATTERN)]
Labels = Annotated[dict[LabelPart, LabelPart], msgspec.Meta(max_length=50)]
# A bulk operation's commands share one id, recorded in each run's history.
BulkId = Annotated[str, msgspec.Meta(pattern=r"^([A-Za-z0-9._:-]{1,64})?$")]


def _now() -> float:
    return time.time()


class _Command(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True
):
    run_id: RunId
    command_id: CommandId = msgspec.field(default_factory=new_id)
    actor: Actor = "anonymous"
    issued_at: float = msgspec.field(default_factory=_now)
    bulk_id: BulkId = ""


ScenarioName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# 1 is the highest: past a worker's run slots, runs wait by priority, then age.
Priority = Annotated[int, msgspec.Meta(ge=1, le=9)]
DEFAULT_PRIORITY = 5


class StartRun(_Command, frozen=True, kw_only=True):
    scenario: ScenarioName
    args: dict[str, Any] = {}
    name: ShortText = ""
    description: ShortText = ""
    labels: Labels = {}
    # A re-run: the run whose scenario, version and arguments this one repeats.
    priority: Priority = DEFAULT_PRIORITY
    # Start at once or be rejected: never wait queued.
    no_queue: bool = False
    source_run_id: Annotated[str, msgspec.Meta(pattern=rf"^\Z|{RUN_ID_PATTERN}")] = ""
    # Set by a re-run: the scenario must still be at this version ("" = any).
    scenario_version: Annotated[str, msgspec.Meta(max_length=200)] = ""


class StopRun(_Command, frozen=True, kw_only=True):
    reason: ShortText = ""


class ContinueRun(_Command, frozen=True, kw_only=True):
    pass


class CancelRun(_Command, frozen=True, kw_only=True):
    reason: ShortText = ""


class RevertRun(_Command, frozen=True, kw_only=True):
    force: bool = False


DeleteMode = Literal["plain", "revert", "keep_effects"]


class DeleteRun(_Command, frozen=True, kw_only=True):
    # plain: refused while revertable effects are unreverted.
    mode: DeleteMode = "plain"


class PinRun(_Command, frozen=True, kw_only=True):
    """Pin (or unpin) a run: retention never removes a pinned run, and delete refuses it."""

    pinned: bool = True


TrackedStatus = Literal["succeeded", "failed"]


class TrackRun(_Command, frozen=True, kw_only=True):
    """Record a run executed elsewhere (Nextmv's tracked run): no effects, only its outcome,
    input, output and log. ``input``/``output`` are JSON documents, as text."""

    scenario: ScenarioName
    status: TrackedStatus
    input: str
    output: str
    duration_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    error: ShortText = ""
    log: list[str] = []
    name: ShortText = ""
    description: ShortText = ""


Command = StartRun | StopRun | ContinueRun | CancelRun | RevertRun | DeleteRun | PinRun | TrackRun

COMMAND_TYPES: tuple[type[_Command], ...] = (
    StartRun,
    StopRun,
    ContinueRun,
    CancelRun,
    RevertRun,
    DeleteRun,
    PinRun,
    TrackRun,
)

# Typed by hand: a union is no type[T], so msgspec's stubs would infer Decoder[Any].
_decoder: msgspec.json.Decoder[Command] = msgspec.json.Decoder(Command)
_encoder = msgspec.json.Encoder()


class BadCommand(ValueError):
    """The bytes are not a valid command; the message says what was wrong."""


def decode_command(data: bytes, max_bytes: int | None = None) -> Command:
    if max_bytes is not None and len(data) > max_bytes:
        raise BadCommand(f"command is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise BadCommand(f"invalid command: {exc}") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadCommand(f"malformed command: {exc}") from None


def encode_command(command: Command) -> bytes:
    return _encoder.encode(command)


def checked_bytes(command: Command, max_bytes: int | None = None) -> bytes:
    """The command's wire form, checked as a worker will check it: a Struct built in
    Python is not validated, so one the service would refuse raises BadCommand here."""
    try:
        data = encode_command(command)
    except UnicodeEncodeError as exc:
        raise BadCommand(f"invalid command: text that is not UTF-8 ({exc})") from None
    decode_command(data, max_bytes)
    return data


def command_type(command: Command) -> str:
    return type(command).__name__

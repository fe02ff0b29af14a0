"""Events: what happened to a run. Past-tense names, frozen, tagged by type.

A run's state is the fold of its events (``runstream.domain.run``). ``command_id`` names
the command that caused an event ("" when the run's own execution did). Effects of one
chunk are recorded in one ``ChunkPrepared`` event (a batch, not one event per effect) so a
chunk costs a few appends whatever its size.
"""

from __future__ import annotations

from typing import Any, Union, get_args

import msgspec


class EffectRecord(msgspec.Struct, frozen=True, array_like=True):
    """One network change, with what revert needs.

    ``element`` is ``n:<node>`` or ``e:<src>|<dst>``; ``before``/``after`` are the element's
    attributes as JSON text, "" when it did not exist / no longer exists; ``before_stamp``
    is the stamp the element carried before ("" for none). The effect's own stamp is
    ``<run_id>/<n>`` where n is its number in the run (see ``stamp_of``).
    """

    element: str
    before: str
    after: str
    before_stamp: str


def stamp_of(run_id: str, effect_no: int) -> str:
    return f"{run_id}/{effect_no}"


class SkippedEffect(msgspec.Struct, frozen=True, array_like=True):
    effect_no: int
    element: str
    reason: str


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    at: float
    command_id: str = ""
    bulk_id: str = ""  # the bulk operation the causing command was part of


class RunQueued(_Event, frozen=True, kw_only=True):
    run_id: str
    scenario: str
    scenario_version: str
    args: dict[str, Any]
    name: str = ""
    description: str = ""
    actor: str = ""
    items_total: int | None = None
    labels: dict[str, str] = {}
    priority: int = 5
    source_run_id: str = ""
    # Size of the run's input (its arguments as JSON), in bytes.
    input_bytes: int = 0


class RunTracked(_Event, frozen=True, kw_only=True):
    """A run executed elsewhere, recorded with its outcome (Nextmv's tracked run).

    ``input``/``output`` are JSON text; they are kept as the run's result files
    ``input.json``/``output.json``, its ``log`` as its log lines.
    """

    run_id: str
    scenario: str
    scenario_version: str = ""
    status: str
    input: str
    output: str
    duration_ms: int | None = None
    error: str = ""
    log: list[str] = []
    name: str = ""
    description: str = ""
    actor: str = ""


class RunStarted(_Event, frozen=True, kw_only=True):
    worker: str = ""


class ChunkPrepared(_Event, frozen=True, kw_only=True):
    """Phase one of a chunk: its effects, recorded before any of them touches the network."""

    chunk: int
    items_from: int
    items_to: int
    first_effect: int
    effects: list[EffectRecord] = []
    notifications: list[str] = []
    log: list[str] = []
    results: dict[str, str] = {}
    # Media type of each result file (by name); absent: guessed from the name.
    result_types: dict[str, str] = {}


class ItemsProcessed(_Event, frozen=True, kw_only=True):
    """Phase two: the chunk's effects are on the network; the checkpoint moves to items_to."""

    chunk: int
    items_to: int
    effects: int
    irreversible: int


class ChunkVoided(_Event, frozen=True, kw_only=True):
    """A prepared chunk that never reached the network (its worker died first): discarded."""

    chunk: int
    reason: str


class RunStopped(_Event, frozen=True, kw_only=True):
    actor: str = ""
    reason: str = ""


class RunContinued(_Event, frozen=True, kw_only=True):
    actor: str = ""


class RunSucceeded(_Event, frozen=True, kw_only=True):
    pass


class RunFailed(_Event, frozen=True, kw_only=True):
    error: str


class RunCancelled(_Event, frozen=True, kw_only=True):
    actor: str = ""
    reason: str = ""


class RevertStarted(_Event, frozen=True, kw_only=True):
    actor: str = ""
    force: bool = False
    then_delete: bool = False


class EffectsCompensated(_Event, frozen=True, kw_only=True):
    """One revert step: effects compensated (or found already compensated), conflicts skipped.

    ``cursor``/``cursor_offset`` say where the next step starts: the id of the
    ChunkPrepared event being compensated, and how many of its effects (from its end)
    are done.
    """

    compensated: int
    skipped: list[SkippedEffect] = []
    cursor: str
    cursor_offset: int


class RunReverted(_Event, frozen=True, kw_only=True):
    compensated: int
    skipped: int
    irreversible: int


class RunDeleted(_Event, frozen=True, kw_only=True):
    actor: str = ""
    effects_left: int = 0
    irreversible: int = 0


class RunPinned(_Event, frozen=True, kw_only=True):
    actor: str = ""
    pinned: bool = True


class CommandRejected(_Event, frozen=True, kw_only=True):
    command_type: str
    reason: str
    actor: str = ""
    # The command's own input was bad (unknown scenario, bad arguments), not its timing.
    bad_input: bool = False


Event = (
    RunQueued
    | RunTracked
    | RunStarted
    | ChunkPrepared
    | ItemsProcessed
    | ChunkVoided
    | RunStopped
    | RunContinued
    | RunSucceeded
    | RunFailed
    | RunCancelled
    | RevertStarted
    | EffectsCompensated
    | RunReverted
    | RunDeleted
    | RunPinned
    | CommandRejected
)

# Typed by hand: a union is no type[T], so msgspec's stubs would infer Decoder[Any].
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def decode_event(data: bytes) -> Event:
    return _decoder.decode(data)


class _CountedChunkPrepared(ChunkPrepared, frozen=True, kw_only=True, tag="ChunkPrepared"):
    """A ChunkPrepared as a fold needs it: how many effects, notifications and log lines,
    not what they are. Each stays raw JSON (skipped over, never built into objects)."""

    effects: list[msgspec.Raw] = []  # type: ignore[assignment]
    notifications: list[msgspec.Raw] = []  # type: ignore[assignment]
    log: list[msgspec.Raw] = []  # type: ignore[assignment]


# The Event union with the counted ChunkPrepared in place of the full one.
_FOLDED = tuple(_CountedChunkPrepared if t is ChunkPrepared else t for t in get_args(Event))
_fold_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Union[_FOLDED])  # noqa: UP007


def decode_for_fold(data: bytes) -> Event:
    """An event as folding it into the run's state needs it (``domain.run.apply``): a
    chunk's effect, notification and log lists are left undecoded (counted only), the
    cost of loading a run with big chunks since its last snapshot. Not for anything that
    reads those lists (revert, history)."""
    return _fold_decoder.decode(data)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def event_type(event: Event) -> str:
    return type(event).__name__


def slim(event: Event) -> Event:
    """The feed copy of an event: a chunk's effect list (a tracked run's input and output)
    stays in the run's history only."""
    if isinstance(event, ChunkPrepared):
        return msgspec.structs.replace(event, effects=[], log=[], results={}, result_types={})
    if isinstance(event, RunTracked):
        return msgspec.structs.replace(event, input="", output="", log=[])
    return event

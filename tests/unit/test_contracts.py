"""Commands and events on the wire: what decodes, what is refused and why."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runstream.contracts import events as ev
from runstream.contracts.commands import (
    COMMAND_TYPES,
    BadCommand,
    CancelRun,
    Command,
    ContinueRun,
    DeleteRun,
    PinRun,
    RevertRun,
    StartRun,
    StopRun,
    TrackRun,
    command_type,
    decode_command,
    encode_command,
)
from runstream.ids import is_run_id, new_id

RUN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
LIMIT = 64 * 1024

COMMANDS: list[Command] = [
    StartRun(
        run_id=RUN_ID,
        command_id="c-1",
        actor="ops",
        issued_at=1.5,
        scenario="synthetic",
        args={"items": 10, "nested": {"a": [1, "x", None, True]}},
        name="nightly",
        description="the nightly import",
    ),
    StopRun(run_id=RUN_ID, reason="too slow"),
    ContinueRun(run_id=RUN_ID),
    CancelRun(run_id=RUN_ID, reason="wrong input"),
    RevertRun(run_id=RUN_ID, force=True),
    DeleteRun(run_id=RUN_ID, mode="plain"),
    DeleteRun(run_id=RUN_ID, mode="revert"),
    DeleteRun(run_id=RUN_ID, mode="keep_effects"),
    PinRun(run_id=RUN_ID),
    PinRun(run_id=RUN_ID, pinned=False),
    StartRun(
        run_id=RUN_ID,
        scenario="synthetic",
        source_run_id="01ARZ3NDEKTSV4RRFFQ69G5FAW",
        scenario_version="1",
    ),
    TrackRun(
        run_id=RUN_ID,
        scenario="solver",
        status="failed",
        input='{"a": 1}',
        output="[]",
        duration_ms=12,
        error="infeasible",
        log=["one", "two"],
    ),
]


def raw(command_type: object = "StopRun", **fields: Any) -> bytes:
    return msgspec.json.encode({"type": command_type, "run_id": RUN_ID, **fields})


def refused(data: bytes, max_bytes: int | None = LIMIT) -> str:
    with pytest.raises(BadCommand) as info:
        decode_command(data, max_bytes)
    return str(info.value)


# --------------------------------------------------------------------------- commands
def test_every_command_type_is_covered() -> None:
    assert {type(c) for c in COMMANDS} == set(COMMAND_TYPES)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{command_type(c)}")
def test_each_command_round_trips(command: Command) -> None:
    data = encode_command(command)
    assert msgspec.json.decode(data)["type"] == command_type(command)
    assert decode_command(data, LIMIT) == command


def test_defaults_fill_in_the_optional_fields() -> None:
    command = decode_command(raw("RevertRun"))
    assert isinstance(command, RevertRun)
    assert (command.force, command.actor) == (False, "anonymous")
    assert command.command_id
    assert command.issued_at > 0


def test_new_ids_are_valid_run_ids() -> None:
    run_id = new_id()
    assert is_run_id(run_id)
    assert decode_command(raw(run_id=run_id)).run_id == run_id


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (raw(bogus=1), "unknown field `bogus`"),
        (raw("DeleteRun", force=True), "unknown field `force`"),
        (raw(run_id="not-a-run-id"), "$.run_id"),
        (raw(run_id=RUN_ID.lower()), "$.run_id"),
        (raw(run_id=RUN_ID + "0"), "$.run_id"),
        (raw(run_id="01ARZ3NDEKTSV4RRFFQ69G5FAI"), "$.run_id"),  # I is not Crockford
        (raw(run_id=123), "$.run_id"),
        (raw("RevertRun", force="yes"), "$.force"),
        (raw("DeleteRun", mode="everything"), "$.mode"),
        (raw("PinRun", pinned="yes"), "$.pinned"),
        (raw(issued_at="yesterday"), "$.issued_at"),
        (raw(actor=""), "$.actor"),
        (raw(actor="x" * 201), "$.actor"),
        (raw(command_id="has space"), "$.command_id"),
        (raw(command_id="x" * 65), "$.command_id"),
        (raw(reason="x" * 2001), "$.reason"),
        (raw("StartRun"), "missing required field `scenario`"),
        (raw("StartRun", scenario=""), "$.scenario"),
        (raw("StartRun", scenario="s", args=[1, 2]), "$.args"),
        (msgspec.json.encode({"type": "StopRun"}), "missing required field `run_id`"),
        (msgspec.json.encode({"run_id": RUN_ID}), "missing required field `type`"),
        (raw("LaunchRockets"), "$.type"),
        (raw(5), "$.type"),
        (b"[]", "Expected `object`, got `array`"),
        (b"null", "Expected `object`, got `null`"),
        (b'"StopRun"', "Expected `object`, got `str`"),
    ],
)
def test_an_invalid_command_is_refused_naming_what_is_wrong(data: bytes, named: str) -> None:
    message = refused(data)
    assert message.startswith("invalid command:")
    assert named in message


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"{", b'{"type": "StopRun",}', b"\xff\xfe\x00", b"\x80\x81\x82"],
)
def test_bytes_that_are_not_json_are_refused_as_malformed(data: bytes) -> None:
    assert refused(data).startswith("malformed command:")


def test_an_oversized_command_is_refused_before_it_is_decoded() -> None:
    data = raw("StartRun", scenario="synthetic", args={"blob": "x" * 2000})
    message = refused(data, max_bytes=1000)
    assert f"{len(data)} bytes" in message
    assert "limit of 1000" in message
    assert isinstance(decode_command(data, max_bytes=len(data)), StartRun)
    assert isinstance(decode_command(data, max_bytes=None), StartRun)


def test_deeply_nested_arguments_are_refused_not_crashed_on() -> None:
    # Well under the size limit, but deeper than the decoder recurses.
    depth = 5000
    data = raw("StartRun", scenario="synthetic")[:-1] + (
        b',"args":{"a":' + b"[" * depth + b"]" * depth + b"}}"
    )
    assert len(data) < LIMIT
    refused(data)


# --------------------------------------------------------------------------- fuzz
@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_bad_command(data: bytes) -> None:
    try:
        decode_command(data, LIMIT)
    except BadCommand as exc:
        assert str(exc)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from([RUN_ID, "StopRun", "StartRun", "DeleteRun", "plain", "revert"])
)
_json = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_field_names = st.sampled_from(
    [
        "type",
        "run_id",
        "command_id",
        "actor",
        "issued_at",
        "scenario",
        "args",
        "name",
        "description",
        "reason",
        "force",
        "mode",
        "pinned",
        "extra",
    ]
)
_commandish = st.dictionaries(_field_names, _json, max_size=8) | st.fixed_dictionaries(
    {
        "type": st.sampled_from([t.__name__ for t in COMMAND_TYPES]),
        "run_id": st.sampled_from([RUN_ID, "", "x"]),
    },
    optional={name: _json for name in ("args", "force", "mode", "scenario", "reason", "actor")},
)


@settings(max_examples=500)
@given(value=_json | _commandish)
def test_arbitrary_json_raises_nothing_but_bad_command(value: Any) -> None:
    data = msgspec.json.encode(value)
    try:
        command = decode_command(data, LIMIT)
    except BadCommand as exc:
        assert str(exc)
    else:
        assert decode_command(encode_command(command), LIMIT) == command


# --------------------------------------------------------------------------- events
EFFECTS = [
    ev.EffectRecord("n:a", "", '{"x":1}', ""),
    ev.EffectRecord("e:a|b", '{"w":1}', "", "01ARZ3NDEKTSV4RRFFQ69G5FAV/3"),
]
EVENTS: list[ev.Event] = [
    ev.RunQueued(
        at=1.0,
        command_id="c1",
        run_id=RUN_ID,
        scenario="synthetic",
        scenario_version="1",
        args={"items": 3},
        name="n",
        description="d",
        actor="ops",
        items_total=3,
    ),
    ev.RunStarted(at=2.0, worker="w1"),
    ev.ChunkPrepared(
        at=3.0,
        chunk=0,
        items_from=0,
        items_to=2,
        first_effect=1,
        effects=EFFECTS,
        notifications=["hello"],
        log=["line"],
        results={"out.txt": "data"},
    ),
    ev.ItemsProcessed(at=4.0, chunk=0, items_to=2, effects=2, irreversible=1),
    ev.ChunkVoided(at=4.5, chunk=1, reason="worker died"),
    ev.RunStopped(at=5.0, actor="ops", reason="r"),
    ev.RunContinued(at=6.0, actor="ops"),
    ev.RunSucceeded(at=7.0),
    ev.RunFailed(at=7.5, error="boom"),
    ev.RunCancelled(at=7.7, actor="ops", reason="r"),
    ev.RevertStarted(at=8.0, actor="ops", force=True, then_delete=True),
    ev.EffectsCompensated(
        at=9.0,
        compensated=1,
        skipped=[ev.SkippedEffect(2, "e:a|b", "changed")],
        cursor="1-0",
        cursor_offset=1,
    ),
    ev.RunReverted(at=10.0, compensated=1, skipped=1, irreversible=1),
    ev.RunDeleted(at=11.0, actor="ops", effects_left=1, irreversible=1),
    ev.RunPinned(at=11.5, actor="ops", pinned=False),
    ev.CommandRejected(at=12.0, command_type="StopRun", reason="no", actor="ops"),
    ev.RunTracked(
        at=1.0,
        run_id=RUN_ID,
        scenario="solver",
        status="succeeded",
        input="{}",
        output='{"x": 1}',
        duration_ms=5,
        log=["ok"],
    ),
]


def test_every_event_type_is_covered() -> None:
    assert {type(e) for e in EVENTS} == set(ev.Event.__args__)


@pytest.mark.parametrize("event", EVENTS, ids=ev.event_type)
def test_each_event_round_trips(event: ev.Event) -> None:
    data = ev.encode_event(event)
    assert msgspec.json.decode(data)["type"] == ev.event_type(event)
    assert ev.decode_event(data) == event


def test_effect_records_are_compact_arrays() -> None:
    data = ev.encode_event(EVENTS[2])
    assert msgspec.json.decode(data)["effects"][0] == ["n:a", "", '{"x":1}', ""]


def test_stamps_name_the_run_and_the_effect_number() -> None:
    assert ev.stamp_of(RUN_ID, 7) == f"{RUN_ID}/7"


def test_slim_drops_a_prepared_chunks_effects_log_and_results() -> None:
    prepared = EVENTS[2]
    assert isinstance(prepared, ev.ChunkPrepared)

    slimmed = ev.slim(prepared)

    assert isinstance(slimmed, ev.ChunkPrepared)
    assert (slimmed.effects, slimmed.log, slimmed.results) == ([], [], {})
    # What subscribers need to follow progress stays.
    assert (slimmed.chunk, slimmed.items_from, slimmed.items_to, slimmed.first_effect) == (
        0,
        0,
        2,
        1,
    )
    assert slimmed.notifications == ["hello"]
    assert prepared.effects == EFFECTS  # the original is untouched


@pytest.mark.parametrize(
    "event", [e for e in EVENTS if not isinstance(e, ev.ChunkPrepared | ev.RunTracked)]
)
def test_slim_leaves_other_events_as_they_are(event: ev.Event) -> None:
    assert ev.slim(event) is event


def test_slim_drops_a_tracked_runs_input_output_and_log() -> None:
    tracked = EVENTS[-1]
    assert isinstance(tracked, ev.RunTracked)
    slimmed = ev.slim(tracked)
    assert isinstance(slimmed, ev.RunTracked)
    assert (slimmed.input, slimmed.output, slimmed.log) == ("", "", [])
    assert (slimmed.status, slimmed.duration_ms) == ("succeeded", 5)

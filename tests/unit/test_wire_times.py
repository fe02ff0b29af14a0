"""Times on the wire (runstream_api.times): every at/*_at number becomes ISO 8601 UTC,
"not yet" (0) null; user data, booleans and other numbers are left as they are."""

from __future__ import annotations

from typing import Any

import msgspec

from runstream.contracts import events as ev
from runstream.domain.run import RunSummary
from runstream.store.events import Tombstone
from runstream_api.outcomes import CommandStatus
from runstream_api.times import iso_times, to_wire


class Page(msgspec.Struct):
    runs: list[RunSummary]
    next_marker: str | None = None


def _run(created: float) -> RunSummary:
    return RunSummary(
        id="01M950VGTWZM8RFF8XDHRXB0YC",
        scenario="synthetic",
        scenario_version="1",
        state="running",
        name="",
        description="",
        actor="a",
        args={"due_at": 1700000000.0},
        items_processed=0,
        items_total=None,
        effects={},
        created_at=created,
        updated_at=1700000000.5,
        error="",
        reason="",
        version=1,
        labels={"seen_at": "x"},
    )


def test_a_page_of_runs_has_iso_times_and_null_for_not_yet() -> None:
    wire = to_wire(Page(runs=[_run(1700000000.25), _run(1700000001.0)]))
    first = wire["runs"][0]
    assert first["created_at"] == "2023-11-14T22:13:20.250Z"
    assert first["updated_at"] == "2023-11-14T22:13:20.500Z"
    assert first["started_at"] is None and first["ended_at"] is None
    assert wire["runs"][1]["created_at"] == "2023-11-14T22:13:21.000Z"
    # The caller's data is never converted.
    assert first["args"] == {"due_at": 1700000000.0}
    assert first["labels"] == {"seen_at": "x"}
    assert first["version"] == 1 and first["pinned"] is False


def test_nested_lists_and_dicts_are_converted_but_not_booleans_or_other_numbers() -> None:
    value = {
        "at": 1700000000,
        "flag_at": True,
        "count": 3,
        "items": [{"ended_at": 1700000000.0, "n": 1.5}, [{"at": 0}], "text"],
        "stats": {"took_at": 5.0},
    }
    assert iso_times(value) == {
        "at": "2023-11-14T22:13:20.000Z",
        "flag_at": True,
        "count": 3,
        "items": [{"ended_at": "2023-11-14T22:13:20.000Z", "n": 1.5}, [{"at": None}], "text"],
        "stats": {"took_at": 5.0},
    }


class Outer(msgspec.Struct, kw_only=True):
    """Structs in a Struct, in lists, in a union and in Any; a time key typed loosely."""

    status: CommandStatus
    history: list[ev.Event]
    tomb: Tombstone | None = None
    anything: Any = None
    loose_at: float | list[int] = 0.0
    nested: dict[str, RunSummary] = {}


def _models() -> list[Any]:
    event = ev.RunQueued(
        at=1700000000.125,
        command_id="c1",
        run_id="01M950VGTWZM8RFF8XDHRXB0YC",
        scenario="synthetic",
        scenario_version="1",
        args={"due_at": 1.0},
    )
    status = CommandStatus(
        run_id="01M950VGTWZM8RFF8XDHRXB0YC",
        command_id="c1",
        command="StartRun",
        status="accepted",
        event=event,
        run=_run(1700000002.5),
    )
    tomb = Tombstone(
        run_id="01M950VGTWZM8RFF8XDHRXB0YC",
        scenario="s",
        actor="a",
        deleted_at=1700000003.0,
        effects_left=0,
        irreversible=0,
    )
    return [
        Page(runs=[_run(1700000000.25), _run(0.0)]),
        status,
        [_run(1700000001.0), {"at": 1700000000.0}, 3],
        Outer(
            status=status,
            history=[event, ev.RunStarted(at=1700000004.0, command_id="c1")],
            tomb=tomb,
            anything=_run(1700000005.0),
            loose_at=1700000006.0,
            nested={"a": _run(1700000007.0)},
        ),
        Outer(status=status, history=[], loose_at=[1, 2]),
        {"runs": [_run(1700000008.0)]},
    ]


def test_models_go_out_as_the_generic_walk_converts_their_builtins() -> None:
    # to_wire reads a Struct's layout instead of every key: the same result.
    for model in _models():
        assert to_wire(model) == iso_times(msgspec.to_builtins(model)), model

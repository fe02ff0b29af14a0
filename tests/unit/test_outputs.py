"""Which log lines and result files a run's history makes visible (no I/O)."""

from __future__ import annotations

from runstream.contracts import events as ev
from runstream.store import outputs


def _prepared(chunk: int, at: float, log: list[str], results: dict[str, str]) -> ev.ChunkPrepared:
    return ev.ChunkPrepared(
        at=at, chunk=chunk, items_from=0, items_to=1, first_effect=1, log=log, results=results
    )


def test_a_voided_chunks_lines_and_files_never_show_and_its_redo_shows_once() -> None:
    history: list[ev.Event] = [
        _prepared(0, 1.0, ["item 0"], {"a.txt": "first try"}),
        ev.ChunkVoided(at=2.0, chunk=0, reason="its worker stopped"),
        _prepared(1, 3.0, ["item 0"], {"a.txt": "redone"}),
        ev.ItemsProcessed(at=4.0, chunk=1, items_to=1, effects=0, irreversible=0),
        _prepared(2, 5.0, ["item 1"], {}),  # still pending: not shown yet
    ]
    found = outputs.outputs_in(history)
    assert [(o.at, o.log, o.results) for o in found] == [(3.0, ["item 0"], {"a.txt": "redone"})]


def test_a_tracked_run_shows_its_input_output_and_log() -> None:
    tracked = ev.RunTracked(
        at=1.0,
        run_id="01ARZ3NDEKTSV4RRFFQ69G5FAV",
        scenario="s",
        status="succeeded",
        input="{}",
        output="[1]",
        log=["ok"],
    )
    (found,) = outputs.outputs_in([tracked])
    assert found.log == ["ok"]
    assert found.results == {"input.json": "{}", "output.json": "[1]"}
    assert found.result_types == {
        "input.json": "application/json",
        "output.json": "application/json",
    }


def test_media_types_are_given_or_guessed_from_the_name() -> None:
    assert outputs.media_type("report.csv") == "text/csv"
    assert outputs.media_type("data.json") == "application/json"
    assert outputs.media_type("notes") == "text/plain"
    assert outputs.media_type("x.bin", "application/x-thing") == "application/x-thing"

"""Loading a run folds the events since its snapshot: the fold reads a chunk's effect,
notification and log lists only to count them, so they are not decoded (decode_for_fold)."""

from __future__ import annotations

import msgspec

from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import Run, RunState, apply


def _run_with_chunks(chunks: int, effects_per_chunk: int) -> list[bytes]:
    run = Run.blank("r1")
    run.start(cmd.StartRun(run_id="r1", scenario="synthetic"), 1.0, args={"items": 10})
    run.begin(2.0, "w")
    for c in range(chunks):
        effects = [
            ev.EffectRecord(f"n:{c}-{i}", "", '{"v": 1}', "") for i in range(effects_per_chunk)
        ]
        run.prepare_chunk(
            3.0 + c,
            items_to=c + 1,
            effects=effects,
            notifications=["sent"] * c,
            log=[f"line {c}"] * 3,
            results={f"out{c}.txt": "é" * c},
        )
        if c < chunks - 1:  # the last one stays pending
            run.confirm_chunk(3.5 + c)
    return [ev.encode_event(e) for e in run.take_events()]


def test_folding_with_counted_chunks_gives_the_same_state_as_full_decoding() -> None:
    stored = _run_with_chunks(chunks=5, effects_per_chunk=30)
    full, counted = RunState(run_id="r1"), RunState(run_id="r1")
    for data in stored:
        apply(full, ev.decode_event(data))
        apply(counted, ev.decode_for_fold(data))
    assert counted == full
    assert full.pending is not None and full.pending.effects == 30
    assert full.next_effect == 1 + 5 * 30 and full.applied == 4 * 30


def test_a_chunks_lists_are_left_raw_when_decoded_for_a_fold() -> None:
    (data,) = [d for d in _run_with_chunks(chunks=1, effects_per_chunk=3) if b"Chunk" in d]
    event = ev.decode_for_fold(data)
    assert isinstance(event, ev.ChunkPrepared)
    assert len(event.effects) == 3
    assert all(isinstance(e, msgspec.Raw) for e in event.effects)
    # Everything else is decoded as usual.
    assert event.results == {"out0.txt": ""}
    full = ev.decode_event(data)
    assert isinstance(full, ev.ChunkPrepared) and full.effects[0].element == "n:0-0"

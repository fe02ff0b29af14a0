"""Revert restores the network exactly, against a real Redis.

Runs are driven through the executor's own units: each chunk goes through the
``ChunkProtocol`` (effects recorded from what is stored, chunk prepared and saved, written
to the network, confirmed; or voided when its worker died first), then reverted with
``take_revert_step`` in small batches so the cursor crosses chunk boundaries.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pytest
import redis.asyncio as aredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstream import revert as revert_module
from runstream.connect import open_redis
from runstream.contracts import events as ev
from runstream.contracts.commands import RevertRun, StartRun
from runstream.domain.run import Run
from runstream.domain.scenarios import NetworkView
from runstream.ids import new_id
from runstream.keys import Keys
from runstream.revert import next_batch
from runstream.settings import Settings
from runstream.store.events import EventStore
from runstream.store.network import Decision, NetworkStore
from runstream.store.outputs import RunOutput
from runstream_worker.chunk import ChunkResult
from runstream_worker.chunk_protocol import ChunkProtocol, chunk_token
from runstream_worker.revert_step import take_revert_step

T = TypeVar("T")

NODES = ["n:a", "n:b", "n:c", "n:d", "n:e"]
EDGES = ["e:a|b", "e:b|c", "e:c|a", "e:a|d", "e:d|e"]
ELEMENTS = NODES + EDGES
REVERT_BATCH = 3
SOMEONE_ELSE = "operator/edit-1"

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --------------------------------------------------------------------------- strategies
attrs = st.dictionaries(
    st.sampled_from(["v", "w", "label"]),
    st.integers(0, 9) | st.text("xyz", max_size=3),
    max_size=2,
)
# One step of a scenario: ("add" | "update" | "remove", element, attributes).
op = st.tuples(st.sampled_from(["add", "update", "remove"]), st.sampled_from(ELEMENTS), attrs)


@dataclass(frozen=True)
class ChunkPlan:
    ops: list[tuple[str, str, dict[str, Any]]]
    notifications: int
    worker_dies: bool  # prepared, then voided before it reached the network


chunk_plan = st.builds(
    ChunkPlan,
    ops=st.lists(op, max_size=6),
    notifications=st.integers(0, 2),
    worker_dies=st.sampled_from([False, False, False, True]),
)
run_plan = st.lists(chunk_plan, min_size=1, max_size=3)
# A run with at least one effect on the network (its sure chunk adds an element).
sure_chunk = st.builds(
    ChunkPlan,
    ops=st.builds(
        lambda first, rest: [first, *rest],
        st.tuples(st.just("add"), st.sampled_from(ELEMENTS), attrs),
        st.lists(op, max_size=5),
    ),
    notifications=st.integers(0, 2),
    worker_dies=st.just(False),
)
effective_run_plan = st.builds(
    lambda before, sure, after: [*before, sure, *after],
    st.lists(chunk_plan, max_size=1),
    sure_chunk,
    st.lists(chunk_plan, max_size=1),
)
initial_network = st.dictionaries(st.sampled_from(ELEMENTS), attrs, max_size=len(ELEMENTS))


# --------------------------------------------------------------------------- harness
@dataclass
class Env:
    redis: aredis.Redis
    store: EventStore
    network: NetworkStore
    keys: Keys
    clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def now(self) -> float:
        return time.time() + next(self.clock) / 1000

    async def stamps(self) -> dict[str, str]:
        return await self.network.all_stamps()

    async def picture(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The network's values and the stamps that say who wrote each element."""
        return await self.network.export(), await self.stamps()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def run_async(settings_: Settings, body: Callable[[Env], Awaitable[T]]) -> T:
    """Run ``body`` on a fresh key prefix (under the test's own) with a client it closes."""
    example = msgspec.structs.replace(
        settings_, prefix=f"{settings_.prefix}:{uuid.uuid4().hex[:8]}", snapshot_every=4
    )

    async def main() -> T:
        client = open_redis(example)
        try:
            keys = Keys.of(example)
            env = Env(client, EventStore(client, keys, example), NetworkStore(client, keys), keys)
            return await body(env)
        finally:
            await client.aclose()

    return asyncio.run(main())


def perform(view: NetworkView, kind: str, element: str, values: dict[str, Any]) -> None:
    """What a scenario's step does with one operation."""
    if element.startswith("n:"):
        node = element[2:]
        if kind == "add":
            view.add_node(node, **values)
        elif kind == "remove":
            view.remove_node(node)
        elif view.get_node(node) is not None:
            view.update_node(node, **values)
        return
    src, _, dst = element[2:].partition("|")
    if kind == "add":
        view.add_edge(src, dst, **values)
    elif kind == "remove":
        view.remove_edge(src, dst)
    else:
        current = view.get_edge(src, dst)
        if current is not None:
            view.add_edge(src, dst, **{**current, **values})


async def seed(env: Env, initial: dict[str, dict[str, Any]]) -> None:
    for element, values in initial.items():
        await env.network.put(element, values, "seed")


async def save(env: Env, run: Run) -> None:
    result = await env.store.save(run)
    assert result.status == "ok", result


def protocol(env: Env) -> ChunkProtocol:
    """The executor's chunk protocol over the test's store (no lease: one writer)."""

    async def append(run: Run, output: RunOutput | None = None) -> bool:
        return (await env.store.save(run, output=output)).status == "ok"

    return ChunkProtocol(env.network, append, env.store.load, env.store.chunks_before)


async def execute(env: Env, chunks: list[ChunkPlan]) -> Run:
    """Start a run and record its chunks as the executor does; it succeeds."""
    run_id = new_id()
    run = Run.blank(run_id)
    run.start(StartRun(run_id=run_id, scenario="synthetic"), env.now(), scenario_version="1")
    run.begin(env.now(), "worker-1")
    await save(env, run)
    chunks_ = protocol(env)
    for number, plan in enumerate(chunks):
        # What a scenario's steps do in one chunk: read the stored network, change it.
        values, stamps = await env.network.read(ELEMENTS)
        stored = zip(ELEMENTS, values, stamps, strict=True)
        view = NetworkView({e: (v, st) for e, v, st in stored if v or st}.get)
        for kind, element, attributes in plan.ops:
            perform(view, kind, element, attributes)
        s = run.state
        result = ChunkResult(
            items_from=s.items_processed,
            items_to=s.items_processed + max(1, len(plan.ops)),
            changes=view.changes,
            reads=view.reads,
            notifications=[f"{run_id} chunk {number} note {i}" for i in range(plan.notifications)],
        )
        if not plan.worker_dies:
            run, conflict = await chunks_.record(run, result)
            assert not conflict
            assert run.state.pending is None
            continue
        prepared = await chunks_.prepare(run, result)
        if isinstance(prepared, Run):  # nothing for the network: confirmed at once
            run = prepared
            continue
        # The worker died here. Whoever resumes the run finds the chunk never applied
        # and voids it; a late write of the chunk is refused.
        run = await chunks_.resolve_pending(prepared.run)
        assert run.state.voided_chunks[-1] == prepared.event.chunk
        event = prepared.event
        late = await env.network.apply_chunk(
            chunk_token(run_id, event.chunk),
            run_id,
            event.first_effect,
            event.effects,
            event.notifications,
        )
        assert late == ("voided", "")
    run.succeed(env.now())
    await save(env, run)
    return run


async def revert(
    env: Env, run_id: str, force: bool, *, started: bool = False
) -> tuple[Run, list[ev.SkippedEffect]]:
    """Revert a run to the end, step by step as the executor does."""
    if not started:
        run = await env.store.load(run_id)
        run.revert(RevertRun(run_id=run_id, force=force), env.now())
        await save(env, run)
    skipped_all: list[ev.SkippedEffect] = []
    for _ in range(1000):
        run = await env.store.load(run_id)  # every step starts from the stored history
        assert run.state.state == "reverting"
        step = await take_revert_step(env.store, env.network, run, REVERT_BATCH, env.now())
        assert step is not None
        await save(env, run)
        if not step.mark:
            return run, skipped_all
        await env.network.forget_revert_step(step.mark, step.partitions)
        skipped_all.extend(step.skipped)
    raise AssertionError("the revert does not come to an end")


async def effects_of(env: Env, run_id: str) -> list[tuple[int, ev.EffectRecord]]:
    """The run's effects that reached the network, with their numbers."""
    history = await env.store.history(run_id)
    voided = {e.chunk for _, e in history if isinstance(e, ev.ChunkVoided)}
    out: list[tuple[int, ev.EffectRecord]] = []
    for _, event in history:
        if isinstance(event, ev.ChunkPrepared) and event.chunk not in voided:
            out.extend((event.first_effect + i, r) for i, r in enumerate(event.effects))
    return out


async def notifications_of(env: Env, run_id: str) -> list[str]:
    history = await env.store.history(run_id)
    voided = {e.chunk for _, e in history if isinstance(e, ev.ChunkVoided)}
    return [
        note
        for _, e in history
        if isinstance(e, ev.ChunkPrepared) and e.chunk not in voided
        for note in e.notifications
    ]


# --------------------------------------------------------------------------- properties
@PROPERTY
@given(initial=initial_network, runs=st.lists(run_plan, min_size=1, max_size=4))
def test_reverting_every_run_newest_first_restores_the_network_exactly(
    settings: Settings,
    initial: dict[str, dict[str, Any]],
    runs: list[list[ChunkPlan]],
) -> None:
    async def body(env: Env) -> None:
        await seed(env, initial)
        before = await env.picture()
        executed = [await execute(env, chunks) for chunks in runs]
        # What was stored is what the runs think they did.
        for run in executed:
            assert (await env.store.load(run.state.run_id)).state == run.state
            assert run.state.applied == len(await effects_of(env, run.state.run_id))

        for run in reversed(executed):
            run_id = run.state.run_id
            stored = await env.store.load(run_id)
            plan = await revert_module.plan(env.store, env.network, stored.state, force=False)
            assert (plan.compensate, plan.conflicts) == (run.state.applied, [])

            done, skipped = await revert(env, run_id, force=False)

            assert skipped == []
            s = done.state
            assert (s.state, s.compensated, s.skipped) == ("reverted", s.applied, 0)
            assert s.irreversible == len(await notifications_of(env, run_id))
            assert (await env.store.load(run_id)).state == s

        assert await env.picture() == before

    run_async(settings, body)


@PROPERTY
@given(
    initial=initial_network,
    earlier=st.lists(run_plan, max_size=2),
    chunks=effective_run_plan,
    pick=st.integers(0, 1000),
    theirs=st.none() | attrs,
    force=st.booleans(),
)
def test_an_element_someone_else_changed_is_skipped_unless_forced(
    settings: Settings,
    initial: dict[str, dict[str, Any]],
    earlier: list[list[ChunkPlan]],
    chunks: list[ChunkPlan],
    pick: int,
    theirs: dict[str, Any] | None,
    force: bool,
) -> None:
    async def body(env: Env) -> None:
        await seed(env, initial)
        for plan_ in earlier:
            await execute(env, plan_)
        before_run = await env.picture()
        run = await execute(env, chunks)
        run_id = run.state.run_id
        effects = await effects_of(env, run_id)
        assert effects
        touched = sorted({record.element for _, record in effects})
        element = touched[pick % len(touched)]
        await env.network.put(element, theirs, SOMEONE_ELSE)
        changed = await env.picture()

        # The dry run first: it predicts the revert and changes nothing.
        plan = await revert_module.plan(env.store, env.network, run.state, force=force)
        assert await env.picture() == changed
        assert (await env.store.load(run_id)).state == run.state

        done, skipped = await revert(env, run_id, force=force)

        on_element = {n for n, record in effects if record.element == element}
        s = done.state
        if force:
            assert skipped == []
            assert await env.picture() == before_run
        else:
            assert {x.effect_no for x in skipped} == on_element
            assert {x.element for x in skipped} == {element}
            values, stamps = await env.picture()
            expected_values, expected_stamps = before_run
            # Everything is restored but the element someone else changed: that stays theirs.
            expected = {e: v for e, v in _elements(expected_values).items() if e != element}
            if theirs is not None:
                expected[element] = msgspec.json.encode(theirs).decode()
            assert _elements(values) == expected
            assert stamps == {**expected_stamps, element: SOMEONE_ELSE}
        assert (s.state, s.compensated + s.skipped, s.skipped) == (
            "reverted",
            s.applied,
            len(skipped),
        )
        # The dry run said so beforehand.
        assert plan.compensate + plan.already_compensated == s.compensated
        assert [c.effect_no for c in plan.conflicts] == [x.effect_no for x in skipped]
        assert plan.overwritten_by_force == (1 if force else 0)
        assert plan.irreversible == await notifications_of(env, run_id)

    run_async(settings, body)


def letters(decisions: list[Decision]) -> str:
    return "".join(d.letter for d in decisions)


def _elements(exported: dict[str, Any]) -> dict[str, str]:
    """An export back as element -> attributes JSON, to compare with one element changed."""
    out = {f"n:{n['id']}": msgspec.json.encode(n["attrs"]).decode() for n in exported["nodes"]}
    for edge in exported["edges"]:
        element = f"e:{edge['source']}|{edge['target']}"
        out[element] = msgspec.json.encode(edge["attrs"]).decode()
    return out


# --------------------------------------------------------------------------- examples
def chunk(*ops: tuple[str, str, dict[str, Any]], notes: int = 0) -> ChunkPlan:
    return ChunkPlan(list(ops), notes, worker_dies=False)


@pytest.mark.parametrize("force", [False, True])
def test_the_dry_run_reports_what_the_revert_then_does_and_changes_nothing(
    settings: Settings, force: bool
) -> None:
    async def body(env: Env) -> None:
        await seed(env, {"n:a": {"v": 1}, "n:b": {"v": 2}, "e:a|b": {"w": 1}})
        run = await execute(
            env,
            [
                chunk(("add", "n:c", {"v": 3}), ("update", "n:a", {"v": 10}), notes=1),
                chunk(("remove", "e:a|b", {}), ("update", "n:a", {"w": 5})),
                chunk(("update", "n:b", {"v": 20}), notes=2),
            ],
        )
        run_id = run.state.run_id
        assert run.state.applied == 5
        await env.network.put("n:a", {"v": 99}, SOMEONE_ELSE)
        before_plan = await env.picture()

        plan = await revert_module.plan(env.store, env.network, run.state, force=force)

        assert await env.picture() == before_plan
        assert (await env.store.load(run_id)).state.version == run.state.version
        # Effects 2 and 4 wrote n:a, which someone else has changed since.
        if force:
            assert (plan.compensate, plan.conflicts, plan.overwritten_by_force) == (5, [], 1)
        else:
            assert plan.compensate == 3
            assert [(c.effect_no, c.element) for c in plan.conflicts] == [(4, "n:a"), (2, "n:a")]
        assert plan.already_compensated == 0
        assert len(plan.irreversible) == 3

        done, skipped = await revert(env, run_id, force=force)

        assert done.state.compensated == plan.compensate
        assert [(x.effect_no, x.element) for x in skipped] == [
            (c.effect_no, c.element) for c in plan.conflicts
        ]
        values = _elements(await env.network.export())
        assert values["n:a"] == ('{"v":1}' if force else '{"v":99}')
        assert (values["n:b"], values["e:a|b"]) == ('{"v":2}', '{"w":1}')
        assert "n:c" not in values
        reverted = (await env.store.history(run_id))[-1][1]
        assert isinstance(reverted, ev.RunReverted)
        assert (reverted.compensated, reverted.skipped, reverted.irreversible) == (
            plan.compensate,
            len(plan.conflicts),
            3,
        )

    run_async(settings, body)


def test_a_revert_interrupted_and_redone_finds_its_effects_already_compensated(
    settings: Settings,
) -> None:
    """A revert step whose network write happened but whose event was lost is redone
    safely: the effects are found already compensated, not reported as conflicts."""

    async def body(env: Env) -> None:
        await seed(env, {"n:a": {"v": 1}})
        run = await execute(
            env,
            [chunk(("update", "n:a", {"v": 2}), ("add", "n:b", {}), ("remove", "n:a", {}))],
        )
        run_id = run.state.run_id
        stored = await env.store.load(run_id)
        stored.handle(RevertRun(run_id=run_id), env.now())
        await save(env, stored)
        s = stored.state
        assert s.revert is not None
        batch = await next_batch(env.store, s, "+", 0, 2)
        assert [c.effect_no for c in batch.items] == [3, 2]
        assert letters(await env.network.compensate(batch.items, False, "step-1")) == "cc"
        # The worker died here: the step's event was never recorded. The plan sees it.
        plan = await revert_module.plan(env.store, env.network, run.state, force=False)
        assert (plan.compensate, plan.already_compensated, plan.conflicts) == (1, 2, [])

        done, skipped = await revert(env, run_id, force=False, started=True)

        assert skipped == []
        assert (done.state.compensated, done.state.skipped) == (3, 0)
        assert _elements(await env.network.export()) == {"n:a": '{"v":1}'}

    run_async(settings, body)


def test_a_redone_revert_step_repeats_its_outcome_instead_of_finding_conflicts(
    settings: Settings,
) -> None:
    """An element one run wrote twice is fully restored by the first attempt at a step;
    doing the same step again (its event was lost) must not report the newer write as a
    conflict, nor touch the network."""

    async def body(env: Env) -> None:
        await seed(env, {"n:a": {"v": 1}})
        run = await execute(env, [chunk(("update", "n:a", {"v": 2}), ("update", "n:a", {"v": 3}))])
        run_id = run.state.run_id
        stored = await env.store.load(run_id)
        stored.handle(RevertRun(run_id=run_id), env.now())
        await save(env, stored)
        s = stored.state
        batch = await next_batch(env.store, s, "+", 0, 10)
        first = await env.network.compensate(batch.items, False, "step-a")
        restored = await env.network.export()
        again = await env.network.compensate(batch.items, False, "step-a")
        assert first == again
        assert letters(first) == "cc"
        assert await env.network.export() == restored

    run_async(settings, body)

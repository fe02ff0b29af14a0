"""Scenarios: the registry, argument validation, and what the built-in ones do to a network."""

from __future__ import annotations

import sys
import types
from typing import Any

import msgspec
import pytest

from runstream.domain.scenarios import (
    BadArguments,
    Context,
    NetworkView,
    Registry,
    Scenario,
    load_registry,
)
from runstream.scenarios import graph_import, notify, synthetic
from runstream_worker.chunk import ChunkResult, NetworkUnavailable, run_chunk

RUN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
BUILT_IN = {"synthetic", "graph-import", "notify"}


def nothing_stored(_element: str) -> tuple[str, str] | None:
    return None


def one_pass(scenario: Scenario[Any], args: dict[str, Any], run_id: str = RUN_ID) -> ChunkResult:
    params = scenario.validate(args)
    return run_chunk(scenario, params, run_id, 0, 1_000_000, 60.0, nothing_stored)


def in_chunks(
    scenario: Scenario[Any], args: dict[str, Any], size: int, run_id: str = RUN_ID
) -> list[ChunkResult]:
    """The run resumed from its checkpoint chunk after chunk, as the executor does."""
    params = scenario.validate(args)
    results: list[ChunkResult] = []
    start = 0
    while True:
        result = run_chunk(scenario, params, run_id, start, size, 60.0, nothing_stored)
        results.append(result)
        assert result.items_from == start
        if result.exhausted or result.error or result.items_to == start:
            return results
        start = result.items_to


# --------------------------------------------------------------------------- registry
def test_the_registry_loads_the_built_in_scenarios() -> None:
    registry = load_registry()
    names = {s.name for s in registry}
    assert names >= BUILT_IN
    assert registry.get("synthetic") is synthetic.SCENARIO
    assert registry.get("graph-import") is graph_import.SCENARIO
    assert registry.get("notify") is notify.SCENARIO
    assert [s.name for s in registry] == sorted(names)


def test_an_unknown_scenario_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(BadArguments, match="unknown scenario 'nope'") as info:
        load_registry().get("nope")
    assert "known: graph-import, notify, synthetic" in str(info.value)


def test_an_empty_registry_says_none_are_known() -> None:
    with pytest.raises(BadArguments, match=r"known: none"):
        Registry().get("synthetic")


def test_registering_a_scenario_twice_fails() -> None:
    registry = Registry()
    registry.add(synthetic.SCENARIO, origin="first")
    with pytest.raises(ValueError, match="'synthetic' registered twice"):
        registry.add(synthetic.SCENARIO, origin="second")


def test_a_module_path_that_repeats_an_entry_point_fails_at_start_up() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        load_registry(["runstream.scenarios.synthetic"])


def _extra(name: str) -> Scenario[Any]:
    return Scenario(
        name=name,
        version="1",
        description="",
        params=notify.NotifyParams,
        inputs=notify.SCENARIO.inputs,
        step=notify.SCENARIO.step,
    )


def test_scenarios_load_from_module_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("extra_scenarios")
    module.SCENARIOS = [_extra("one"), _extra("two")]  # type: ignore[attr-defined]
    module.SPECIAL = _extra("three")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "extra_scenarios", module)

    registry = load_registry(["extra_scenarios", "extra_scenarios:SPECIAL"])

    assert {s.name for s in registry} == BUILT_IN | {"one", "two", "three"}


def test_describe_gives_the_parameter_schema() -> None:
    described = synthetic.SCENARIO.describe()
    assert (described["name"], described["version"]) == ("synthetic", "1")
    assert "items" in str(described["parameters"])


# --------------------------------------------------------------------------- arguments
def test_validate_accepts_numbers_given_as_strings() -> None:
    params = synthetic.SCENARIO.validate({"items": "10", "delay_ms": "1.5", "seed": "-3"})
    assert (params.items, params.delay_ms, params.seed) == (10, 1.5, -3)
    assert notify.SCENARIO.validate({"count": "7"}).count == 7


def test_validate_fills_in_defaults() -> None:
    params = graph_import.SCENARIO.validate({})
    assert (params.dataset, params.namespace) == ("karate", "")


@pytest.mark.parametrize(
    ("scenario", "args", "named"),
    [
        (synthetic.SCENARIO, {"bogus": 1}, "unknown field `bogus`"),
        (synthetic.SCENARIO, {"items": -1}, "$.items"),
        (synthetic.SCENARIO, {"items": 10_000_001}, "$.items"),
        (synthetic.SCENARIO, {"items": "ten"}, "$.items"),
        (synthetic.SCENARIO, {"edges_per_item": 101}, "$.edges_per_item"),
        (synthetic.SCENARIO, {"delay_ms": -1}, "$.delay_ms"),
        (synthetic.SCENARIO, {"notify_every": "-2"}, "$.notify_every"),
        (synthetic.SCENARIO, {"namespace": "a|b"}, "$.namespace"),
        (graph_import.SCENARIO, {"dataset": "zachary"}, "$.dataset"),
        (graph_import.SCENARIO, {"datset": "karate"}, "unknown field `datset`"),
        (notify.SCENARIO, {"count": 0}, "$.count"),
        (notify.SCENARIO, {"message": ""}, "$.message"),
    ],
)
def test_validate_refuses_bad_arguments_naming_the_field(
    scenario: Scenario[Any], args: dict[str, Any], named: str
) -> None:
    with pytest.raises(BadArguments) as info:
        scenario.validate(args)
    message = str(info.value)
    assert named in message
    assert f"scenario {scenario.name!r}" in message


# --------------------------------------------------------------------------- synthetic
ARGS = {"items": 25, "edges_per_item": 3, "seed": 7, "notify_every": 10}


def test_synthetic_is_deterministic_for_a_seed() -> None:
    first, second = one_pass(synthetic.SCENARIO, ARGS), one_pass(synthetic.SCENARIO, ARGS)
    assert first.changes == second.changes
    assert first.notifications == second.notifications
    assert len(first.notifications) == 2
    assert (first.items_to, first.exhausted, first.error) == (25, True, "")


def test_synthetic_differs_between_seeds() -> None:
    other = one_pass(synthetic.SCENARIO, {**ARGS, "seed": 8})
    assert other.changes != one_pass(synthetic.SCENARIO, ARGS).changes


def test_synthetic_namespaces_its_node_ids_by_run() -> None:
    result = one_pass(synthetic.SCENARIO, ARGS)
    nodes = [e for e, _ in result.changes if e.startswith("n:")]
    edges = [e for e, _ in result.changes if e.startswith("e:")]
    assert nodes == [f"n:{RUN_ID}:{i}" for i in range(25)]
    assert len(edges) == 24 * 3
    for edge in edges:
        src, _, dst = edge[2:].partition("|")
        assert src.startswith(f"{RUN_ID}:")
        assert dst.startswith(f"{RUN_ID}:")
        assert int(dst.rsplit(":", 1)[1]) < int(src.rsplit(":", 1)[1])  # to earlier nodes

    other_run = one_pass(synthetic.SCENARIO, ARGS, run_id="01ARZ3NDEKTSV4RRFFQ69G5FAW")
    assert not {e for e, _ in other_run.changes} & {e for e, _ in result.changes}


def test_synthetic_uses_the_namespace_when_given() -> None:
    result = one_pass(synthetic.SCENARIO, {**ARGS, "namespace": "bench"})
    assert result.changes[0][0] == "n:bench:0"
    assert msgspec.json.decode(result.changes[0][1])["i"] == 0


@pytest.mark.parametrize("size", [1, 4, 7, 25, 26])
def test_resuming_from_checkpoints_gives_the_same_changes_as_one_pass(size: int) -> None:
    whole = one_pass(synthetic.SCENARIO, ARGS)

    chunks = in_chunks(synthetic.SCENARIO, ARGS, size)

    assert [c for r in chunks for c in r.changes] == whole.changes
    assert [n for r in chunks for n in r.notifications] == whole.notifications
    # No item is processed twice and none is skipped.
    assert [(r.items_from, r.items_to) for r in chunks] == [
        (start, min(start + size, 25)) for start in range(0, 25, size)
    ]
    assert chunks[-1].exhausted
    assert not any(r.exhausted for r in chunks[:-1])


def test_a_failing_item_contributes_nothing_and_ends_the_chunk_with_an_error() -> None:
    args = {**ARGS, "fail_at": 5}

    result = one_pass(synthetic.SCENARIO, args)

    assert result.items_to == 5
    assert not result.exhausted
    assert "item 5" in result.error
    assert "RuntimeError: synthetic failure at item 5" in result.error
    assert result.changes == one_pass(synthetic.SCENARIO, {**ARGS, "items": 5}).changes
    # Resuming at the failing item fails again, at once, with nothing done.
    params = synthetic.SCENARIO.validate(args)
    again = run_chunk(synthetic.SCENARIO, params, RUN_ID, 5, 100, 60.0, nothing_stored)
    assert (again.items_to, again.changes, again.error != "") == (5, [], True)


class _Half(msgspec.Struct, frozen=True):
    items: int = 5
    fail_at: int = 2


def _half_step(ctx: Context, p: _Half, i: int) -> None:
    ctx.network.add_node(f"x{i}", i=i)
    ctx.notify(f"note {i}")
    ctx.log(f"line {i}")
    ctx.results.put(f"r{i}", str(i))
    ctx.results.put("last", str(i))
    if i == p.fail_at:
        raise KeyError("half done")


HALF = Scenario(
    name="half",
    version="1",
    description="writes, then fails at fail_at",
    params=_Half,
    inputs=lambda p, start: range(start, p.items),
    step=_half_step,
)


def test_what_a_failing_item_did_before_failing_is_rolled_back() -> None:
    result = one_pass(HALF, {})

    assert result.items_to == 2
    assert "item 2: KeyError" in result.error
    assert result.changes == [("n:x0", '{"i":0}'), ("n:x1", '{"i":1}')]
    assert result.notifications == ["note 0", "note 1"]
    assert result.log == ["line 0", "line 1"]
    assert result.results == {"r0": "0", "r1": "1", "last": "1"}


def test_a_chunk_stops_when_asked_to_at_an_item_boundary() -> None:
    params = synthetic.SCENARIO.validate(ARGS)
    result = run_chunk(
        synthetic.SCENARIO, params, RUN_ID, 3, 100, 60.0, nothing_stored, should_stop=lambda: True
    )
    assert (result.items_from, result.items_to, result.exhausted) == (3, 4, False)


# --------------------------------------------------------------------------- graph-import
def test_graph_import_of_the_karate_club_gives_34_nodes_and_78_edges() -> None:
    result = one_pass(graph_import.SCENARIO, {"dataset": "karate"})

    nodes = {e for e, _ in result.changes if e.startswith("n:")}
    edges = {e for e, _ in result.changes if e.startswith("e:")}
    assert (len(nodes), len(edges)) == (34, 78)
    assert len(result.changes) == 34 + 78
    assert (result.items_to, result.exhausted, result.error) == (112, True, "")
    assert graph_import.SCENARIO.count(graph_import.SCENARIO.validate({})) == 112
    assert "n:karate:0" in nodes
    # Every edge joins two imported nodes.
    for edge in edges:
        src, _, dst = edge[2:].partition("|")
        assert {f"n:{src}", f"n:{dst}"} <= nodes


def test_graph_import_in_chunks_matches_one_pass() -> None:
    args = {"dataset": "florentine", "namespace": "fl"}
    whole = one_pass(graph_import.SCENARIO, args)
    chunks = in_chunks(graph_import.SCENARIO, args, 5)
    assert [c for r in chunks for c in r.changes] == whole.changes
    assert all(e.split(":", 2)[1] == "fl" for e, _ in whole.changes if e.startswith("n:"))


# --------------------------------------------------------------------------- notify
def test_notify_only_sends_notifications() -> None:
    result = one_pass(notify.SCENARIO, {"message": "deploy", "count": 3})
    assert result.changes == []
    assert result.notifications == ["deploy (1/3)", "deploy (2/3)", "deploy (3/3)"]
    assert len(result.log) == 3
    assert result.exhausted


# --------------------------------------------------------------------------- network view
def test_a_step_sees_its_own_changes_over_the_stored_network() -> None:
    stored = {"n:a": ('{"x":1,"y":2}', "other-run/7")}
    view = NetworkView(stored.get)

    view.update_node("a", y=3)
    view.add_edge("a", "b", w=1)
    view.remove_edge("a", "b")

    assert view.get_node("a") == {"x": 1, "y": 3}
    assert view.get_edge("a", "b") is None
    assert view.changes == [("n:a", '{"x":1,"y":3}'), ("e:a|b", '{"w":1}'), ("e:a|b", "")]
    assert stored == {"n:a": ('{"x":1,"y":2}', "other-run/7")}  # nothing is written through
    # What the step read is remembered: the change to n:a assumes that state.
    assert view.reads == {"n:a": ('{"x":1,"y":2}', "other-run/7")}


def test_updating_a_missing_node_or_using_a_bad_id_fails() -> None:
    view = NetworkView(nothing_stored)
    with pytest.raises(KeyError):
        view.update_node("ghost", x=1)
    view.add_node("ghost")
    view.remove_node("ghost")
    with pytest.raises(KeyError):
        view.update_node("ghost", x=1)
    for bad in ("", "a|b"):
        with pytest.raises(ValueError, match="bad node id"):
            view.add_node(bad)


# --------------------------------------------------------------------------- hostile scenarios
class _Params(msgspec.Struct):
    pass


def _scenario(inputs: Any, step: Any) -> Scenario[Any]:
    return Scenario(
        name="hostile", version="1", description="", params=_Params, inputs=inputs, step=step
    )


def _ok_step(ctx: Any, params: Any, item: Any) -> None:
    ctx.network.add_node(f"n{item}")


def test_an_input_source_that_fails_to_open_fails_the_chunk_not_the_worker() -> None:
    def inputs(params: Any, start: int) -> Any:
        raise FileNotFoundError("data.csv")

    result = run_chunk(_scenario(inputs, _ok_step), _Params(), "r", 0, 10, 5.0, nothing_stored)
    assert result.error.startswith("input source: FileNotFoundError: data.csv")
    assert result.items_to == 0


def test_an_input_source_that_breaks_midway_keeps_the_items_before() -> None:
    def inputs(params: Any, start: int) -> Any:
        yield from range(start, 3)
        raise ConnectionError("feed went away")

    result = run_chunk(_scenario(inputs, _ok_step), _Params(), "r", 0, 10, 5.0, nothing_stored)
    assert result.error.startswith("input source, item 3: ConnectionError: feed went away")
    assert result.items_to == 3
    assert [element for element, _ in result.changes] == ["n:n0", "n:n1", "n:n2"]


def test_a_step_that_calls_sys_exit_is_an_item_error() -> None:
    def step(ctx: Any, params: Any, item: Any) -> None:
        if item == 1:
            sys.exit(3)
        ctx.network.add_node(f"n{item}")

    scenario = _scenario(lambda p, start: iter(range(start, 5)), step)
    result = run_chunk(scenario, _Params(), "r", 0, 10, 5.0, nothing_stored)
    assert result.error.startswith("item 1: SystemExit: 3")
    assert result.items_to == 1


def test_a_network_that_cannot_be_read_abandons_the_chunk() -> None:
    def unreachable(element: str) -> tuple[str, str] | None:
        raise NetworkUnavailable(f"cannot read {element}")

    def step(ctx: Any, params: Any, item: Any) -> None:
        ctx.network.get_node("a")

    scenario = _scenario(lambda p, start: iter(range(start, 5)), step)
    with pytest.raises(NetworkUnavailable, match="cannot read n:a"):
        run_chunk(scenario, _Params(), "r", 0, 10, 5.0, unreachable)

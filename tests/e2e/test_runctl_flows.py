"""runctl against real worker processes: every command goes through a ``runctl``
subprocess and every outcome is checked from the outside (``--json`` output,
``runctl history``, ``runctl network export``/``stats``)."""

from __future__ import annotations

import asyncio
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from runstream.client import Client
from runstream.ids import new_id
from runstream.keys import Keys
from runstream.settings import Settings
from runstream.store.events import Tombstone

from .conftest import Result, Runctl, StartWorkers, wait_until

EMPTY_NETWORK: dict[str, Any] = {"nodes": [], "edges": []}
KARATE_ELEMENTS = 34 + 78
KNOWN_SCENARIOS = ("graph-import", "notify", "synthetic")


# --------------------------------------------------------------------------- helpers
def show(runctl: Runctl, run_id: str) -> dict[str, Any]:
    summary: dict[str, Any] = runctl("show", run_id, "--json").json()
    return summary


def start(runctl: Runctl, scenario: str, *args: str, wait: bool = False) -> str:
    argv = ["start", scenario, "--json"]
    for arg in args:
        argv += ["--arg", arg]
    if wait:
        argv.append("--wait")
    started = runctl(*argv).json()
    run_id: str = started["id"]
    return run_id


def wait_for_state(
    runctl: Runctl, run_id: str, state: str, timeout: float = 30.0
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        summary = show(runctl, run_id)
        assert summary["state"] not in ("failed", "cancelled") or state == summary["state"], (
            f"run ended {summary['state']}: {summary['error'] or summary['reason']}"
        )
        return summary if summary["state"] == state else None

    return wait_until(probe, f"run {run_id} to be {state}", timeout, interval=0)


def history(runctl: Runctl, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = runctl("history", run_id, "--json").json()
    return events


def export(runctl: Runctl) -> dict[str, Any]:
    network: dict[str, Any] = runctl("network", "export").json()
    return network


def nodes_of(network: dict[str, Any], namespace: str) -> list[str]:
    return [n["id"] for n in network["nodes"] if n["id"].startswith(namespace + ":")]


def effects_of_synthetic(items: int, edges_per_item: int = 2) -> int:
    """A node per item, plus edges_per_item edge writes per item after the first."""
    return items + edges_per_item * (items - 1)


def one_line_error(result: Result) -> str:
    """The single stderr line a failing runctl prints."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line\n{result}"
    assert lines[0].startswith("runctl: "), result
    return lines[0]


def processed_ranges(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Item ranges of the chunks that took effect, in history order.

    Every prepared chunk must end either processed (ItemsProcessed) or voided
    (ChunkVoided), never both; a voided chunk's items are not counted.
    """
    prepared = {e["chunk"]: e for e in events if e["type"] == "ChunkPrepared"}
    voided = [e["chunk"] for e in events if e["type"] == "ChunkVoided"]
    processed = [e for e in events if e["type"] == "ItemsProcessed"]
    done = [e["chunk"] for e in processed]
    assert len(set(done)) == len(done), f"a chunk was confirmed twice: {done}"
    assert not set(done) & set(voided), "a chunk was both processed and voided"
    assert set(done) | set(voided) == set(prepared), "a prepared chunk was left unresolved"
    ranges = []
    for e in processed:
        chunk = prepared[e["chunk"]]
        assert e["items_to"] == chunk["items_to"]
        ranges.append((chunk["items_from"], chunk["items_to"]))
    return ranges


def assert_contiguous(ranges: list[tuple[int, int]], total: int) -> None:
    """Items 0..total, each in exactly one processed chunk: none twice, none skipped."""
    assert ranges, "no chunk was processed"
    assert ranges[0][0] == 0
    for (_, prev_to), (start_, to) in itertools.pairwise(ranges):
        assert start_ == prev_to, f"gap or overlap at {prev_to}->{start_}: {ranges}"
        assert to > start_
    assert ranges[-1][1] == total


def assert_unchanged_by_rejection(
    runctl: Runctl, run_id: str, before: dict[str, Any], command_type: str
) -> None:
    """A rejected command leaves the run as it was; the rejection is in its history."""
    after = show(runctl, run_id)
    # ``version`` counts the run's events, and the rejection is one of them; show lists
    # it last among the commands.
    volatile = ("version", "updated_at", "commands")
    assert {k: v for k, v in after.items() if k not in volatile} == {
        k: v for k, v in before.items() if k not in volatile
    }
    assert after["version"] == before["version"] + 1
    assert after["commands"][:-1] == before["commands"]
    assert after["commands"][-1]["rejected"] and after["commands"][-1]["command"] == command_type
    last = history(runctl, run_id)[-1]
    assert (last["type"], last["command_type"]) == ("CommandRejected", command_type)


def tombstones(settings: Settings) -> list[Tombstone]:
    async def read() -> list[Tombstone]:
        async with Client.connect(settings=settings) as client:
            return await client.tombstones()

    return asyncio.run(read())


def prefix_keys(redis_client: redis.Redis, settings: Settings) -> list[bytes]:
    """The test's keys, but the deployment's shard and network partition counts (stored
    by the first process to talk to Redis, reads included)."""
    keys_of = Keys.of(settings)
    config = {keys_of.config_shards().encode(), keys_of.config_partitions().encode()}
    keys = redis_client.scan_iter(match=f"{settings.prefix}:*", count=1000)
    return [k for k in keys if k not in config]


# --------------------------------------------------------------------------- 1. the story
def test_stop_continue_revert_delete_keeps_every_item_exactly_once(
    runctl: Runctl, start_workers: StartWorkers, settings: Settings
) -> None:
    workers = start_workers(1)
    before = export(runctl)
    assert before == EMPTY_NETWORK

    run_id = start(runctl, "synthetic", "items=3000", "delay_ms=3")
    wait_until(
        lambda: (s := show(runctl, run_id))["state"] == "running" and s["items_processed"] > 0,
        "the run to make progress",
        timeout=20,
        interval=0,
    )
    assert "stopped" in runctl("stop", run_id, "--wait").stdout

    stopped = show(runctl, run_id)
    assert stopped["state"] == "stopped"
    assert 0 < stopped["items_processed"] < 3000
    assert show(runctl, run_id) == stopped  # nothing moves while it is stopped
    assert show(runctl, run_id) == stopped

    runctl("continue", run_id, "--wait")
    done = wait_for_state(runctl, run_id, "succeeded")
    assert done["items_processed"] == done["items_total"] == 3000
    events = history(runctl, run_id)
    assert [e["type"] for e in events].count("RunStopped") == 1
    assert [e["type"] for e in events].count("RunContinued") == 1
    assert_contiguous(processed_ranges(events), 3000)

    after_run = export(runctl)
    assert sorted(nodes_of(after_run, run_id)) == sorted(f"{run_id}:{i}" for i in range(3000))
    applied = done["effects"]["applied"]
    assert applied == effects_of_synthetic(3000)

    plan = runctl("revert", run_id, "--dry-run", "--json").json()
    assert plan["compensate"] == applied
    assert plan["conflicts"] == []
    assert plan["irreversible"] == []
    assert show(runctl, run_id) == done  # a dry run changes nothing
    assert export(runctl) == after_run

    out = runctl("revert", run_id, "--wait").stdout
    assert f"reverted: {applied} compensated, 0 skipped" in out
    reverted = show(runctl, run_id)
    assert reverted["state"] == "reverted"
    assert reverted["effects"]["compensated"] == applied
    assert export(runctl) == before

    assert "deleted (0 effects left" in runctl("delete", run_id, "--wait").stdout
    gone = runctl("show", run_id, check=3)
    assert "deleted" in one_line_error(gone)
    runctl("history", run_id, check=3)
    (tomb,) = [t for t in tombstones(settings) if t.run_id == run_id]
    assert (tomb.scenario, tomb.actor, tomb.effects_left) == ("synthetic", "runctl", 0)
    workers.assert_alive()


# --------------------------------------------------------------------------- 2. rejections
def test_commands_that_do_not_fit_the_state_are_rejected_and_change_nothing(
    runctl: Runctl, start_workers: StartWorkers
) -> None:
    workers = start_workers(1)
    endless = start(runctl, "synthetic", "items=1000000", "delay_ms=1")
    done = start(runctl, "graph-import", wait=True)
    succeeded = show(runctl, done)
    assert succeeded["state"] == "succeeded"

    # delete with effects still on the network
    line = one_line_error(runctl("delete", done, check=1))
    assert "not reverted" in line and "--revert" in line and "--keep-effects" in line
    assert_unchanged_by_rejection(runctl, done, succeeded, "DeleteRun")

    # continue / delete a running run
    wait_for_state(runctl, endless, "running")
    line = one_line_error(runctl("continue", endless, check=1))
    assert "cannot continue a run that is running" in line
    line = one_line_error(runctl("delete", endless, "--keep-effects", check=1))
    assert "cannot delete a run that is running" in line
    rejected = [e for e in history(runctl, endless) if e["type"] == "CommandRejected"]
    assert [e["command_type"] for e in rejected] == ["ContinueRun", "DeleteRun"]
    assert show(runctl, endless)["state"] == "running"
    assert "cancelled" in runctl("cancel", endless, "--wait").stdout

    # revert twice
    runctl("revert", done, "--wait")
    reverted = show(runctl, done)
    assert reverted["state"] == "reverted"
    line = one_line_error(runctl("revert", done, "--wait", check=1))
    assert "already reverted" in line
    assert_unchanged_by_rejection(runctl, done, reverted, "RevertRun")
    workers.assert_alive()


MISSING = new_id()


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (("start", "synthetic", "--arg", "items"), 2, ("bad --arg 'items'", "KEY=VALUE")),
        (("show", "not-a-run-id"), 2, ("malformed run id",)),
        (("stop", "01ARZ3NDEKTSV4RRFFQ69G5FAI"), 2, ("malformed run id",)),  # I: not Crockford
        (("show", MISSING), 3, (f"run {MISSING} does not exist",)),
        (("stop", MISSING, "--wait"), 3, ("does not exist",)),
        (("revert", MISSING, "--dry-run"), 3, ("does not exist",)),
        (("delete", MISSING, "--revert"), 3, ("does not exist",)),
    ],
    ids=[
        "arg-without-equals",
        "malformed-id",
        "malformed-id-letter",
        "show-missing",
        "stop-missing",
        "revert-missing",
        "delete-missing",
    ],
)
def test_bad_input_is_refused_before_anything_is_published(
    runctl: Runctl,
    settings: Settings,
    redis_client: redis.Redis,
    argv: tuple[str, ...],
    code: int,
    expected: tuple[str, ...],
) -> None:
    line = one_line_error(runctl(*argv, check=code))
    for text in expected:
        assert text in line
    assert prefix_keys(redis_client, settings) == []  # no command, no run, no network


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("start", "nope"), ("unknown scenario 'nope'", *KNOWN_SCENARIOS)),
        (("start", "synthetic", "--arg", "items=abc"), ("bad arguments", "items")),
        (("start", "synthetic", "--arg", "bogus=1"), ("bad arguments", "bogus")),
    ],
    ids=["unknown-scenario", "arg-not-an-int", "arg-unknown"],
)
def test_a_start_the_workers_cannot_run_is_bad_input_and_creates_no_run(
    runctl: Runctl,
    start_workers: StartWorkers,
    argv: tuple[str, ...],
    expected: tuple[str, ...],
) -> None:
    """Scenarios are the workers' (they publish them; they validate the arguments)."""
    start_workers(1)
    line = one_line_error(runctl(*argv, check=2))
    for text in expected:
        assert text in line
    assert runctl("list", "--json").json() == []


@pytest.mark.parametrize(
    "argv",
    [("show", MISSING), ("start", "synthetic"), ("network", "stats")],
    ids=["show", "start", "network-stats"],
)
def test_unreachable_redis_exits_4_saying_how_to_start_one(
    runctl: Runctl, argv: tuple[str, ...]
) -> None:
    result = runctl(*argv, check=4, env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    line = one_line_error(result)
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in line
    assert "runctl dev" in line and "REDIS_URL" in line


# --------------------------------------------------------------------------- 3. delete --revert
def test_delete_with_revert_takes_effects_back_then_deletes(
    runctl: Runctl, start_workers: StartWorkers, settings: Settings
) -> None:
    start_workers(1)
    before = export(runctl)
    run_id = start(runctl, "synthetic", "items=300", wait=True)
    assert len(nodes_of(export(runctl), run_id)) == 300

    out = runctl("delete", run_id, "--revert", "--wait").stdout
    assert "deleted (0 effects left" in out
    assert "deleted" in one_line_error(runctl("show", run_id, check=3))
    assert export(runctl) == before
    assert run_id in [t.run_id for t in tombstones(settings)]


# --------------------------------------------------------------------------- 4. conflicts
def test_revert_skips_elements_another_run_changed_unless_forced(
    runctl: Runctl, start_workers: StartWorkers
) -> None:
    start_workers(1)
    a = start(runctl, "graph-import", wait=True)
    after_a = export(runctl)
    assert (len(after_a["nodes"]), len(after_a["edges"])) == (34, 78)
    b = start(runctl, "graph-import", wait=True)  # same values, B's stamps on every element
    assert export(runctl) == after_a

    plan = runctl("revert", a, "--dry-run", "--json").json()
    assert (plan["compensate"], len(plan["conflicts"])) == (0, KARATE_ELEMENTS)
    out = runctl("revert", a, "--wait").stdout
    assert f"0 compensated, {KARATE_ELEMENTS} skipped (conflicts)" in out
    assert show(runctl, a)["effects"]["skipped"] == KARATE_ELEMENTS
    assert export(runctl) == after_a  # A touched nothing B owns

    out = runctl("revert", b, "--wait").stdout
    assert f"{KARATE_ELEMENTS} compensated, 0 skipped" in out
    assert export(runctl) == after_a  # back to A's state: A's elements, as A left them

    # --force: C's revert overwrites D's later writes with C's "before" (absent).
    before_c = export(runctl)
    c = start(runctl, "graph-import", "namespace=x", wait=True)
    start(runctl, "graph-import", "namespace=x", wait=True)
    assert len(nodes_of(export(runctl), "x")) == 34
    plan = runctl("revert", c, "--dry-run", "--force", "--json").json()
    assert plan["conflicts"] == []
    assert plan["compensate"] == plan["overwritten_by_force"] == KARATE_ELEMENTS
    out = runctl("revert", c, "--force", "--wait").stdout
    assert f"{KARATE_ELEMENTS} compensated, 0 skipped" in out
    network = export(runctl)
    assert nodes_of(network, "x") == []
    assert network == before_c


# --------------------------------------------------------------------------- 5. irreversible
def test_revert_reports_notifications_as_irreversible_and_leaves_them(
    runctl: Runctl, start_workers: StartWorkers
) -> None:
    start_workers(1)
    sent_before = runctl("network", "stats", "--json").json()["notifications"]
    run_id = start(runctl, "notify", "count=3", wait=True)
    assert runctl("network", "stats", "--json").json()["notifications"] == sent_before + 3

    plan = runctl("revert", run_id, "--dry-run", "--json").json()
    assert len(plan["irreversible"]) == 3
    out = runctl("revert", run_id, "--wait").stdout
    assert "3 irreversible not reverted" in out
    summary = show(runctl, run_id)
    assert summary["state"] == "reverted"
    assert summary["effects"]["irreversible"] == 3
    assert runctl("network", "stats", "--json").json() == {
        "nodes": 0,
        "edges": 0,
        "notifications": sent_before + 3,
    }


# --------------------------------------------------------------------------- 6. two workers
def test_two_workers_finish_many_runs(runctl: Runctl, start_workers: StartWorkers) -> None:
    workers = start_workers(2)
    with ThreadPoolExecutor(max_workers=5) as pool:
        ids = list(pool.map(lambda _: start(runctl, "synthetic", "items=100"), range(20)))
    assert len(set(ids)) == 20

    def all_succeeded() -> list[dict[str, Any]] | None:
        runs: list[dict[str, Any]] = runctl("list", "--json").json()
        failed = [r for r in runs if r["state"] in ("failed", "cancelled")]
        assert not failed, failed
        return runs if len(runs) == 20 and all(r["state"] == "succeeded" for r in runs) else None

    runs = wait_until(all_succeeded, "20 runs to succeed", timeout=40, interval=0)
    assert sorted(r["id"] for r in runs) == sorted(ids)
    assert all(r["items_processed"] == 100 for r in runs)
    network = export(runctl)
    assert len(network["nodes"]) == 20 * 100
    workers.assert_alive()


@pytest.mark.chaos
def test_run_survives_kill_9_of_its_worker(runctl: Runctl, start_workers: StartWorkers) -> None:
    workers = start_workers(2, RUNSTREAM_LEASE_MS="1500", RUNSTREAM_CLAIM_IDLE_MS="1500")
    run_id = start(runctl, "synthetic", "items=5000", "delay_ms=1")
    wait_until(
        lambda: (s := show(runctl, run_id))["state"] == "running" and s["items_processed"] > 0,
        "the run to make progress",
        timeout=20,
        interval=0,
    )
    (started,) = [e for e in history(runctl, run_id) if e["type"] == "RunStarted"]
    victim = workers.index_of(started["worker"])
    workers.kill(victim)
    at_kill = show(runctl, run_id)["items_processed"]
    assert at_kill < 5000, "the run finished before its worker could be killed"

    done = wait_for_state(runctl, run_id, "succeeded", timeout=40)
    assert done["items_processed"] == 5000
    survivor = 1 - victim
    workers.assert_alive(survivor)
    assert_contiguous(processed_ranges(history(runctl, run_id)), 5000)
    network = export(runctl)
    assert sorted(nodes_of(network, run_id)) == sorted(f"{run_id}:{i}" for i in range(5000))
    assert done["effects"]["applied"] == effects_of_synthetic(5000)

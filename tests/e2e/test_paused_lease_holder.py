"""Issue 12: a worker paused (SIGSTOP) for longer than its lease while it drives runs, then
resumed (SIGCONT), must not wedge them: the runs are taken over, the paused worker notices
its lost leases, writes nothing more for those runs and frees its slots; every run ends
exactly as a clean run would, and every worker still stops promptly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from typing import Any

import msgspec
import pytest

from runstream.client import Client
from runstream.contracts import events as ev
from runstream.scenarios.synthetic import SyntheticParams
from runstream.settings import Settings
from runstream.store.network import NetworkStore

from .chaos_checks import synthetic_network
from .chaos_pause import Pauser
from .conftest import StartWorkers

RUNS = 3
ITEMS = 30_000
LEASE_MS = 1000
GRACE_S = 2.0  # RUNSTREAM_SHUTDOWN_GRACE_S of the e2e workers
# A loaded 2-core machine may take a moment to schedule the exiting process.
EXIT_SLACK_S = 0.5
PAUSING_S = 22.0


def clean_run(run_id: str, args: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The network elements and notifications of the run done in one go, without Redis."""
    return synthetic_network(run_id, args, msgspec.convert(args, SyntheticParams).items)


def owned_by(run_id: str, element: str) -> bool:
    return element[2:].startswith(run_id + ":")


def chunk_ranges(history: list[tuple[str, ev.Event]]) -> list[tuple[int, int]]:
    """Item ranges of the chunks confirmed, in order; a chunk resolved twice fails."""
    prepared: dict[int, ev.ChunkPrepared] = {}
    resolved: set[int] = set()
    ranges = []
    for _, e in history:
        if isinstance(e, ev.ChunkPrepared):
            prepared[e.chunk] = e
        elif isinstance(e, ev.ItemsProcessed | ev.ChunkVoided):
            assert e.chunk not in resolved, f"chunk {e.chunk} resolved twice"
            resolved.add(e.chunk)
            if isinstance(e, ev.ItemsProcessed):
                ranges.append((prepared[e.chunk].items_from, e.items_to))
    return ranges


@pytest.mark.timeout(90)
def test_runs_survive_their_lease_holder_being_paused_and_resumed(
    settings: Settings, start_workers: StartWorkers
) -> None:
    workers = start_workers(
        2,
        RUNSTREAM_LEASE_MS=str(LEASE_MS),
        RUNSTREAM_CLAIM_IDLE_MS=str(LEASE_MS),
        RUNSTREAM_UPKEEP_INTERVAL_S="1",
        # Most of a chunk in its step thread, where a pause lands most often (issue 12).
        RUNSTREAM_CHUNK_SECONDS="0.2",
    )
    rng = random.Random()
    seed = rng.randrange(2**31)
    rng.seed(seed)

    histories: dict[str, list[tuple[str, ev.Event]]] = {}

    async def body() -> None:
        async with Client.connect(settings=settings) as client:
            runs: dict[str, dict[str, Any]] = {}
            for k in range(RUNS):
                args = {"items": ITEMS, "delay_ms": 0.02, "seed": 11 + k, "notify_every": 500}
                runs[await client.start("synthetic", args)] = args

            async def all_done() -> bool:
                summaries = [await client.find(r) for r in runs]
                return all(
                    s is not None and s.state not in ("queued", "running") for s in summaries
                )

            pauser = Pauser(
                rng,
                client.redis,
                client.keys,
                lambda: {w.name: w.proc for w in workers.procs},
                pause_s=(1.1 * LEASE_MS / 1000, 1.5 * LEASE_MS / 1000),
            )
            await pauser.run(time.monotonic() + PAUSING_S, done=all_done)
            print(f"\npaused lease holders: {pauser.pauses} pauses of {pauser.runs_paused} runs")
            assert pauser.pauses >= 3, f"only {pauser.pauses} pauses: the runs ended too soon"

            for run_id in runs:
                summary = await client.wait(run_id, timeout=20, poll=0.1)
                assert summary.state == "succeeded", (run_id, summary)

            # Exactly the clean run's network and notifications, each item once.
            network = await NetworkStore(client.redis, client.keys).elements()
            outbox = await NetworkStore(client.redis, client.keys).outbox(count=100_000)
            for run_id, args in runs.items():
                values, notes = clean_run(run_id, args)
                got = {e: v for e, v in network.items() if owned_by(run_id, e)}
                assert got == values, f"run {run_id}: network differs from a clean run"
                sent = [n["message"] for n in reversed(outbox) if n["run_id"] == run_id]
                assert sent == notes, f"run {run_id}: notifications differ from a clean run"
                ranges = chunk_ranges(await client.history(run_id))
                position = 0
                for start, end in ranges:
                    assert start == position, f"run {run_id}: chunks {ranges}"
                    position = end
                assert position == ITEMS
                histories[run_id] = await client.history(run_id)

    try:
        asyncio.run(body())
    finally:
        for w in workers.procs:  # never leave one stopped
            w.proc.send_signal(signal.SIGCONT)
    workers.assert_alive()

    # Every chunk a worker logged as resolved is resolved that way in the run's history
    # (issue 12 saw "chunk_resolved outcome=voided" for a chunk the history confirms).
    outcome_of = {
        (run_id, e.chunk): "applied" if isinstance(e, ev.ItemsProcessed) else "voided"
        for run_id, history in histories.items()
        for _, e in history
        if isinstance(e, ev.ItemsProcessed | ev.ChunkVoided)
    }
    for w in workers.procs:
        for line in w.log().splitlines():
            if '"chunk_resolved"' in line:
                entry = json.loads(line)
                key = (entry["run_id"], entry["chunk"])
                assert outcome_of.get(key) == entry["outcome"], (w.name, line)

    # Every worker, paused and resumed many times, stops within its grace period.
    sent = time.monotonic()
    for w in workers.procs:
        w.proc.send_signal(signal.SIGTERM)
    for w in workers.procs:
        code = w.proc.wait(GRACE_S + EXIT_SLACK_S + 5)
        took = time.monotonic() - sent
        assert code == 0 and took <= GRACE_S + EXIT_SLACK_S, (
            f"worker {w.name} (seed {seed}): exit {code} after {took:.2f}s\n{w.log()[-3000:]}"
        )
        assert "worker_stopped" in w.log()

"""What runstream promises (README, "What runstream promises"), one guarantee at a time,
against a real Redis with real workers (in-process, or subprocesses where a process must
die or get a signal)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aredis

from runstream import catalog
from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import Run, RunState, apply
from runstream.domain.scenarios import load_registry
from runstream.ids import new_id
from runstream.keys import Fields, Keys
from runstream.settings import Settings
from runstream.store import replies
from runstream.store.events import EventStore
from runstream.store.network import NetworkStore
from runstream_worker.app import ensure_groups
from runstream_worker.chunk import run_chunk
from runstream_worker.upkeep import heartbeat, upkeep

from .support import (
    assert_contiguous,
    chunk_ranges,
    connect,
    fast,
    history,
    logs_of,
    pending_count,
    prepare_chunk_under_lease,
    run_id_on,
    runctl_async,
    until,
    worker_pool,
    worker_running,
)

EmbeddedFactory = Any


async def _lease_owner(r: aredis.Redis, keys: Keys, run_id: str) -> str | None:
    raw = await r.get(keys.lease(run_id))
    return replies.text(raw) if raw is not None else None


async def _total_pending(r: aredis.Redis, keys: Keys, consumer: str | None = None) -> int:
    total = 0
    for shard in range(keys.shards):
        stream = keys.commands(shard)
        if await r.exists(stream):
            total += await pending_count(r, stream, keys.group, consumer)
    return total


def _synthetic_effects(items: int, edges_per_item: int) -> int:
    return items + max(0, items - 1) * edges_per_item


# =========================================================================== 1. pending recovery
def test_a_command_read_by_a_dead_consumer_is_claimed_and_applied(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings, claim_idle_ms=1000)
        keys = Keys.of(s)
        async with connect(s) as r, Client.connect(settings=s) as client:
            await ensure_groups(r, keys)
            run_id = run_id_on(keys, 0)
            stream = keys.commands(0)
            await client.start_nowait("synthetic", {"items": 3}, run_id=run_id)
            # "dead-1" reads the command, then dies before acking it.
            got = replies.streams(await r.xreadgroup(keys.group, "dead-1", {stream: ">"}, count=10))
            assert len(got[0][1]) == 1
            read_at = time.monotonic()
            assert await pending_count(r, stream, keys.group, "dead-1") == 1

            async with worker_running(s, name="live-1"):
                await until(
                    lambda: client.find(run_id),
                    "the dead consumer's command to be applied",
                    timeout=s.claim_idle_ms / 1000 + 4,
                )
                applied_after = time.monotonic() - read_at
                summary = await client.wait(run_id, timeout=10, poll=0.05)
            assert summary.state == "succeeded"
            assert summary.items_processed == 3
            assert applied_after < s.claim_idle_ms / 1000 + 4
            assert await pending_count(r, stream, keys.group, "dead-1") == 0
            assert await pending_count(r, stream, keys.group) == 0
            queued = [e for e in await history(r, keys, run_id) if isinstance(e, ev.RunQueued)]
            assert len(queued) == 1

    asyncio.run(body())


# =========================================================================== 2. crash mid-run
def test_a_run_on_a_killed_worker_continues_elsewhere_from_its_checkpoint(
    settings: Settings, tmp_path: Path
) -> None:
    async def body() -> None:
        s = fast(settings, lease_ms=1500, claim_idle_ms=1500)
        keys = Keys.of(s)
        items, edges = 150, 1
        with worker_pool(s, tmp_path) as pool:
            pool.start("w1")
            pool.start("w2")
            async with Client.connect(settings=s) as client:
                r = client.redis
                run_id = await client.start(
                    "synthetic", {"items": items, "edges_per_item": edges, "delay_ms": 10}
                )

                async def holder_midway() -> str | None:
                    found = await client.find(run_id)
                    owner = await _lease_owner(r, keys, run_id)
                    if found is not None and found.items_processed >= 20 and owner:
                        return owner
                    return None

                owner = await until(holder_midway, "a worker to be midway", timeout=20)
                assert found_state(await client.find(run_id)) == "running", logs_of(pool)
                victim = next(w for w in pool.procs if w.name == owner)
                survivor = next(w for w in pool.procs if w.name != owner)
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
                at_kill = (await client.get(run_id)).items_processed

                summary = await client.wait(run_id, timeout=30, poll=0.05)
                assert summary.state == "succeeded", logs_of(pool)
                assert survivor.alive(), logs_of(pool)
                assert summary.items_processed == items
                assert summary.effects["applied"] == _synthetic_effects(items, edges)
                events = await history(r, keys, run_id)
                ranges = chunk_ranges(events)
                assert_contiguous(ranges, items)
                assert at_kill < items
                # The network holds each item's node exactly once, each stamped by an
                # effect the history records as applied.
                stamps = await NetworkStore(r, keys).all_stamps()
                mine = {k: v for k, v in stamps.items() if k.startswith(f"n:{run_id}:")}
                assert len(mine) == items
                confirmed = _confirmed_effect_numbers(events)
                for stamp in mine.values():
                    assert int(stamp.rsplit("/", 1)[1]) in confirmed

    asyncio.run(body())


def found_state(summary: Any) -> str:
    return summary.state if summary is not None else "absent"


def _confirmed_effect_numbers(events: list[ev.Event]) -> set[int]:
    prepared = {e.chunk: e for e in events if isinstance(e, ev.ChunkPrepared)}
    out: set[int] = set()
    for e in events:
        if isinstance(e, ev.ItemsProcessed):
            p = prepared[e.chunk]
            out.update(range(p.first_effect, p.first_effect + len(p.effects)))
    return out


# =========================================================================== 3. effects and records
async def _prepare_unconfirmed_chunk(
    r: aredis.Redis, s: Settings, keys: Keys, run_id: str, args: dict[str, Any], items_to: int
) -> tuple[ev.ChunkPrepared, Run]:
    """A run whose worker recorded a chunk (phase one) under its lease and then died: the
    lease is gone, the chunk neither applied nor voided."""
    prepared, run = await prepare_chunk_under_lease(
        r, s, keys, run_id, args, items_to, holder="ghost-worker"
    )
    await r.delete(keys.lease(run_id))  # the ghost is gone: its lease expired
    return prepared, run


def _expected_network(run_id: str, args: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """element -> (value, stamp) after an uninterrupted run: synthetic is deterministic
    per item, and effect n is the n-th change in item order."""
    scenario = load_registry().get("synthetic")
    params = scenario.validate(args)
    result = run_chunk(scenario, params, run_id, 0, 10**9, 3600.0, lambda _e: None)
    out: dict[str, tuple[str, str]] = {}
    for n, (element, after) in enumerate(result.changes, start=1):
        out[element] = (after, f"{run_id}/{n}")
    return out


async def _network_of(r: aredis.Redis, keys: Keys, run_id: str) -> dict[str, tuple[str, str]]:
    network = NetworkStore(r, keys)
    values = await network.elements()
    stamps = await network.all_stamps()
    return {
        name: (value, stamps[name])
        for name, value in values.items()
        if name.startswith((f"n:{run_id}:", f"e:{run_id}:"))
    }


async def _outbox_of(r: aredis.Redis, keys: Keys, run_id: str) -> list[str]:
    return [
        f[Fields.MESSAGE].decode()
        for _, f in replies.entries(await r.xrange(keys.outbox))
        if f[Fields.RUN_ID] == run_id.encode()
    ]


def test_a_chunk_recorded_but_never_applied_is_voided_and_redone(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        keys = Keys.of(s)
        args = {"items": 10, "edges_per_item": 1, "notify_every": 2}
        async with connect(s) as r, Client.connect(settings=s) as client:
            run_id = new_id()
            prepared, _ = await _prepare_unconfirmed_chunk(r, s, keys, run_id, args, items_to=4)
            voided_stamps = {
                f"{run_id}/{n}"
                for n in range(prepared.first_effect, prepared.first_effect + len(prepared.effects))
            }
            assert len(prepared.notifications) == 2
            assert await _network_of(r, keys, run_id) == {}

            async with worker_running(s):
                summary = await client.wait(run_id, timeout=15, poll=0.05)
            assert summary.state == "succeeded"
            assert summary.items_processed == 10
            assert summary.effects["applied"] == _synthetic_effects(10, 1)
            assert summary.effects["irreversible"] == 5

            events = await history(r, keys, run_id)
            voided = [e for e in events if isinstance(e, ev.ChunkVoided)]
            assert [v.chunk for v in voided] == [prepared.chunk]
            assert_contiguous(chunk_ranges(events), 10)
            # None of the voided chunk's effects is on the network; its notifications
            # were not sent (only the redone chunks' ones, each once).
            network = await _network_of(r, keys, run_id)
            assert not voided_stamps & {stamp for _, stamp in network.values()}
            expected_values = {el: v for el, (v, _) in _expected_network(run_id, args).items()}
            assert {el: v for el, (v, _) in network.items()} == expected_values
            notes = await _outbox_of(r, keys, run_id)
            assert len(notes) == 5 and len(set(notes)) == 5, notes

            # A late writer (the "dead" worker waking up) cannot apply the voided chunk.
            part = keys.partition_of(f"n:{run_id}:0")
            assert await r.get(keys.net_chunk(part, f"{run_id}:{prepared.chunk}")) == b"v"
            outcome, _ = await NetworkStore(r, keys).apply_chunk(
                f"{run_id}:{prepared.chunk}",
                run_id,
                prepared.first_effect,
                prepared.effects,
                prepared.notifications,
            )
            assert outcome == "voided"
            assert await _network_of(r, keys, run_id) == network
            assert len(await _outbox_of(r, keys, run_id)) == 5

    asyncio.run(body())


def test_a_chunk_applied_but_not_confirmed_is_recorded_not_reapplied(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        keys = Keys.of(s)
        args = {"items": 10, "edges_per_item": 1, "notify_every": 2}
        async with connect(s) as r, Client.connect(settings=s) as client:
            run_id = new_id()
            prepared, _ = await _prepare_unconfirmed_chunk(r, s, keys, run_id, args, items_to=4)
            # Phase two happened; the worker died before recording ItemsProcessed.
            outcome, _ = await NetworkStore(r, keys).apply_chunk(
                f"{run_id}:{prepared.chunk}",
                run_id,
                prepared.first_effect,
                prepared.effects,
                prepared.notifications,
            )
            assert outcome == "ok"
            before = await _network_of(r, keys, run_id)
            assert len(before) == len({e.element for e in prepared.effects})

            async with worker_running(s):
                summary = await client.wait(run_id, timeout=15, poll=0.05)
            assert summary.state == "succeeded"
            assert summary.items_processed == 10
            assert summary.effects["applied"] == _synthetic_effects(10, 1)
            assert summary.effects["irreversible"] == 5

            events = await history(r, keys, run_id)
            assert not any(isinstance(e, ev.ChunkVoided) for e in events)
            confirmed = [e for e in events if isinstance(e, ev.ItemsProcessed)]
            assert confirmed[0].chunk == prepared.chunk
            assert confirmed[0].items_to == 4
            assert confirmed[0].effects == len(prepared.effects)
            ranges = chunk_ranges(events)
            assert ranges[0] == (0, 4)
            assert_contiguous(ranges, 10)
            # Exactly the network an uninterrupted run leaves, stamps included: nothing
            # applied twice, nothing renumbered; each notification sent once.
            assert await _network_of(r, keys, run_id) == _expected_network(run_id, args)
            notes = await _outbox_of(r, keys, run_id)
            assert len(notes) == 5 and len(set(notes)) == 5, notes

    asyncio.run(body())


# =========================================================================== 4. groups survive
@pytest.mark.parametrize("how", ["del-stream", "destroy-group"])
def test_a_deleted_command_stream_or_group_is_recreated(settings: Settings, how: str) -> None:
    async def body() -> None:
        s = fast(settings)
        keys = Keys.of(s)
        async with worker_running(s) as worker, Client.connect(settings=s) as client:
            r = client.redis
            warm = await client.start("synthetic", {"items": 1}, run_id=run_id_on(keys, 0))
            assert (await client.wait(warm, timeout=10, poll=0.05)).state == "succeeded"
            stream = keys.commands(0)
            if how == "del-stream":
                assert await r.delete(stream) == 1
            else:
                assert await r.xgroup_destroy(stream, keys.group) == 1
            run_id = await client.start("synthetic", {"items": 2}, run_id=run_id_on(keys, 0))
            summary = await client.wait(run_id, timeout=15, poll=0.05)
            assert summary.state == "succeeded"
            groups = await r.xinfo_groups(stream)
            assert [g["name"] for g in groups] == [keys.group.encode()]
            assert await pending_count(r, stream, keys.group) == 0
            assert all(sub.running for sub in worker.subscribers)
            # And the other shard never stopped working.
            other = await client.start("synthetic", {"items": 1}, run_id=run_id_on(keys, 1))
            assert (await client.wait(other, timeout=10, poll=0.05)).state == "succeeded"

    asyncio.run(body())


@pytest.mark.chaos
def test_commands_survive_a_redis_restart_from_its_append_only_file(
    settings: Settings, embedded_redis: EmbeddedFactory, tmp_path: Path
) -> None:
    server = embedded_redis(appendfsync="always")
    s = fast(msgspec.structs.replace(settings, redis_url=server.url))
    keys = Keys.of(s)

    async def body() -> None:
        with worker_pool(s, tmp_path) as pool:
            worker = pool.start("w1")
            async with Client.connect(settings=s) as client:
                warm = await client.start("synthetic", {"items": 1})
                assert (await client.wait(warm, timeout=20, poll=0.05)).state == "succeeded"

            # The worker stops reading (SIGSTOP); a command is published, then Redis dies.
            # (Redis may still hand it to the stopped worker's blocked XREADGROUP, which
            # never sees the reply: it is then pending for w1 and must be claimed back.)
            worker.proc.send_signal(signal.SIGSTOP)
            try:
                async with Client.connect(settings=s) as client:
                    before = await client.start_nowait("synthetic", {"items": 2})
                server.kill()
                server.restart()
            finally:
                worker.proc.send_signal(signal.SIGCONT)

            async with Client.connect(settings=s) as client:
                after = await client.start_nowait("synthetic", {"items": 2})
                for run_id in (before, after):
                    summary = await client.wait(run_id, timeout=25, poll=0.1)
                    assert summary.state == "succeeded", logs_of(pool)
                    assert summary.items_processed == 2
                assert worker.alive(), logs_of(pool)
                assert await _total_pending(client.redis, keys) == 0

    asyncio.run(body())


# =========================================================================== 5. poison messages
def test_undecodable_and_oversized_messages_are_dead_lettered_and_block_nothing(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings, max_command_bytes=2000)
        keys = Keys.of(s)
        stream = keys.commands(0)
        on_0, on_1 = run_id_on(keys, 0), run_id_on(keys, 1)
        oversized = json.dumps({"type": "StopRun", "run_id": on_0, "reason": "x" * 1990}).encode()
        assert len(oversized) > 2000
        # Any: redis-py's xadd wants dict[FieldT, EncodableT], which dict[bytes, bytes] is not.
        poison: list[tuple[dict[Any, Any], str]] = [
            ({Fields.COMMAND: b"\xff\xfe{not json"}, "malformed command"),
            ({b"x": b"1", b"y": b"\xff"}, "no 'c' field"),
            (
                {
                    Fields.COMMAND: json.dumps(
                        {"type": "StopRun", "run_id": on_0, "bogus": 1}
                    ).encode()
                },
                "unknown field `bogus`",
            ),
            ({Fields.COMMAND: json.dumps({"type": "Explode", "run_id": on_0}).encode()}, "Explode"),
            ({Fields.COMMAND: json.dumps({"type": "StopRun"}).encode()}, "run_id"),
            (
                {Fields.COMMAND: oversized},
                f"command is {len(oversized)} bytes, over the limit of 2000",
            ),
            ({Fields.COMMAND: cmd.encode_command(cmd.StopRun(run_id=on_1))}, "belongs to shard 1"),
        ]
        async with connect(s) as r, Client.connect(settings=s) as client:
            await ensure_groups(r, keys)
            sent = []
            for fields, _ in poison:
                sent.append(replies.text(await r.xadd(stream, fields)))
            good = cmd.StartRun(run_id=on_0, scenario="synthetic", args={"items": 2})
            await r.xadd(stream, {Fields.COMMAND: cmd.encode_command(good)})
            async with worker_running(s):
                summary = await client.wait(on_0, timeout=15, poll=0.05)
                assert summary.state == "succeeded"
                letters = await until(
                    lambda: _dlq_entries(r, keys, 0, len(poison)), "all poison dead-lettered"
                )
            by_source = {f[Fields.SOURCE_ID].decode(): f for _, f in letters}
            assert set(by_source) == set(sent)
            for (fields, reason), entry_id in zip(poison, sent, strict=True):
                letter = by_source[entry_id]
                assert reason in letter[Fields.REASON].decode(), (reason, letter)
                if b"c" in fields:
                    assert (
                        letter[Fields.COMMAND] == fields[Fields.COMMAND]
                    )  # the original payload, byte for byte
                else:
                    kept = json.loads(letter[Fields.COMMAND])
                    assert kept["x"] == "1" and "y" in kept
            assert await pending_count(r, stream, keys.group) == 0
            assert await client.find(on_1) is None

    asyncio.run(body())


async def _dlq_entries(
    r: aredis.Redis, keys: Keys, shard: int, n: int
) -> list[tuple[bytes, dict[bytes, bytes]]] | None:
    entries = replies.entries(await r.xrange(keys.dlq(shard)))
    return entries if len(entries) >= n else None


def test_a_command_that_keeps_failing_is_dead_lettered_then_retried_or_dropped(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings, claim_idle_ms=300, max_deliveries=2)
        keys = Keys.of(s)
        async with connect(s) as r, Client.connect(settings=s) as client:
            run_id = run_id_on(keys, 0)
            stream = keys.commands(0)
            # The run's meta hash is a string: every append fails with WRONGTYPE.
            await r.set(keys.meta(run_id), "not a hash")
            async with worker_running(s):
                start = cmd.StartRun(run_id=run_id, scenario="synthetic", args={"items": 2})
                entry_id = replies.text(
                    await r.xadd(stream, {Fields.COMMAND: cmd.encode_command(start)})
                )
                letters = await until(
                    lambda: _dlq_entries(r, keys, 0, 1),
                    "the failing command in the DLQ",
                    timeout=10,
                )
                assert len(letters) == 1
                letter_id, letter = letters[0][0].decode(), letters[0][1]
                assert letter[Fields.SOURCE_ID].decode() == entry_id
                assert letter[Fields.REASON].decode() == f"handling failed {s.max_deliveries} times"
                assert await pending_count(r, stream, keys.group) == 0

                listed = await runctl_async(s, "dlq", "list", "--json")
                assert listed.code == 0, listed
                rows = json.loads(listed.stdout)
                assert [row["id"] for row in rows] == [letter_id]
                assert rows[0]["reason"] == f"handling failed {s.max_deliveries} times"
                assert json.loads(rows[0]["payload"])["run_id"] == run_id

                # Fixed, then retried: the very same command is applied.
                await r.delete(keys.meta(run_id))
                retried = await runctl_async(s, "dlq", "retry", letter_id)
                assert retried.code == 0, retried
                assert letter_id in retried.stdout
                summary = await client.wait(run_id, timeout=15, poll=0.05)
                assert summary.state == "succeeded"
                assert await r.xlen(keys.dlq(0)) == 0

                # Drop: a garbage message is parked, then removed for good.
                await r.xadd(stream, {Fields.COMMAND: b"garbage"})
                letters = await until(lambda: _dlq_entries(r, keys, 0, 1), "garbage parked")
                garbage_id = letters[0][0].decode()
                dropped = await runctl_async(s, "dlq", "drop", garbage_id)
                assert dropped.code == 0, dropped
                assert await r.xlen(keys.dlq(0)) == 0
                empty = await runctl_async(s, "dlq", "list", "--json")
                assert json.loads(empty.stdout) == []
                missing = await runctl_async(s, "dlq", "drop", garbage_id)
                assert missing.code == 3, missing
                missing = await runctl_async(s, "dlq", "retry", garbage_id)
                assert missing.code == 3, missing

    asyncio.run(body())


# =========================================================================== 6. bounded growth
def test_upkeep_trims_only_what_every_group_has_acknowledged(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        keys = Keys.of(s)
        stream = keys.commands(0)
        async with connect(s) as r:
            await ensure_groups(r, keys)
            # A second group that has not read anything yet.
            await r.xgroup_create(stream, "audit", id="0")
            ids = []
            for _ in range(30):
                command = cmd.StopRun(run_id=run_id_on(keys, 0))  # rejected: no such run
                ids.append(
                    replies.text(
                        await r.xadd(stream, {Fields.COMMAND: cmd.encode_command(command)})
                    )
                )

            async def all_acked() -> bool:
                group = next(g for g in await r.xinfo_groups(stream) if g["name"] == b"workers")
                return bool(
                    replies.text(group["last-delivered-id"]) == ids[-1] and group["pending"] == 0
                )

            async with worker_running(s):  # its own upkeep runs too, every second
                await until(all_acked, "the worker to handle every command")
                await upkeep(r, keys, s)
            assert await r.xlen(stream) == 30, "trimmed past a group that read nothing"

            # "audit" reads 10, acknowledges 4: 6 pending, 20 undelivered.
            got = replies.streams(await r.xreadgroup("audit", "a1", {stream: ">"}, count=10))
            assert [i.decode() for i, _ in got[0][1]] == ids[:10]
            await r.xack(stream, "audit", *ids[:4])
            await upkeep(r, keys, s)
            remaining = [i.decode() for i, _ in replies.entries(await r.xrange(stream))]
            assert remaining == ids[4:]

            # No other group: trimmed to nothing.
            await r.xgroup_destroy(stream, "audit")
            await upkeep(r, keys, s)
            assert await r.xlen(stream) == 0

            # An entry pending in "workers" (its reader died) and one not yet delivered
            # are both kept.
            pending_id = replies.text(await r.xadd(stream, {Fields.COMMAND: b"{}"}))
            await r.xreadgroup(keys.group, "dead-1", {stream: ">"}, count=1)
            undelivered_id = replies.text(await r.xadd(stream, {Fields.COMMAND: b"{}"}))
            await upkeep(r, keys, s)
            assert [i.decode() for i, _ in replies.entries(await r.xrange(stream))] == [
                pending_id,
                undelivered_id,
            ]

    asyncio.run(body())


def test_upkeep_caps_a_feed_no_group_reads_and_spares_one_a_group_reads(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = msgspec.structs.replace(settings, feed_maxlen=100)
        keys = Keys.of(s)
        async with connect(s) as r:
            for shard in range(s.shards):
                async with r.pipeline(transaction=False) as pipe:
                    for i in range(350):
                        pipe.xadd(keys.feed(shard), {"r": "x", "v": i, "e": b"{}"})
                    await pipe.execute()
            # Shard 1's feed is read by a group that has read nothing yet.
            await r.xgroup_create(keys.feed(1), "projector", id="0")
            await upkeep(r, keys, s)
            # Trimmed approximately (whole stream nodes): about feed_maxlen entries left.
            assert s.feed_maxlen <= await r.xlen(keys.feed(0)) <= 2 * s.feed_maxlen
            assert await r.xlen(keys.feed(1)) == 350

    asyncio.run(body())


def test_a_deleted_run_leaves_only_its_tombstone(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        keys = Keys.of(s)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start("synthetic", {"items": 5})
            assert (await client.wait(run_id, timeout=10, poll=0.05)).state == "succeeded"
            outcome = await client.execute(
                cmd.DeleteRun(run_id=run_id, mode="keep_effects"), timeout=10
            )
            assert not outcome.rejected, outcome.reason
            r = client.redis
            assert await r.exists(*keys.run_keys(run_id)) == 0
            shard = keys.shard_of(run_id)
            assert await r.hexists(keys.index(shard), run_id) == 0
            assert await r.zscore(keys.runnable(shard), run_id) is None
            tomb = await client.store.tombstone(run_id)
            assert tomb is not None and tomb.effects_left == _synthetic_effects(5, 2)
            leftovers = [k async for k in r.scan_iter(match=f"{s.prefix}:*{run_id}*", count=1000)]
            assert leftovers == [], leftovers

    asyncio.run(body())


def test_upkeep_does_not_fail_while_commands_are_being_acknowledged(settings: Settings) -> None:
    """Upkeep runs beside live consumers: an entry acknowledged between its looking at a
    group and at the group's pending list must not make it fail (a failing upkeep ends
    the worker's main loop)."""

    async def body() -> None:
        keys = Keys.of(settings)
        stream = keys.commands(0)
        async with connect(settings) as r, connect(settings) as churner:
            await ensure_groups(r, keys)
            stop = asyncio.Event()

            async def churn() -> None:
                while not stop.is_set():
                    entry = await churner.xadd(stream, {Fields.COMMAND: b"{}"})
                    await churner.xreadgroup(keys.group, "busy-1", {stream: ">"}, count=10)
                    await churner.xack(stream, keys.group, entry)

            task = asyncio.create_task(churn())
            try:
                deadline = time.monotonic() + 2.0
                rounds = 0
                while time.monotonic() < deadline:
                    await upkeep(r, keys, settings)
                    rounds += 1
            finally:
                stop.set()
                await task
            assert rounds > 0
            await upkeep(r, keys, settings)
            assert await r.xlen(stream) == 0

    asyncio.run(body())


def test_upkeep_removes_idle_consumers_without_pending_entries_only(settings: Settings) -> None:
    async def body() -> None:
        s = msgspec.structs.replace(settings, stale_consumer_ms=300)
        keys = Keys.of(s)
        stream = keys.commands(0)
        async with connect(s) as r:
            await ensure_groups(r, keys)
            await r.xgroup_createconsumer(stream, keys.group, "gone-1")
            await r.xgroup_createconsumer(stream, keys.group, "me")
            await heartbeat(r, keys, s, "me")  # a live worker: never removed
            await r.xadd(stream, {Fields.COMMAND: b"{}"})
            await r.xreadgroup(keys.group, "holder-1", {stream: ">"}, count=1)

            async def consumers() -> dict[str, dict[str, Any]]:
                rows = await r.xinfo_consumers(stream, keys.group)
                return {
                    (c["name"].decode() if isinstance(c["name"], bytes) else c["name"]): c
                    for c in rows
                }

            await upkeep(r, keys, s)
            assert set(await consumers()) == {"gone-1", "me", "holder-1"}, "removed too early"

            async def all_idle() -> bool:
                return all(c["idle"] >= s.stale_consumer_ms for c in (await consumers()).values())

            await until(all_idle, "every consumer to be idle past stale_consumer_ms")
            await upkeep(r, keys, s)
            left = await consumers()
            assert set(left) == {"me", "holder-1"}
            assert left["holder-1"]["pending"] == 1

    asyncio.run(body())


def test_loading_a_long_run_starts_from_its_snapshot(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings, chunk_items=2, chunk_seconds=10.0)
        keys = Keys.of(s)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start("synthetic", {"items": 120, "edges_per_item": 0})
            summary = await client.wait(run_id, timeout=20, poll=0.05)
        assert summary.state == "succeeded"
        async with connect(s) as r:
            store = EventStore(r, keys, s)
            everything = replies.entries(await r.xrange(keys.events(run_id)))
            assert len(everything) > 2 * s.snapshot_every
            snap_id = await r.hget(keys.meta(run_id), Fields.SNAPSHOT_ID)
            assert isinstance(snap_id, bytes) and await r.exists(keys.snapshot(run_id))
            tail = replies.entries(await r.xrange(keys.events(run_id), b"(" + snap_id, "+"))
            assert len(tail) < s.snapshot_every

            full = RunState(run_id=run_id)
            for _, fields in everything:
                apply(full, ev.decode_event(fields[Fields.EVENT]))
            loaded = await store.load(run_id)
            assert msgspec.to_builtins(loaded.state) == msgspec.to_builtins(full)

            # The events the snapshot covers are not read at all: without them, the same run.
            covered = [i for i, _ in everything if _stream_id(i) <= _stream_id(snap_id)]
            assert await r.xdel(keys.events(run_id), *covered) == len(covered)
            again = await store.load(run_id)
            assert msgspec.to_builtins(again.state) == msgspec.to_builtins(full)

    asyncio.run(body())


def _stream_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.decode().partition("-")
    return int(ms), int(seq)


# =========================================================================== 7. graceful shutdown
def test_sigterm_hands_back_the_run_and_leaves_nothing_pending(
    settings: Settings, tmp_path: Path
) -> None:
    async def body() -> None:
        # A long lease: the run can only move on quickly if the lease was handed back.
        s = fast(settings, lease_ms=20_000, shutdown_grace_s=3.0)
        keys = Keys.of(s)
        items = 200
        with worker_pool(s, tmp_path) as pool:
            w1 = pool.start("w1")
            async with Client.connect(settings=s) as client:
                r = client.redis
                run_id = await client.start(
                    "synthetic", {"items": items, "edges_per_item": 0, "delay_ms": 20}
                )

                async def w1_midway() -> bool:
                    found = await client.find(run_id)
                    return (
                        found is not None
                        and found.items_processed > 0
                        and await _lease_owner(r, keys, run_id) == "w1"
                    )

                await until(w1_midway, "w1 to drive the run", timeout=20)
                w2 = pool.start("w2")

                # (A blocked XREADGROUP creates no consumer on Redis 7.0: ask its log.)
                await asyncio.to_thread(w2.wait_ready)
                # A command in hand when the signal comes: it must be finished, not left.
                stop_later = cmd.CancelRun(run_id=run_id_on(keys, 0))
                await client.send(stop_later)
                w1.proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                code = await asyncio.to_thread(w1.proc.wait, s.shutdown_grace_s + 10)
                took = time.monotonic() - signalled
                assert code == 0, logs_of(pool)
                assert took < s.shutdown_grace_s + 2.5, (took, logs_of(pool))
                assert await _total_pending(r, keys, "w1") == 0
                assert await _lease_owner(r, keys, run_id) != "w1"
                at_exit = (await client.get(run_id)).items_processed
                assert at_exit < items

                async def moved_on() -> bool:
                    found = await client.get(run_id)
                    return found.items_processed > at_exit or found.state == "succeeded"

                await until(moved_on, "w2 to continue the run", timeout=5)
                assert time.monotonic() - signalled < s.lease_ms / 1000 / 2
                summary = await client.wait(run_id, timeout=30, poll=0.1)
                assert summary.state == "succeeded", logs_of(pool)
                assert_contiguous(chunk_ranges(await history(r, keys, run_id)), items)
                assert "worker_stopped" in w1.log()

    asyncio.run(body())


def test_sigterm_during_a_long_item_still_exits_within_the_grace(
    settings: Settings, tmp_path: Path
) -> None:
    """The grace bounds the exit even when the item in hand takes longer: the run is safe
    anyway (its lease is handed back; the unfinished chunk was never recorded)."""

    async def body() -> None:
        s = fast(settings, lease_ms=20_000, shutdown_grace_s=1.5)
        keys = Keys.of(s)
        with worker_pool(s, tmp_path) as pool:
            w1 = pool.start("w1")
            async with Client.connect(settings=s) as client:
                r = client.redis
                run_id = await client.start(
                    "synthetic", {"items": 3, "edges_per_item": 0, "delay_ms": 8000}
                )
                await until(lambda: _lease_owner(r, keys, run_id), "w1 to take the run", timeout=20)
                w1.proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                code = await asyncio.to_thread(w1.proc.wait, 30)
                took = time.monotonic() - signalled
                assert code == 0, logs_of(pool)
                assert await _lease_owner(r, keys, run_id) is None
                run = await client.store.load(run_id)
                assert run.state.pending is None and run.state.items_processed == 0
                assert took < s.shutdown_grace_s + 1.5, (
                    f"exited {took:.1f}s after SIGTERM; RUNSTREAM_SHUTDOWN_GRACE_S="
                    f"{s.shutdown_grace_s}\n{logs_of(pool)}"
                )

    asyncio.run(body())


# =========================================================================== runctl exit codes
def test_runctl_start_that_is_never_accepted_exits_8_no_worker(settings: Settings) -> None:
    """No worker is running (one published its scenarios, then went away): the command is
    published but never accepted; that is exit 8 ("no worker is running", the shared
    convention), not 4 ("Redis unreachable"). (No worker ever published: 8 too, see
    test_catalog; a worker that runs but never takes it: 5, see test_runctl_waits.)"""

    async def body() -> None:
        async with connect(settings) as r:
            keys = Keys.of(settings)
            await catalog.publish(r, keys, load_registry(), "gone-worker")
        result = await runctl_async(settings, "start", "synthetic", "--timeout", "1")
        assert result.code == 8, result
        assert "no worker is running" in result.stderr, result
        assert "cannot reach Redis" not in result.stderr, result

    asyncio.run(body())

"""Dead letters are bounded: a letter keeps a prefix of its payload with the payload's size
and sha256, and the stream is capped by count and by age."""

from __future__ import annotations

import asyncio
import hashlib
import os

import msgspec
import redis.asyncio as aredis

from runstream.contracts import commands as cmd
from runstream.keys import Fields, Keys
from runstream.settings import Settings
from runstream.store import dlq, replies
from runstream_worker.app import ensure_groups
from runstream_worker.upkeep import upkeep

from .support import connect, fast, pending_count, run_id_on, runctl_async, until, worker_running


async def _letters(r: aredis.Redis, keys: Keys, n: int) -> list[dlq.DeadLetter] | None:
    letters = await dlq.list_letters(r, keys)
    return letters if len(letters) >= n else None


def test_a_5mb_garbage_message_costs_under_10kb_and_cannot_be_retried(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings)  # the default dlq_keep_bytes
        keys = Keys(s.prefix, s.shards)
        stream = keys.commands(0)
        garbage = b"\xff" + os.urandom(5 * 1024 * 1024)
        async with connect(s) as r:
            await ensure_groups(r, keys)
            entry_id = replies.text(await r.xadd(stream, {Fields.COMMAND: garbage}))
            async with worker_running(s):
                letters = await until(lambda: _letters(r, keys, 1), "the garbage parked")
                assert await pending_count(r, stream, keys.group) == 0
            letter = letters[0]
            assert letter.source_id == entry_id
            assert "over the limit" in letter.reason
            assert letter.truncated
            assert letter.size == len(garbage)
            assert letter.sha256 == hashlib.sha256(garbage).hexdigest()
            raw = replies.entries(await r.xrange(keys.dlq(0)))
            assert raw[0][1][Fields.COMMAND] == garbage[: s.dlq_keep_bytes]
            assert (await r.memory_usage(keys.dlq(0), samples=0) or 0) < 10_000

            refused = await runctl_async(s, "dlq", "retry", letter.id)
            assert refused.code == 1, refused
            assert "cannot be retried" in refused.stderr
            assert f"{len(garbage)} bytes" in refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1
            assert await r.xlen(keys.dlq(0)) == 1  # the letter stays
            assert (
                replies.entries(await r.xrange(stream, "(" + entry_id)) == []
            )  # nothing published again

    asyncio.run(body())


def test_a_small_letter_is_kept_whole_and_retried(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        keys = Keys(s.prefix, s.shards)
        run_id = run_id_on(keys, 0)
        payload = cmd.encode_command(cmd.StopRun(run_id=run_id))
        async with connect(s) as r:
            await ensure_groups(r, keys)
            await dlq.park(r, keys, s, 0, "1-1", {Fields.COMMAND: payload}, "testing")
            (letter,) = await dlq.list_letters(r, keys)
            assert not letter.truncated
            assert letter.payload.encode() == payload and letter.size == len(payload)
            await dlq.retry(r, keys, letter)
            assert await r.xlen(keys.dlq(0)) == 0
            assert [
                f[Fields.COMMAND] for _, f in replies.entries(await r.xrange(keys.commands(0)))
            ] == [payload]

    asyncio.run(body())


def test_the_dead_letter_stream_is_capped_by_count_and_age(settings: Settings) -> None:
    async def body() -> None:
        s = msgspec.structs.replace(fast(settings), dlq_maxlen=5, dlq_max_age_s=3600)
        keys = Keys(s.prefix, s.shards)
        stream = keys.dlq(0)
        async with connect(s) as r:
            await ensure_groups(r, keys)
            # Letters older than the age cap (ids are milliseconds since the epoch).
            await r.xadd(stream, {"reason": "ancient", "c": b"x"}, id="1000-0")
            await r.xadd(stream, {"reason": "ancient", "c": b"y"}, id="2000-0")
            await dlq.park(r, keys, s, 0, "1-1", {Fields.COMMAND: b"garbage 0"}, "bad")
            # Trimmed in the same transaction as the add.
            assert [f[Fields.REASON] for _, f in replies.entries(await r.xrange(stream))] == [
                b"bad"
            ]
            for i in range(1, 9):
                await dlq.park(
                    r, keys, s, 0, f"1-{i + 1}", {Fields.COMMAND: b"garbage %d" % i}, "bad"
                )
            kept = [f[Fields.COMMAND] for _, f in replies.entries(await r.xrange(stream))]
            assert kept == [b"garbage %d" % i for i in range(4, 9)]

            # Upkeep ages letters out even when no new one arrives.
            await r.xadd(keys.dlq(1), {"reason": "ancient", "c": b"z"}, id="3000-0")
            await upkeep(r, keys, s)
            assert await r.xlen(stream) == 5
            assert await r.xlen(keys.dlq(1)) == 0

    asyncio.run(body())

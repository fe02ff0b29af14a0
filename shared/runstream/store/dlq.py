"""The dead-letter streams: messages that could not be handled, with why, kept for a person.

One per shard (``<shard>:dlq``), so parking a message and acking it is one transaction.
"""

from __future__ import annotations

import contextlib
import time

import msgspec
import redis.asyncio as aredis

from runstream.contracts.commands import BadCommand, decode_command
from runstream.keys import Keys
from runstream.store import replies

DLQ_MAXLEN = 100_000


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    shard: int
    source_id: str
    reason: str
    at: float
    payload: str


async def park(
    redis: aredis.Redis,
    keys: Keys,
    shard: int,
    entry_id: str,
    fields: dict[bytes, bytes],
    reason: str,
) -> None:
    """Move one command message to the shard's dead-letter stream and ack it, atomically."""
    payload = fields.get(b"c")
    if payload is None:
        payload = msgspec.json.encode(
            {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(
            keys.dlq(shard),
            {"source_id": entry_id, "reason": reason, "at": f"{time.time():.3f}", "c": payload},
            maxlen=DLQ_MAXLEN,
            approximate=True,
        )
        pipe.xack(keys.commands(shard), keys.group, entry_id)
        await pipe.execute()


def _letter(shard: int, entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    return DeadLetter(
        id=entry_id.decode(),
        shard=shard,
        source_id=fields.get(b"source_id", b"").decode(),
        reason=fields.get(b"reason", b"").decode(errors="replace"),
        at=float(fields.get(b"at", b"0")),
        payload=fields.get(b"c", b"").decode(errors="replace"),
    )


async def list_letters(redis: aredis.Redis, keys: Keys, count: int = 1000) -> list[DeadLetter]:
    out: list[DeadLetter] = []
    for shard in range(keys.shards):
        for entry_id, fields in replies.entries(await redis.xrange(keys.dlq(shard), count=count)):
            out.append(_letter(shard, entry_id, fields))
    return sorted(out, key=lambda d: (d.at, d.id))


async def find(redis: aredis.Redis, keys: Keys, letter_id: str) -> DeadLetter | None:
    for shard in range(keys.shards):
        found = replies.entries(await redis.xrange(keys.dlq(shard), letter_id, letter_id))
        if found:
            return _letter(shard, *found[0])
    return None


async def retry(redis: aredis.Redis, keys: Keys, letter: DeadLetter) -> str:
    """Publish the original payload again, on the shard of the run it names (or the stream
    it came from), then remove the letter. A command applied before is deduplicated by its
    command_id, so a retry never applies anything twice."""
    found = replies.entries(await redis.xrange(keys.dlq(letter.shard), letter.id, letter.id))
    if not found:
        raise LookupError(f"no dead-lettered message {letter.id}")
    payload = found[0][1].get(b"c", b"")
    shard = letter.shard
    with contextlib.suppress(BadCommand):
        shard = keys.shard_of(decode_command(payload).run_id)
    # Two steps, not one transaction: the two streams may be in different cluster slots.
    new_id = await redis.xadd(keys.commands(shard), {"c": payload})
    await redis.xdel(keys.dlq(letter.shard), letter.id)
    return new_id.decode() if isinstance(new_id, bytes) else str(new_id)


async def drop(redis: aredis.Redis, keys: Keys, letter: DeadLetter) -> None:
    await redis.xdel(keys.dlq(letter.shard), letter.id)

"""The dead-letter streams: messages that could not be handled, with why, kept for a person.

One per shard (``<shard>:dlq``), so parking a message and acking it is one script call,
which parks it only if its XACK still acknowledges the entry (once, whoever claimed it).
What a letter keeps is bounded: the first ``dlq_keep_bytes`` of the payload, its full
size and sha256, and whether it was cut (``truncated``); a cut letter cannot be retried.
The stream is capped by count (``dlq_maxlen``) and by age (``dlq_max_age_s``), trimmed in
the same call as each add and again by upkeep, so garbage can't grow it for ever.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

import msgspec
import redis.asyncio as aredis
from redis.typing import EncodableT, FieldT

from runstream import lua
from runstream.contracts.commands import BadCommand, decode_command
from runstream.keys import Fields, Keys
from runstream.settings import Settings
from runstream.store import replies

# A reason comes from an error message; it is bounded too (it may quote the payload).
MAX_REASON_CHARS = 2000


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    shard: int
    source_id: str
    reason: str
    at: float
    payload: str
    # The original payload's size and sha256; ``payload`` is only its first bytes when
    # ``truncated``.
    size: int = 0
    sha256: str = ""
    truncated: bool = False


class NotRetryable(ValueError):
    """The letter kept only a prefix of its payload: there is nothing whole to publish."""


def _min_id(settings: Settings, now: float) -> str | None:
    """Entries older than the age cap: their ids (milliseconds) fall below this one."""
    if settings.dlq_max_age_s <= 0:
        return None
    return f"{int((now - settings.dlq_max_age_s) * 1000)}-0"


async def park(
    redis: aredis.Redis,
    keys: Keys,
    settings: Settings,
    shard: int,
    entry_id: str,
    fields: dict[bytes, bytes],
    reason: str,
) -> bool:
    """Move one command message to the shard's dead-letter stream and ack it, atomically
    and once (False: another consumer, which claimed the entry, had parked or handled it);
    the stream is trimmed to its caps in the same call."""
    payload = fields.get(Fields.COMMAND)
    if payload is None:
        payload = msgspec.json.encode(
            {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        )
    kept = payload[: settings.dlq_keep_bytes]
    now = time.time()
    letter: dict[FieldT, EncodableT] = {
        Fields.SOURCE_ID: entry_id,
        Fields.REASON: reason[:MAX_REASON_CHARS],
        Fields.AT: f"{now:.3f}",
        Fields.COMMAND: kept,
        Fields.SIZE: str(len(payload)),
        Fields.SHA256: hashlib.sha256(payload).hexdigest(),
        Fields.TRUNCATED: "1" if len(kept) < len(payload) else "0",
    }
    min_id = _min_id(settings, now) or ""
    pairs = [part for name, value in letter.items() for part in (name, value)]
    # Exact trims: each add removes at most a few entries, and a cap should mean it.
    script = redis.register_script(lua.source("dlq_park"))
    parked = await script(
        keys=[keys.commands(shard), keys.dlq(shard)],
        args=[keys.group, entry_id, settings.dlq_maxlen, min_id, *pairs],
    )
    return bool(parked)


async def trim(redis: aredis.Redis, keys: Keys, settings: Settings, shard: int) -> int:
    """Enforce the caps without an add (upkeep): letters age out even when none arrive."""
    stream = keys.dlq(shard)
    trimmed = int(await redis.xtrim(stream, maxlen=settings.dlq_maxlen, approximate=False))
    min_id = _min_id(settings, time.time())
    if min_id is not None:
        trimmed += int(await redis.xtrim(stream, minid=min_id, approximate=False))
    return trimmed


def _letter(shard: int, entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    payload = fields.get(Fields.COMMAND, b"")
    return DeadLetter(
        id=entry_id.decode(),
        shard=shard,
        source_id=fields.get(Fields.SOURCE_ID, b"").decode(),
        reason=fields.get(Fields.REASON, b"").decode(errors="replace"),
        at=float(fields.get(Fields.AT, b"0")),
        payload=payload.decode(errors="replace"),
        # Letters parked before sizes were recorded kept their whole payload.
        size=int(fields.get(Fields.SIZE, len(payload))),
        sha256=fields.get(Fields.SHA256, b"").decode() or hashlib.sha256(payload).hexdigest(),
        truncated=fields.get(Fields.TRUNCATED, b"0") == b"1",
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
    command_id, so a retry never applies anything twice. A truncated letter raises
    NotRetryable and stays."""
    found = replies.entries(await redis.xrange(keys.dlq(letter.shard), letter.id, letter.id))
    if not found:
        raise LookupError(f"no dead-lettered message {letter.id}")
    fields = found[0][1]
    payload = fields.get(Fields.COMMAND, b"")
    if fields.get(Fields.TRUNCATED) == b"1":
        raise NotRetryable(
            f"dead letter {letter.id} cannot be retried: only the first {len(payload)} of its "
            f"{int(fields.get(b'size', b'0'))} bytes were kept (sha256 "
            f"{fields.get(b'sha256', b'').decode()}); drop it with 'runctl dlq drop {letter.id}'"
        )
    shard = letter.shard
    with contextlib.suppress(BadCommand):
        shard = keys.shard_of(decode_command(payload).run_id)
    # Two steps, not one transaction: the two streams may be in different cluster slots.
    new_id = await redis.xadd(keys.commands(shard), {Fields.COMMAND: payload})
    await redis.xdel(keys.dlq(letter.shard), letter.id)
    return new_id.decode() if isinstance(new_id, bytes) else str(new_id)


async def drop(redis: aredis.Redis, keys: Keys, letter: DeadLetter) -> None:
    await redis.xdel(keys.dlq(letter.shard), letter.id)

"""Following the shards' event feeds from a position, for subscribers (the API's /events).

Each shard has its own feed stream; a position in it is the stream entry id of the last
event seen ("0-0": before the first). Following several shards needs one position per
shard: a ``Cursor`` holds them and prints as the entry ids joined by commas, in shard
order (one shard: just the entry id), so a subscriber can resume exactly where it was.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import msgspec
import redis.asyncio as aredis

from runstream import multi_read
from runstream.contracts import events as ev
from runstream.keys import Fields, Keys
from runstream.store import replies

_ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}\Z")
START = "0-0"


class BadPosition(ValueError):
    """A feed position that is not one entry id per shard (the message says what is)."""


def entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


@dataclass(frozen=True)
class Cursor:
    """Where a subscriber stands in each shard's feed it follows."""

    positions: dict[int, str]

    def text(self) -> str:
        return ",".join(self.positions[shard] for shard in sorted(self.positions))

    def moved(self, shard: int, entry_id: str) -> Cursor:
        return Cursor({**self.positions, shard: entry_id})

    @classmethod
    def parse(cls, text: str, shards: Sequence[int]) -> Cursor:
        """A printed cursor for these shards; "0" alone means the start of every feed."""
        text = text.strip()
        if text == "0":
            return cls(dict.fromkeys(shards, START))
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != len(shards):
            raise BadPosition(
                f"{text[:60]!r} is no position here: expected {len(shards)} feed entry id(s) "
                f"separated by commas (as sent as the event id), got {len(parts)}"
            )
        for part in parts:
            if not _ENTRY_ID.match(part):
                raise BadPosition(f"{part[:40]!r} is not a feed entry id such as 1700000000000-0")
        return cls(dict(zip(sorted(shards), parts, strict=True)))


@dataclass(frozen=True)
class FeedEvent:
    """One event off a feed, with the cursor that resumes right after it."""

    cursor: Cursor
    shard: int
    entry_id: str
    run_id: str
    version: int
    event: ev.Event


@dataclass(frozen=True)
class FeedGap:
    """Entries after the cursor's position in ``shard`` were trimmed from the feed before
    they were read: the subscriber missed some (the runs' histories still have them)."""

    shard: int
    after: str
    trimmed_through: str


async def newest(redis: aredis.Redis, keys: Keys, shards: Sequence[int]) -> Cursor:
    """The cursor at the newest entry of each shard's feed: follow from now on."""
    async with redis.pipeline(transaction=False) as pipe:
        for shard in shards:
            pipe.xrevrange(keys.feed(shard), count=1)
        replies_ = await pipe.execute()
    return Cursor(
        {
            shard: (last[0][0].decode() if (last := replies.entries(reply)) else START)
            for shard, reply in zip(shards, replies_, strict=True)
        }
    )


async def gaps(redis: aredis.Redis, keys: Keys, cursor: Cursor) -> list[FeedGap]:
    """The shards whose feed lost entries after the cursor's position (trimmed unread)."""
    found = []
    for shard, position in cursor.positions.items():
        if position == START:
            continue  # from the start: whatever is kept is all there is
        try:
            info = await redis.xinfo_stream(keys.feed(shard))
        except aredis.ResponseError:
            continue  # no feed yet: nothing lost
        deleted = info.get("max-deleted-entry-id")
        deleted = replies.text(deleted) if deleted is not None else START
        if entry_order(deleted) > entry_order(position):
            found.append(FeedGap(shard, position, deleted))
    return found


async def follow(
    redis: aredis.Redis,
    keys: Keys,
    cursor: Cursor,
    *,
    block_ms: int = 1_000,
    run_id: str | None = None,
    batch: int = 500,
) -> AsyncIterator[FeedEvent | None]:
    """The feeds' events after the cursor, as they come (one run's only, with ``run_id``);
    ``None`` after ``block_ms`` without any (a subscriber's cue to check on its client).
    Keep ``block_ms`` under the Redis client's socket timeout (redis-py's default: 5 s)."""
    while True:
        streams: dict[bytes | str | memoryview, int | bytes | str | memoryview] = {
            keys.feed(shard): position for shard, position in cursor.positions.items()
        }
        shard_of_feed = {keys.feed(shard).encode(): shard for shard in cursor.positions}
        reply = replies.streams(await multi_read.xread(redis, streams, count=batch, block=block_ms))
        if not reply:
            yield None
            continue
        for feed_name, entries in reply:
            shard = shard_of_feed[feed_name]
            for raw_id, fields in entries:
                entry_id = raw_id.decode()
                cursor = cursor.moved(shard, entry_id)
                run = fields[Fields.RUN].decode()
                if run_id is not None and run != run_id:
                    continue
                try:
                    event = ev.decode_event(fields[Fields.EVENT])
                except msgspec.DecodeError:
                    continue  # written by a newer version: a subscriber goes on past it
                yield FeedEvent(
                    cursor=cursor,
                    shard=shard,
                    entry_id=entry_id,
                    run_id=run,
                    version=int(fields.get(Fields.VERSION, b"0")),
                    event=event,
                )

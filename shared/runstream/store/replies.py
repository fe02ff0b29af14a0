"""Typed views of redis-py replies, as runstream's clients receive them.

redis-py types each reply for every way a client can be set up, so a value is
``bytes | str`` and a stream entry's id or fields may be ``None``. runstream's clients keep
redis-py's defaults: ``decode_responses=False`` (values are bytes) and RESP2-shaped replies
(``legacy_responses=True``; XREAD gives ``[[stream, entries], ...]``). XRANGE and XREVRANGE
never return an entry without fields (only XCLAIM/XAUTOCLAIM can, for deleted entries).
These helpers narrow the replies accordingly, in one place; they change no value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from redis.typing import StreamRangeResponse, XReadGroupResponse, XReadResponse

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry: its id and its fields."""


def text(value: bytes | str) -> str:
    """A reply value as text."""
    return value.decode() if isinstance(value, bytes) else value


def entries(reply: StreamRangeResponse | None) -> list[Entry]:
    """An XRANGE or XREVRANGE reply: its entries, oldest or newest first as asked."""
    return cast(list[Entry], reply or [])


def streams(reply: XReadResponse | XReadGroupResponse) -> list[tuple[bytes, list[Entry]]]:
    """An XREAD or XREADGROUP reply: each stream read, with its new entries."""
    return cast(list[tuple[bytes, list[Entry]]], reply)

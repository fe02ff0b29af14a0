"""Commands packed by hiredis come out byte for byte as redis-py's own packer makes them."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aredis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from runstream.redis_packing import use_hiredis_packing

CASES: list[tuple[Any, ...]] = [
    ("SET", "k", "v"),
    ("EVALSHA", "a" * 40, 2, "k1", "k2", b"\x00\xff" * 5000, 1795443568.96156, -3, 2**70),
    ("SCRIPT LOAD", "return 1"),  # a command name of two words
    (b"CLIENT SETNAME", "w"),
    ("HSET", "h", "é", 0.1, float("inf"), 1e-300, bytearray(b"ab"), memoryview(b"cd")),
]


@pytest.mark.parametrize("args", CASES)
def test_the_same_bytes_as_redis_pys_packer(args: tuple[Any, ...]) -> None:
    client = use_hiredis_packing(aredis.Redis())
    packed = client.connection_pool.connection_class().pack_command(*args)
    assert b"".join(packed) == b"".join(Connection().pack_command(*args))


def test_what_redis_py_refuses_is_still_refused() -> None:
    client = use_hiredis_packing(aredis.Redis())
    with pytest.raises(DataError):
        client.connection_pool.connection_class().pack_command("SET", "k", True)


def test_the_connection_kind_the_url_chose_is_kept() -> None:
    client = use_hiredis_packing(aredis.Redis.from_url("unix:///tmp/redis.sock"))
    assert issubclass(client.connection_pool.connection_class, UnixDomainSocketConnection)
    assert use_hiredis_packing(client).connection_pool.connection_class.__name__ == (
        "HiredisUnixDomainSocketConnection"
    )

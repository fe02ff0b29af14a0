"""Commands packed by hiredis come out byte for byte as redis-py's own packer makes them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aredis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

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


def test_a_write_the_server_never_reads_times_out_as_redis_pys_does() -> None:
    """The write's bound (socket_timeout) holds without wait_for: a server that accepts
    but never reads fills the socket's buffers, and the write ends in redis-py's
    TimeoutError after about socket_timeout, the connection dropped."""

    async def body() -> None:
        accepted: list[asyncio.StreamWriter] = []

        async def never_read(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)  # kept open, never read

        server = await asyncio.start_server(never_read, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = use_hiredis_packing(aredis.Redis(port=port, socket_timeout=0.5))
        conn: Any = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        conn.on_connect_check_health = _no_handshake.__get__(conn)
        written: list[int] = []
        write = conn._send_packed_command

        async def counted(command: list[bytes]) -> None:
            written.append(sum(map(len, command)))
            await write(command)

        conn._send_packed_command = counted
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError, match="Timeout writing to socket"):
            await conn.send_packed_command([b"x" * (64 * 1024 * 1024)])
        assert 0.4 <= time.monotonic() - started < 5
        assert written == [64 * 1024 * 1024]  # the big write itself timed out
        assert not conn.is_connected
        assert conn.socket_timeout == 0.5  # given back for the next command
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(body())


async def _no_handshake(self: Any, check_health: bool = True) -> None:
    """The silent server answers no HELLO: the test connection skips it."""

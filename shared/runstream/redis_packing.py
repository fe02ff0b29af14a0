"""Commands packed by hiredis on an asyncio client, as redis-py's blocking client does.

redis-py's asyncio connections pack every command in Python, re-joining the buffer at each
argument; the blocking client hands the arguments to hiredis when it is installed. An
append script call carries some 30 arguments and several KB, so the Python packing was a
tenth of the worker's time. ``use_hiredis_packing`` gives a client's connections the
hiredis packer, producing the same bytes as redis-py's: floats written as its encoder
writes them (``repr``), a command name with a space split into words; anything hiredis
does not take is left to redis-py's own packer (and its errors). (hiredis comes with the
``redis[hiredis]`` dependency.)

The same connections bound each write by ``socket_timeout`` with ``asyncio.timeout``
rather than redis-py's ``asyncio.wait_for``, which on Python 3.11 runs every write in a
task of its own: a task and an extra turn of the event loop per command (measured: a
tenth of the worker's event loop, ~6% of runs/s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import hiredis
import redis.asyncio as aredis
import redis.exceptions
from redis.asyncio.connection import AbstractConnection


class _HiredisPacking(AbstractConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        try:
            packed = hiredis.pack_command(
                cast(Any, tuple(repr(a) if type(a) is float else a for a in args))
            )
        except TypeError:
            return super().pack_command(*args)
        return [packed]

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        timeout = self.socket_timeout
        if not timeout:
            return await super().send_packed_command(command, check_health)
        # Connecting and the health check as redis-py does them, with its own timeouts;
        # then, without a timeout of its own, it writes without wait_for: the bound on the
        # write is ours. One task uses a connection at a time.
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        self.socket_timeout = None
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health=False)
        except TimeoutError:
            await self.disconnect(nowait=True)  # as redis-py: a half-written command
            raise redis.exceptions.TimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


_classes: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def use_hiredis_packing(client: aredis.Redis) -> aredis.Redis:
    """The client, its new connections packing commands with hiredis (the connection class
    its URL chose, TCP, TLS or Unix socket, with hiredis packing)."""
    pool = client.connection_pool
    kind = pool.connection_class
    if not issubclass(kind, _HiredisPacking):
        if kind not in _classes:
            _classes[kind] = type(f"Hiredis{kind.__name__}", (_HiredisPacking, kind), {})
        pool.connection_class = _classes[kind]
    return client

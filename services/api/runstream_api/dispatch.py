"""Publishing a command for an HTTP request, once per Idempotency-Key.

A key is remembered (``Keys.api_request``) with the command it became and a fingerprint
of the request it came with. A retry re-sends that very command (same ``command_id``, so
the workers apply it once) and reads its outcome from the run's history and the feed; the
same key with a different request is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Literal

import msgspec
from litestar import Request

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.ids import new_id
from runstream_api import metrics, outcomes
from runstream_api.errors import bad_input
from runstream_api.outcomes import CommandStatus, Tracker

# How long an Idempotency-Key is remembered.
KEY_TTL_S = 24 * 3600
MAX_KEY_LENGTH = 200


Until = Literal["pending", "accepted", "done"]


class KeyRecord(msgspec.Struct, kw_only=True):
    fingerprint: str
    command: bytes


_record_decoder = msgspec.json.Decoder(KeyRecord)
_encoder = msgspec.json.Encoder()


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\0".join([method.encode(), path.encode(), body])).hexdigest()


async def request_fingerprint(request: Request[Any, Any, Any]) -> str:
    """The fingerprint of an HTTP request. Its path is read from the scope, as
    ``request.url.path`` has it (root path and path) without building the whole URL (5%
    of a POST /runs' CPU)."""
    scope = request.scope
    path = scope.get("root_path", "") + scope["path"]
    return fingerprint(request.method, path, await request.body())


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise bad_input(
            f"bad Idempotency-Key header: 1 to {MAX_KEY_LENGTH} printable characters",
            field="Idempotency-Key",
        )
    return key


def command_id_for(caller: str, key: str | None) -> str:
    """The command id an Idempotency-Key stands for (per caller: keys of two callers never
    meet; a valid command id whatever characters the key has); a fresh one without a key."""
    if key is None:
        return "api-" + new_id()
    return "api-" + hashlib.sha256(f"{caller}\0{key}".encode()).hexdigest()[:40]


async def publish(
    client: Client,
    key: str | None,
    print_: str,
    command: cmd.Command,
    *,
    until: Until,
    timeout: float,
) -> CommandStatus:
    """``command`` sent once per Idempotency-Key ``key`` (``claim``), and where it stands
    (``submit``). Without a key its record goes with the command, in one round trip. A
    command the workers would refuse as malformed is BadCommand (bad input) before any
    write: it is encoded and checked once, here, and those bytes are what is stored."""
    data = cmd.checked_bytes(command, client.settings.max_command_bytes)
    if key is None:
        record = remembered(client, command, data, print_)
        return await submit(
            client, command, data, retry=False, until=until, timeout=timeout, record=record
        )
    command, data, retry = await claim(client, key, print_, command, data)
    return await submit(client, command, data, retry=retry, until=until, timeout=timeout)


async def claim(
    client: Client, key: str, print_: str, command: cmd.Command, data: bytes
) -> tuple[cmd.Command, bytes, bool]:
    """The command to send, and its bytes: ``command`` (its id derived from the key) if it
    is new, remembered now; else the one the key was first sent as (True: a retry). The
    same key with another request is bad input (422)."""
    redis_key = client.keys.api_command(command.command_id)
    record = KeyRecord(fingerprint=print_, command=data)
    if await client.redis.set(redis_key, _encoder.encode(record), nx=True, ex=KEY_TTL_S):
        return command, data, False
    raw = await client.redis.get(redis_key)
    if raw is None:  # expired in between: it is new again
        await client.redis.set(redis_key, _encoder.encode(record), ex=KEY_TTL_S)
        return command, data, False
    first = _record_decoder.decode(raw)
    if first.fingerprint != print_:
        raise bad_input(
            f"Idempotency-Key {key!r} was used for a different request; use a new key",
            field="Idempotency-Key",
            status=422,
        )
    return cmd.decode_command(first.command), first.command, True


def remembered(
    client: Client, command: cmd.Command, data: bytes, print_: str
) -> Callable[[Any], object]:
    """Queues, on a pipeline, the record of a request sent without a key (so that
    ``/commands/{command_id}`` finds it); it goes with the command, in one round trip."""
    record = _encoder.encode(KeyRecord(fingerprint=print_, command=data))
    redis_key = client.keys.api_command(command.command_id)
    return lambda pipe: pipe.set(redis_key, record, ex=KEY_TTL_S)


async def submit(
    client: Client,
    command: cmd.Command,
    data: bytes,
    *,
    retry: bool,
    until: Until,
    timeout: float,
    record: Callable[[Any], object] | None = None,
) -> CommandStatus:
    """Publish ``command`` (``data``: its checked bytes) and report where it stands: at
    once (``pending``), once a worker accepted (or rejected) it, or once it took effect
    (``done``); at most ``timeout`` s. ``record`` (``remembered``): the request's record,
    stored with the command."""
    tracker = Tracker(command)
    # Fire and forget (a first send, not waited for): no feed position, no read after.
    quick = until == "pending" and not retry
    since = "" if quick else await client.feed_position(command.run_id)
    if retry:
        # After the feed position: an outcome older than it is in the history.
        await outcomes.from_history(client, tracker)
    if tracker.status == "pending":
        # A retry sends it again: if the first send was lost it goes now, else the
        # workers drop it as a duplicate (same command_id).
        await client.send(command, before=record, checked=data)
    if until != "pending" and not tracker.settled:
        await outcomes.follow(client, tracker, since, timeout, until=until)
    # A run just asked to start is not there yet: no need to look.
    fresh = quick and isinstance(command, cmd.StartRun)
    status = tracker.result(None if fresh else await client.find(command.run_id))
    metrics.command_answered(status.command, status.status)
    return status


async def sent_command(client: Client, command_id: str) -> cmd.Command | None:
    raw = await client.redis.get(client.keys.api_command(command_id))
    return cmd.decode_command(_record_decoder.decode(raw).command) if raw else None


async def status_of(client: Client, command: cmd.Command) -> CommandStatus:
    tracker = Tracker(command)
    await outcomes.from_history(client, tracker)
    return tracker.result(await client.find(command.run_id))

"""What a run shows of its work besides effects: its log lines and its result files.

Both are read models kept beside the run's events (in its hash slot) and written by the
same append that makes them visible: a chunk's lines and files when the chunk is
confirmed (a voided chunk's never show), a tracked run's with its record. Both are
rebuilt from the events by ``rebuild``. The log is bounded (``max_log_lines``): the
oldest lines are dropped, and counted in the run's meta hash (``log_dropped``).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from typing import cast

import msgspec
import redis.asyncio as aredis

from runstream.contracts import events as ev
from runstream.keys import Keys
from runstream.store import replies

JSON_TYPE = "application/json"
_encode = msgspec.json.Encoder().encode


class RunOutput(msgspec.Struct, frozen=True, kw_only=True):
    """Log lines and result files that become the run's with one append."""

    at: float
    log: list[str] = []
    results: dict[str, str] = {}
    result_types: dict[str, str] = {}


class ResultMeta(msgspec.Struct, frozen=True, kw_only=True):
    size: int
    media_type: str
    at: float


class ResultFile(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    size: int
    media_type: str
    at: float


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    at: float
    line: str


_meta_decoder = msgspec.json.Decoder(ResultMeta)


def media_type(name: str, given: str = "") -> str:
    """The media type a scenario gave, else guessed from the file name, else plain text."""
    if given:
        return given
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "text/plain"


def of_chunk(event: ev.ChunkPrepared) -> RunOutput | None:
    if not event.log and not event.results:
        return None
    return RunOutput(
        at=event.at, log=event.log, results=event.results, result_types=event.result_types
    )


def of_tracked(event: ev.RunTracked) -> RunOutput:
    return RunOutput(
        at=event.at,
        log=event.log,
        results={"input.json": event.input, "output.json": event.output},
        result_types={"input.json": JSON_TYPE, "output.json": JSON_TYPE},
    )


def script_args(output: RunOutput | None) -> tuple[list[str | bytes | float | int], int, int]:
    """The append script's output arguments: lines, then (name, content, meta) triples;
    with the counts of each."""
    if output is None:
        return [], 0, 0
    args: list[str | bytes | float | int] = list(output.log)
    for name, content in output.results.items():
        meta = ResultMeta(
            size=len(content.encode()),
            media_type=media_type(name, output.result_types.get(name, "")),
            at=output.at,
        )
        args += [name, content, _encode(meta)]
    return args, len(output.log), len(output.results)


# --------------------------------------------------------------------------- reading
async def log_dropped(redis: aredis.Redis, keys: Keys, run_id: str) -> int:
    raw = await redis.hget(keys.meta(run_id), "log_dropped")
    return int(raw) if raw else 0


def log_position(since: float | None) -> str:
    """The entry id to read a log after, for lines logged at or after ``since``: entry ids
    are append times, never much before a line's own time (1 s of clock skew allowed)."""
    if since is None:
        return "0-0"
    return f"{max(0, int(since * 1000) - 1001)}-{2**64 - 1}"


async def read_log(
    redis: aredis.Redis,
    keys: Keys,
    run_id: str,
    *,
    after: str = "",
    since: float | None = None,
    count: int = 1000,
) -> list[LogLine]:
    """Up to ``count`` lines after the entry id ``after`` ("" = from the oldest kept), only
    those logged at or after ``since``."""
    start = f"({after or log_position(since)}"
    entries = replies.entries(await redis.xrange(keys.logs(run_id), start, "+", count=count))
    lines = [
        LogLine(id=i.decode(), at=float(f[b"t"]), line=f[b"l"].decode(errors="replace"))
        for i, f in entries
    ]
    return [line for line in lines if since is None or line.at >= since]


async def list_results(redis: aredis.Redis, keys: Keys, run_id: str) -> list[ResultFile]:
    raw = cast(dict[bytes, bytes], await redis.hgetall(keys.result_meta(run_id)))
    files = []
    for name, meta_raw in raw.items():
        meta = _meta_decoder.decode(meta_raw)
        files.append(
            ResultFile(name=name.decode(), size=meta.size, media_type=meta.media_type, at=meta.at)
        )
    return sorted(files, key=lambda f: f.name)


async def fetch_result(redis: aredis.Redis, keys: Keys, run_id: str, name: str) -> bytes | None:
    return cast(bytes | None, await redis.hget(keys.results(run_id), name))


async def fetch_results(redis: aredis.Redis, keys: Keys, run_id: str) -> dict[str, bytes]:
    raw = cast(dict[bytes, bytes], await redis.hgetall(keys.results(run_id)))
    return {name.decode(): content for name, content in sorted(raw.items())}


# --------------------------------------------------------------------------- rebuilding
def outputs_in(history: Iterable[ev.Event]) -> list[RunOutput]:
    """The outputs the run's history made visible, in order: confirmed chunks' and a
    tracked run's."""
    prepared: dict[int, ev.ChunkPrepared] = {}
    found: list[RunOutput] = []
    for event in history:
        match event:
            case ev.ChunkPrepared():
                prepared[event.chunk] = event
            case ev.ItemsProcessed():
                chunk = prepared.pop(event.chunk, None)
                output = of_chunk(chunk) if chunk else None
                if output is not None:
                    found.append(output)
            case ev.ChunkVoided():
                prepared.pop(event.chunk, None)
            case ev.RunTracked():
                found.append(of_tracked(event))
    return found


def may_have_outputs(history: Iterable[ev.Event]) -> bool:
    """Whether ``outputs_in`` can find any in a history, also one decoded for folding only
    (``ev.decode_for_fold``: a chunk's log lines counted, not decoded)."""
    return any(
        (isinstance(event, ev.ChunkPrepared) and bool(event.log or event.results))
        or isinstance(event, ev.RunTracked)
        for event in history
    )


async def rebuild(
    redis: aredis.Redis, keys: Keys, run_id: str, history: Iterable[ev.Event], max_lines: int
) -> None:
    """Replace the run's log and result files by what its events say."""
    outputs = outputs_in(history)
    lines = [(o.at, line) for o in outputs for line in o.log]
    kept = lines[-max_lines:]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.logs(run_id), keys.results(run_id), keys.result_meta(run_id))
        pipe.hdel(keys.meta(run_id), "log_dropped")
        if len(lines) > len(kept):
            pipe.hset(keys.meta(run_id), "log_dropped", len(lines) - len(kept))
        for at, line in kept:
            pipe.xadd(keys.logs(run_id), {"t": repr(at), "l": line})
        for output in outputs:
            args, _, n_results = script_args(
                RunOutput(at=output.at, results=output.results, result_types=output.result_types)
            )
            for i in range(n_results):
                name, content, meta = args[3 * i : 3 * i + 3]
                pipe.hset(keys.results(run_id), str(name), content)
                pipe.hset(keys.result_meta(run_id), str(name), meta)
        await pipe.execute()

"""One chunk of a run's items through its scenario's step function (runs in a thread)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runstream.domain.scenarios import NO_LIMITS, Context, ResultLimits, Scenario


@dataclass
class ChunkResult:
    items_from: int
    items_to: int
    changes: list[tuple[str, str]] = field(default_factory=list)
    # Element -> (value, stamp) as the steps read it: their changes assume that state.
    reads: dict[str, tuple[str, str]] = field(default_factory=dict)
    notifications: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)
    result_types: dict[str, str] = field(default_factory=dict)
    exhausted: bool = False
    error: str = ""


class NetworkUnavailable(Exception):
    """The network could not be read during a step: not the item's fault. The chunk is
    abandoned (nothing of it is recorded) and the run retried, not failed."""


def run_chunk(
    scenario: Scenario[Any],
    params: Any,
    run_id: str,
    start: int,
    max_items: int,
    max_seconds: float,
    reader: Callable[[str], tuple[str, str] | None],
    should_stop: Callable[[], bool] = lambda: False,
    limits: ResultLimits = NO_LIMITS,
) -> ChunkResult:
    """Process items from ``start`` until ``max_items``, ``max_seconds``, the end or an error.

    A failing item contributes nothing: the chunk ends before it, with ``error`` set. So
    does a failing input source. Anything a step raises is the item's error, even
    SystemExit: a scenario must not take its worker down.
    """
    ctx = Context(run_id, reader, limits)
    result = ChunkResult(items_from=start, items_to=start)
    deadline = time.monotonic() + max_seconds
    index = start
    try:
        inputs = iter(scenario.inputs(params, start))
    except Exception as exc:
        result.error = f"input source: {_describe(exc)}"
        return _finish(result, ctx, index)
    while index - start < max_items:
        try:
            item = next(inputs)
        except StopIteration:
            result.exhausted = True
            break
        except Exception as exc:
            result.error = f"input source, item {index}: {_describe(exc)}"
            break
        mark = (
            len(ctx.network.changes),
            len(ctx.notifications),
            len(ctx.log_lines),
            dict(ctx.result_files),
            dict(ctx.result_types),
        )
        ctx.index = index
        try:
            scenario.step(ctx, params, item)
        except NetworkUnavailable:
            raise
        except BaseException as exc:
            _rollback(ctx, mark)
            result.error = f"item {index}: {_describe(exc)}"
            break
        index += 1
        if time.monotonic() >= deadline or should_stop():
            break
    if not result.error and not result.exhausted:
        try:
            total = scenario.count(params)
            result.exhausted = total == index if total is not None else _empty(inputs)
        except Exception as exc:
            result.error = f"input source, item {index}: {_describe(exc)}"
    return _finish(result, ctx, index)


def _finish(result: ChunkResult, ctx: Context, index: int) -> ChunkResult:
    result.items_to = index
    result.changes = ctx.network.changes
    result.reads = ctx.network.reads
    result.notifications = ctx.notifications
    result.log = ctx.log_lines
    result.results = ctx.result_files
    result.result_types = ctx.result_types
    return result


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _empty(inputs: Any) -> bool:
    return next(inputs, _SENTINEL) is _SENTINEL


_SENTINEL = object()


def _rollback(ctx: Context, mark: tuple[int, int, int, dict[str, str], dict[str, str]]) -> None:
    changes, notes, logs, results, result_types = mark
    ctx.network.rollback(changes)
    del ctx.notifications[notes:]
    del ctx.log_lines[logs:]
    ctx.result_files = results
    ctx.result_types = result_types

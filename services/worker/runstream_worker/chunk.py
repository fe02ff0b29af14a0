"""One chunk of a run's items through its scenario's step function (runs in a thread)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from runstream.domain.scenarios import Context, Scenario


@dataclass
class ChunkResult:
    items_from: int
    items_to: int
    changes: list[tuple[str, str]] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)
    exhausted: bool = False
    error: str = ""


def run_chunk(
    scenario: Scenario[Any],
    params: Any,
    run_id: str,
    start: int,
    max_items: int,
    max_seconds: float,
    reader: Callable[[str], str | None],
    should_stop: Callable[[], bool] = lambda: False,
) -> ChunkResult:
    """Process items from ``start`` until ``max_items``, ``max_seconds``, the end or an error.

    A failing item contributes nothing: the chunk ends before it, with ``error`` set.
    """
    ctx = Context(run_id, reader)
    result = ChunkResult(items_from=start, items_to=start)
    deadline = time.monotonic() + max_seconds
    inputs = iter(scenario.inputs(params, start))
    index = start
    for item in islice(inputs, max_items):
        mark = (
            len(ctx.network.changes),
            len(ctx.notifications),
            len(ctx.log_lines),
            dict(ctx.result_files),
        )
        ctx.index = index
        try:
            scenario.step(ctx, params, item)
        except Exception as exc:
            _rollback(ctx, mark)
            last = traceback.extract_tb(exc.__traceback__)[-1]
            result.error = (
                f"item {index}: {type(exc).__name__}: {exc} ({last.filename}:{last.lineno})"
            )
            break
        index += 1
        if time.monotonic() >= deadline or should_stop():
            break
    else:
        # Ran out of items before max_items: nothing is left.
        result.exhausted = index - start < max_items or _empty(inputs)
    if not result.error and not result.exhausted:
        result.exhausted = scenario.count(params) == index
    result.items_to = index
    result.changes = ctx.network.changes
    result.notifications = ctx.notifications
    result.log = ctx.log_lines
    result.results = ctx.result_files
    return result


def _empty(inputs: Any) -> bool:
    return next(inputs, _SENTINEL) is _SENTINEL


_SENTINEL = object()


def _rollback(ctx: Context, mark: tuple[int, int, int, dict[str, str]]) -> None:
    changes, notes, logs, results = mark
    del ctx.network.changes[changes:]
    del ctx.notifications[notes:]
    del ctx.log_lines[logs:]
    ctx.result_files = results
    # The overlay may hold the failed item's writes: rebuild it from what is kept.
    ctx.network._overlay = dict(ctx.network.changes)

"""Bulk operations: one command for every run a query matches, all sharing one ``bulk_id``
(which each run's history records). runctl's ``--where`` and the API's ``POST /runs/bulk``
both go through here.

The matches are taken once, up front (paged, oldest first); then the commands are sent,
``PARALLEL`` at a time, each followed until accepted or rejected (or, with ``wait``, until
it took effect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec

from runstream.client import Client, WaitTimeout
from runstream.contracts import commands as cmd
from runstream.domain.run import RunSummary
from runstream.query import Filter, Query, SortKey

PARALLEL = 16  # commands in flight at once
PAGE = 1000
# What a dry run lists of the runs it would touch.
SHOWN_IN_DRY_RUN = 10


@dataclass(frozen=True, slots=True)
class Done:
    run_id: str
    outcome: str  # done | rejected | timeout
    detail: str


async def matches(client: Client, filters: Iterable[Filter]) -> list[RunSummary]:
    """Every run the filters match, oldest first."""
    q = Query(filters=tuple(filters), sort=(SortKey("created_at"),), limit=PAGE)
    found: list[RunSummary] = []
    while True:
        page = await client.search(q)
        found += page
        if len(page) < PAGE:
            return found
        q = msgspec.structs.replace(q, marker=page[-1].id)


async def apply(
    client: Client,
    run_ids: Iterable[str],
    make: Callable[[str], cmd.Command],
    *,
    wait: bool,
    timeout: float,
    on_done: Callable[[Done], None] | None = None,
) -> list[Done]:
    """``make(run_id)`` for each run, sent and followed; how each ended, in the order
    they ended (``on_done`` sees each as it does)."""
    gate = asyncio.Semaphore(PARALLEL)
    results: list[Done] = []

    async def one(run_id: str) -> None:
        async with gate:
            try:
                o = await client.execute(make(run_id), wait=wait, timeout=timeout)
                done = Done(run_id, "rejected" if o.rejected else "done", o.reason)
            except WaitTimeout as exc:
                done = Done(run_id, "timeout", str(exc))
        results.append(done)
        if on_done is not None:
            on_done(done)

    await asyncio.gather(*(one(r) for r in run_ids))
    return results


def counts(results: Iterable[Done]) -> dict[str, int]:
    tally = dict.fromkeys(("done", "rejected", "timeout"), 0)
    for r in results:
        tally[r.outcome] += 1
    return tally

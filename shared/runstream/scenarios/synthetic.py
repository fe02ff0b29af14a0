"""synthetic: a deterministic generated workload, for tests and the benchmark."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Annotated

import msgspec

from runstream.domain.scenarios import Context, Scenario


class SyntheticParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    items: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 100
    edges_per_item: Annotated[int, msgspec.Meta(ge=0, le=100)] = 2
    delay_ms: Annotated[float, msgspec.Meta(ge=0, le=60_000)] = 0
    notify_every: Annotated[int, msgspec.Meta(ge=0)] = 0
    seed: int = 0
    # Node ids are "<namespace>:<i>"; empty means the run's id, so runs don't collide.
    namespace: Annotated[str, msgspec.Meta(max_length=100, pattern=r"^[^|]*$")] = ""
    # Spread the nodes over this many namespaces ("<namespace>:<i % spread>:<i>"): with
    # several network partitions, its chunks then write several (a two-phase commit).
    spread: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    # Fail at this item (for tests of failure handling); -1 = never.
    fail_at: int = -1
    # Log lines per item (ctx.log).
    log_lines: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    # Every this many items, a result file part-<n>.txt of result_bytes bytes; 0 = none.
    result_every: Annotated[int, msgspec.Meta(ge=0)] = 0
    result_bytes: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] = 100


def _inputs(p: SyntheticParams, start: int) -> Iterator[int]:
    return iter(range(start, p.items))


def _node(p: SyntheticParams, ns: str, i: int) -> str:
    return f"{ns}:{i}" if p.spread == 1 else f"{ns}:{i % p.spread}:{i}"


def _step(ctx: Context, p: SyntheticParams, i: int) -> None:
    if p.delay_ms:
        time.sleep(p.delay_ms / 1000)
    if i == p.fail_at:
        raise RuntimeError(f"synthetic failure at item {i}")
    # One generator per item: the same item gives the same changes however runs are chunked.
    rng = random.Random(p.seed * 1_000_003 + i)
    ns = p.namespace or ctx.run_id
    node = _node(p, ns, i)
    ctx.network.add_node(node, i=i, w=rng.randint(0, 999))
    if i > 0:
        for _ in range(p.edges_per_item):
            ctx.network.add_edge(node, _node(p, ns, rng.randrange(i)), w=rng.randint(0, 999))
    if p.notify_every and (i + 1) % p.notify_every == 0:
        ctx.notify(f"synthetic {ns}: {i + 1} items processed")
    for k in range(p.log_lines):
        ctx.log(f"item {i} line {k}")
    if p.result_every and (i + 1) % p.result_every == 0:
        line = f"{i + 1} items processed, seed {p.seed}\n"
        content = (line * (p.result_bytes // len(line) + 1))[: p.result_bytes]
        ctx.results.put(f"part-{(i + 1) // p.result_every}.txt", content)


SCENARIO = Scenario(
    name="synthetic",
    version="1",
    description=(
        "Generated graph: one node per item, edges to earlier nodes; deterministic per seed."
    ),
    params=SyntheticParams,
    inputs=_inputs,
    step=_step,
    count=lambda p: p.items,
)

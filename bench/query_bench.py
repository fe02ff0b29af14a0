"""Query benchmark (issue 7): the run index with 100,000 runs stored.

    .venv/bin/python bench/query_bench.py [--runs N] [--repeat N] [--json FILE]

Starts its own throwaway Redis (EmbeddedRedis, appendfsync everysec: loading the runs is
not what is measured), stores N runs through the event store (the same append script a
worker uses, so the index is built as in production; 4 shards), then measures:

  page        a filtered, sorted page of 50 (several queries, first and later pages)
  count       --count of the same filters
  rebuild     rebuild-index: every read model dropped and rebuilt from the events

Targets: page p99 <= 50 ms, count <= 100 ms, rebuild >= 20,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from runstream import query
from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.domain.run import Run
from runstream.embedded import EmbeddedRedis
from runstream.ids import new_id
from runstream.settings import Settings
from runstream.store import index

T0 = 1_790_000_000.0
DAY = 86_400.0
SCENARIOS = ("synthetic", "graph-import", "notify")
TEAMS = ("eu", "us", "apac", "data")
ENDS = ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "stopped", "running")


def make_run(i: int, rng: random.Random) -> Run:
    run_id = new_id()
    run = Run.blank(run_id)
    created = T0 + rng.random() * 30 * DAY
    args = {"namespace": f"ns{rng.randrange(10)}", "items": rng.choice([10, 100, 1000])}
    run.start(
        cmd.StartRun(
            run_id=run_id,
            scenario=rng.choice(SCENARIOS),
            args=args,
            name=f"run-{i:06d}",
            description=rng.choice(["nightly import", "one-off fix", ""]),
            actor=rng.choice(("alice", "bob", "carol")),
            labels={"team": rng.choice(TEAMS)},
        ),
        created,
        scenario_version="1",
        args=args,
    )
    end = rng.choice(ENDS)
    started = created + rng.random() * 10
    run.begin(started, "bench")
    items = rng.randrange(1, 1000)
    run.prepare_chunk(started, items_to=items, effects=[], notifications=[], log=[], results={})
    run.confirm_chunk(started + 1)
    ended = started + 1 + rng.random() * 600
    if end == "succeeded":
        run.succeed(ended)
    elif end == "failed":
        run.fail(ended, f"item {items}: boom")
    elif end == "cancelled":
        run.handle(cmd.CancelRun(run_id=run_id), ended)
    elif end == "stopped":
        run.handle(cmd.StopRun(run_id=run_id), ended)
    return run


async def store_runs(client: Client, n: int) -> float:
    rng = random.Random(42)
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with gate:
            result = await client.store.save(make_run(i, rng))
            assert result.status == "ok", result

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


async def timed(repeat: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    await call()  # warm: script load, connections
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


QUERIES: list[tuple[str, list[str], list[str]]] = [
    (
        "state in, scenario, created_at range; created_at desc",
        [
            "state=in:succeeded,failed",
            "scenario=eq:synthetic",
            f"created_at=gte:{query.iso(T0 + 10 * DAY)}",
        ],
        ["created_at:desc"],
    ),
    (
        "label and argument (selective); name asc",
        ["labels=eq:team=eu", "args.namespace=eq:ns3", "state=neq:running"],
        ["name"],
    ),
    (
        "duration range, description has; two keys",
        ["duration_ms=gte:300000", "description=has:import"],
        ["state", "duration_ms:desc"],
    ),
    ("no filter; updated_at desc", [], ["updated_at:desc"]),
    # Names share their first 6 bytes ("run-00"): the lexical index orders them.
    ("broad filter; name desc", ["state=neq:running"], ["name:desc"]),
]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(port=0, data_dir=Path(tmp) / "redis", appendfsync="everysec")
        server.start()
        try:
            settings = Settings(redis_url=server.url, prefix="qbench", shards=4)
            async with Client.connect(settings=settings) as client:
                took = await store_runs(client, args.runs)
                print(f"stored {args.runs:,} runs in {took:.1f}s ({args.runs / took:,.0f} runs/s)")
                pages: list[float] = []
                counts: list[float] = []
                for label, filters, sort in QUERIES:
                    q = query.build(filters, sort=sort, limit=50)
                    first = await client.search(q)
                    later = msgspec.structs.replace(q, marker=first[-1].id) if first else q
                    p1 = await timed(args.repeat, functools.partial(client.search, q))
                    p2 = await timed(args.repeat, functools.partial(client.search, later))
                    c = await timed(max(5, args.repeat // 10), functools.partial(client.count, q))
                    n = await client.count(q)
                    pages += p1 + p2
                    counts += c
                    print(
                        f"  {label}: {n:,} matches; page 1 p50 {pct(p1, 50):.1f} ms "
                        f"p99 {pct(p1, 99):.1f} ms; page 2 p50 {pct(p2, 50):.1f} ms "
                        f"p99 {pct(p2, 99):.1f} ms; count p50 {pct(c, 50):.1f} ms "
                        f"max {max(c):.1f} ms"
                    )
                figures["page_p50_ms"] = pct(pages, 50)
                figures["page_p99_ms"] = pct(pages, 99)
                figures["count_p50_ms"] = pct(counts, 50)
                figures["count_max_ms"] = max(counts)
                t = time.perf_counter()
                done = await index.rebuild(client.redis, client.keys, client.store)
                took = time.perf_counter() - t
                figures["rebuild_runs"] = done.runs
                figures["rebuild_events"] = done.events
                figures["rebuild_events_per_s"] = done.events / took
                print(f"rebuild: {done.runs:,} runs, {done.events:,} events in {took:.1f}s")
                # The rebuilt index answers as before.
                for _, filters, sort in QUERIES:
                    q = query.build(filters, sort=sort, limit=50)
                    assert await client.count(q) >= 0
        finally:
            server.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per query")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args))
    rows = [
        ("query page of 50, p50", f"{figures['page_p50_ms']:.1f} ms", "-", True),
        (
            "query page of 50, p99",
            f"{figures['page_p99_ms']:.1f} ms",
            "≤ 50 ms",
            figures["page_p99_ms"] <= 50,
        ),
        (
            "query --count, worst",
            f"{figures['count_max_ms']:.1f} ms",
            "≤ 100 ms",
            figures["count_max_ms"] <= 100,
        ),
        (
            "rebuild-index",
            f"{figures['rebuild_events_per_s']:,.0f} events/s",
            "≥ 20,000/s",
            figures["rebuild_events_per_s"] >= 20_000,
        ),
    ]
    print(f"\n{'figure':<26} {'value':<20} {'target':<12} result")
    for name, value, target, ok in rows:
        print(f"{name:<26} {value:<20} {target:<12} {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

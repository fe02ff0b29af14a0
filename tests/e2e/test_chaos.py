"""Chaos: kill workers, pause lease holders past their lease and crash Redis while commands
(duplicates and garbage included) pour in; then, from Redis data alone, check nothing was lost,
nothing doubled, every run is what its history says, and the network is exactly what the runs
recorded.

``pytest -m chaos`` (about 35 s); ``CHAOS_SECONDS=120`` makes the chaos phase longer,
``CHAOS_SEED=N`` replays a load (the chaos timing itself is not reproducible).

With ``--redis=cluster`` the service runs on a local Redis Cluster (3 masters, a replica
each) and the Redis crash is a master SIGKILLed under load: its replica is promoted, the
dead node rejoins as a replica. Replication is asynchronous, so what a master acknowledged
just before its death may be lost: findings that name only commands acknowledged (and runs
started) before the last failover are reported as exposed, not failed; everything
acknowledged after it is held to every promise (no master dies in the last 10 s).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import on_cluster

from runstream.client import Client
from runstream.embedded import EmbeddedRedis
from runstream.local_cluster import LocalCluster
from runstream.processes import worker_env

from .chaos_checks import (
    Findings,
    check_commands,
    check_dead_letters,
    check_runs,
    check_workers,
    collect,
    dump_data,
    quiet_status,
    set_aside_failover_losses,
    stuck_evidence,
)
from .chaos_fleet import EXIT_SLACK_S as EXIT_SLACK
from .chaos_fleet import (
    SHUTDOWN_GRACE_S,
    WORKERS,
    Chaos,
    ChaosConfig,
    Fleet,
    MasterFailover,
    RedisCrash,
    ServerCrash,
    Timeline,
    chaos_redis,
    chaos_settings,
    keep_evidence,
)
from .chaos_load import Ledger, Load, Publisher
from .chaos_pause import Pauser

CONFIG = ChaosConfig.from_env()
LOG_EVENTS = (
    "command_claimed",
    "command_duplicate",
    "command_rejected",
    "command_failed",
    "command_crashed",
    "dead_lettered",
    "drive_crashed",
    "drive_interrupted",
    "lease_lost",
    "chunk_resolved",
    "chunk_conflict",
    "subscribers_restarted",
    "group_created",
    "upkeep_failed",
)


@pytest.mark.chaos
@pytest.mark.timeout(CONFIG.pytest_timeout)
def test_commands_survive_killed_workers_and_redis_crashes(
    embedded_redis: Callable[..., EmbeddedRedis],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    cluster: LocalCluster | None = None
    redis: RedisCrash
    if on_cluster(request.config):
        cluster = LocalCluster(tmp_path / "cluster", replicas=1, node_timeout_ms=1000).start()
        redis = MasterFailover(cluster)
    else:
        redis = ServerCrash(embedded_redis(appendfsync="always"))
    prefix = "chaos" + uuid.uuid4().hex[:8]
    timeline = Timeline()
    fleet = Fleet(worker_env(chaos_settings(redis.url, prefix)), tmp_path, timeline)
    ledger = Ledger()
    figures: dict[str, object] = {"seed": CONFIG.seed, "chaos seconds": CONFIG.seconds}
    started = time.monotonic()
    try:
        for _ in range(WORKERS):
            fleet.start()
        findings, exits = asyncio.run(_scenario(redis, prefix, fleet, ledger, timeline, figures))
    finally:
        fleet.close()
        if cluster is not None:
            cluster.stop()
    check_workers(fleet, exits, findings)
    figures["runtime s"] = round(time.monotonic() - started, 1)
    figures["worker log"] = dict(fleet.log_counts(LOG_EVENTS))
    figures["checked"] = dict(findings.checked)
    figures["lost"] = len(findings.lost)
    figures["doubled"] = len(findings.doubled)
    if redis.failovers:
        figures["exposed to a failover (acknowledged before it)"] = len(findings.exposed)
    report = "\n".join(f"  {k}: {v}" for k, v in figures.items())
    with capsys.disabled():
        print(f"\nchaos figures (logs in {tmp_path}):\n{report}")
        for note in findings.notes[:10]:
            print(f"  note: {note}")
        for item in findings.exposed[:10]:
            print(f"  exposed to a failover: {item}")
    failures = findings.failures()
    if failures:
        kept = keep_evidence(tmp_path, CONFIG.seed)
        text = "\n\n".join(
            f"== {name} ({len(items)}):\n" + "\n".join(f"- {i}" for i in items[:15])
            for name, items in failures.items()
        )
        pytest.fail(
            f"chaos (seed {CONFIG.seed}, logs kept in {kept}) broke promises:\n{text}\n\n"
            f"== figures:\n{report}\n\n"
            f"== timeline:\n{timeline.text()}",
            pytrace=False,
        )


async def _scenario(
    server: RedisCrash,
    prefix: str,
    fleet: Fleet,
    ledger: Ledger,
    timeline: Timeline,
    figures: dict[str, object],
) -> tuple[Findings, dict[str, tuple[int | None, float]]]:
    redis = chaos_redis(server.url)
    client = Client(redis, chaos_settings(server.url, prefix))
    try:
        publisher = Publisher(redis, client.keys, ledger, timeline)
        load = Load(CONFIG, random.Random(CONFIG.seed), publisher, ledger, client.keys)
        chaos = Chaos(random.Random(CONFIG.seed + 1), fleet, server, timeline, client)
        # Lease holders paused past their lease (1.5 s) and resumed (issue 12).
        pauser = Pauser(
            random.Random(CONFIG.seed + 2),
            redis,
            client.keys,
            lambda: {w.name: w.proc for w in fleet.alive()},
            pause_s=(1.6, 2.6),
            gap_s=(0.3, 1.5),
            note=timeline.note,
        )

        # ---- chaos: load and havoc at once
        stop_at = time.monotonic() + CONFIG.seconds
        await asyncio.gather(load.drive(stop_at), chaos.run(stop_at), pauser.run(stop_at))
        timeline.note("chaos over")

        # ---- quiesce: 3 workers, every duplicate out, then wait for rest
        await server.ensure_up()
        fleet.ensure(WORKERS)
        await load.flush_duplicates(everything=True)
        quiet_since = time.monotonic()
        deadline = time.monotonic() + CONFIG.quiesce_timeout
        busy: list[str] = ["not checked yet"]
        calm = 0
        while True:
            fleet.ensure(WORKERS)
            try:
                busy = await quiet_status(client)
            except Exception as exc:  # Redis hiccup while polling: poll again
                busy = [f"status failed: {exc!r}"]
            calm = calm + 1 if not busy else 0
            if calm >= 2:
                break
            if time.monotonic() > deadline:
                evidence = await stuck_evidence(client, busy)
                kept = keep_evidence(fleet.directory, CONFIG.seed)
                pytest.fail(
                    f"the service did not come to rest within {CONFIG.quiesce_timeout:g}s "
                    f"(seed {CONFIG.seed}, logs kept in {kept}):\n{evidence}\n\n"
                    f"== timeline:\n{timeline.text()}",
                    pytrace=False,
                )
            await asyncio.sleep(0.25)
        timeline.note(f"at rest after {time.monotonic() - quiet_since:.1f}s")
        figures["quiesce s"] = round(time.monotonic() - quiet_since, 1)

        # ---- graceful shutdown
        exits = await asyncio.to_thread(fleet.terminate_all, SHUTDOWN_GRACE_S + EXIT_SLACK + 3)
        figures["shutdown s"] = {n: round(t, 2) for n, (_, t) in exits.items()}

        # ---- checks, from Redis data only
        data = await collect(client)
        findings = Findings()
        check_commands(ledger, data, findings)
        check_dead_letters(ledger, data, findings)
        check_runs(ledger, data, findings)
        held = set_aside_failover_losses(ledger, server.failovers, findings)
        dump_data(data, fleet.directory / "redis-data.json")

        rejected = sum(1 for fe in data.feed if type(fe.event).__name__ == "CommandRejected")
        figures.update(
            {
                "commands sent": len(ledger.sent),
                "accepted": ledger.accepted,
                "xadd attempts / failed": f"{ledger.xadd_attempts} / {ledger.xadd_failures}",
                "duplicates injected": ledger.duplicates,
                "garbage messages": len(ledger.garbage),
                "garbage kinds": dict(Counter(g.kind for g in ledger.garbage)),
                "dead letters": len(data.dlq),
                "rejections on feed": rejected,
                "workers killed": fleet.kills,
                "lease holders paused": f"{pauser.pauses} ({pauser.runs_paused} runs)",
                "of them holding a run's lease": chaos.busy_kills,
                "workers started": len(fleet.procs),
                "unexpected worker exits": len(fleet.unexpected),
                "redis restarts" if not server.failovers else "master failovers": (
                    chaos.redis_restarts
                ),
                "redis down s": round(chaos.redis_down_s, 2),
                "runs started": len(ledger.started),
                "runs queued": len(data.index) + len(data.tombs),
                "runs deleted": len(data.tombs),
                "final states": dict(Counter(r.state for r in data.index.values())),
                "network elements": len(data.values),
                "notifications": len(data.outbox),
                "feed events": len(data.feed),
            }
        )
        if server.failovers:
            figures["commands acknowledged after the last failover"] = held
        return findings, exits
    finally:
        await redis.aclose()

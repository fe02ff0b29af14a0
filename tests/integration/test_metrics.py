"""Prometheus metrics and probes of real worker processes and the real API: commands go
through Redis, then the status port and /metrics are scraped and the counters checked."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from runstream import processes
from runstream.client import Client, StartRejected
from runstream.contracts import commands as cmd
from runstream.embedded import EmbeddedRedis, free_port
from runstream.keys import Fields
from runstream.probe import probe
from runstream.settings import Settings

from .api_service import api_service
from .prometheus_text import Samples, names, scrape, total, value
from .support import fast, until, worker_pool

EmbeddedFactory = Callable[..., EmbeddedRedis]
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "runstream.json"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _dashboard_metrics() -> set[str]:
    """The metric names the sample Grafana dashboard's queries use."""
    text = DASHBOARD.read_text()
    exprs = re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', text)
    assert exprs, "the dashboard has no queries"
    found = set()
    for expr in exprs:
        found |= set(re.findall(r"\b(runstream_[a-z_]+)\b", json.loads(f'"{expr}"')))
    return found


def test_worker_metrics_count_commands_effects_and_dead_letters(
    settings: Settings, tmp_path: Path
) -> None:
    s = fast(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def drive() -> None:
        async with Client.connect(settings=s) as client:
            done = await client.start("synthetic", {"items": 20, "edges_per_item": 2})
            assert (await client.wait(done, timeout=30, poll=0.05)).state == "succeeded"
            try:
                await client.start("synthetic", {"items": -1})
                raise AssertionError("a start with items=-1 was accepted")
            except StartRejected:
                pass
            # Continue a succeeded run: rejected, recorded on the run.
            outcome = await client.execute(cmd.ContinueRun(run_id=done), wait=False)
            assert outcome.rejected, outcome
            reverted = await client.execute(cmd.RevertRun(run_id=done), wait=True, timeout=30)
            assert reverted.succeeded, reverted
            # A message that is no command: parked in the dead-letter stream.
            await client.redis.xadd(client.keys.commands(0), {Fields.COMMAND: b"not json"})
            await until(client.dead_letters, "the dead letter", timeout=20)

    with worker_pool(s, tmp_path) as pool:
        worker = pool.start("w0", RUNSTREAM_METRICS_PORT=str(port))
        worker.wait_ready()
        before = scrape(f"{url}/metrics")
        assert value(before, "runstream_commands_total", type="StartRun", outcome="applied") == 0
        asyncio.run(drive())
        after = scrape(f"{url}/metrics")

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("runstream_commands_total", type="StartRun", outcome="applied") == 1
    assert moved("runstream_commands_total", type="StartRun", outcome="rejected") == 1
    assert moved("runstream_commands_total", type="ContinueRun", outcome="rejected") == 1
    assert moved("runstream_commands_total", type="RevertRun", outcome="applied") == 1
    # Every handled command's latency was observed, under its type.
    handled = total(after, "runstream_commands_total") - total(before, "runstream_commands_total")
    assert handled == 4
    assert total(after, "runstream_command_latency_seconds_count") == handled
    # 20 nodes and 19 * 2 edges, applied and then every one compensated.
    assert moved("runstream_effects_total", outcome="applied") == 58
    assert moved("runstream_effects_total", outcome="compensated") == 58
    assert moved("runstream_effects_total", outcome="skipped") == 0
    assert moved("runstream_dead_lettered_total") == 1
    # The shard gauges, read from Redis at the scrape.
    assert value(after, "runstream_dead_letters", shard="0") == 1
    assert total(after, "runstream_dead_letters") == 1
    assert value(after, "runstream_runs", state="reverted") == 1
    assert value(after, "runstream_runs", state="succeeded") == 0
    assert total(after, "runstream_commands_pending") == 0
    assert total(after, "runstream_commands_lag") == 0
    assert value(after, "runstream_redis_up") == 1


def test_worker_probes_tell_a_paused_worker_and_a_lost_redis_apart(
    settings: Settings, tmp_path: Path, embedded_redis: EmbeddedFactory
) -> None:
    server = embedded_redis()
    s = fast(settings, redis_url=server.url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with worker_pool(s, tmp_path) as pool:
        worker = pool.start("w0", RUNSTREAM_METRICS_PORT=str(port))
        worker.wait_ready()
        assert _get(f"{url}/health") == (200, "ok\n")
        assert _get(f"{url}/livez") == (200, "ok\n")
        assert _get(f"{url}/nope")[0] == 404

        server.stop()
        status, body = _get(f"{url}/health")
        assert status == 503 and "Redis does not answer" in body, body
        # Alive all the same: a Redis outage is no reason to restart the worker.
        assert _get(f"{url}/livez") == (200, "ok\n")
        assert value(scrape(f"{url}/metrics"), "runstream_redis_up") == 0

        server.restart()
        asyncio.run(until(lambda: _get(f"{url}/health")[0] == 200, "ready again", timeout=30))

        # A paused process answers nothing: the probe fails (times out) instead of lying.
        worker.proc.send_signal(signal.SIGSTOP)
        try:
            problem = probe(f"{url}/livez", timeout=1.0)
            assert problem is not None and "timed out" in problem, problem
        finally:
            worker.proc.send_signal(signal.SIGCONT)
        assert _get(f"{url}/livez") == (200, "ok\n")


def test_a_run_taken_over_from_a_killed_worker_is_counted(
    settings: Settings, tmp_path: Path
) -> None:
    s = fast(settings)
    port_a, port_b = free_port(), free_port()

    async def start_slow() -> str:
        async with Client.connect(settings=s) as client:
            return await client.start("synthetic", {"items": 100_000, "delay_ms": 1})

    async def taken_over(run_id: str) -> None:
        async with Client.connect(settings=s) as client:

            async def progressed() -> bool:
                return (await client.get(run_id)).items_processed > 0

            await until(progressed, "the run's first chunk", timeout=30)

    with worker_pool(s, tmp_path) as pool:
        a = pool.start("a", RUNSTREAM_METRICS_PORT=str(port_a))
        a.wait_ready()
        run_id = asyncio.run(start_slow())
        asyncio.run(taken_over(run_id))
        b = pool.start("b", RUNSTREAM_METRICS_PORT=str(port_b))
        b.wait_ready()
        driven = scrape(f"http://127.0.0.1:{port_a}/metrics")
        assert value(driven, "runstream_worker_runs_driven") == 1
        a.kill()

        async def counted() -> bool:
            samples = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port_b}/metrics")
            return value(samples, "runstream_lease_takeovers_total") == 1

        asyncio.run(until(counted, "the takeover counted by b", timeout=30))
        samples = scrape(f"http://127.0.0.1:{port_b}/metrics")
        assert value(samples, "runstream_worker_runs_driven") == 1
        assert value(samples, "runstream_runs", state="running") == 1
        processes.stop_all([b], grace=8)


def test_api_metrics_count_the_commands_it_sent(settings: Settings, tmp_path: Path) -> None:
    with api_service(settings, tmp_path) as api:
        anonymous = f"{api.url}/metrics"
        before = scrape(anonymous)
        started = api.http.post(
            "/runs", params={"wait": "true"}, json={"scenario": "synthetic", "args": {"items": 5}}
        )
        assert started.status_code in (200, 201), started.text
        run_id = started.json()["run_id"]
        # Refused by the worker (nothing to continue in a succeeded run), not by the API.
        refused = api.http.post(f"/runs/{run_id}/continue", params={"wait": "true"})
        assert refused.status_code == 409, refused.text
        # Bad input the API refuses itself: nothing is sent, nothing counted.
        bad = api.http.post("/runs", json={"scenario": "synthetic", "args": {"items": -1}})
        assert bad.status_code == 422, bad.text
        after = scrape(anonymous)
        assert _get(f"{api.url}/livez")[0] == 200

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("runstream_api_commands_total", type="StartRun", status="done") == 1
    assert moved("runstream_api_commands_total", type="ContinueRun", status="rejected") == 1
    assert (
        total(after, "runstream_api_commands_total") - total(before, "runstream_api_commands_total")
        == 2
    )
    assert value(after, "runstream_runs", state="succeeded") == 1
    assert value(after, "runstream_redis_up") == 1
    assert names(after) >= {"runstream_commands_pending", "runstream_commands_lag"}


def test_the_grafana_dashboard_queries_only_metrics_that_exist(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    # The API's worker serves its status port too (RUNSTREAM_METRICS_PORT from settings).
    with api_service(fast(settings, metrics_port=port), tmp_path) as api:
        # Labelled series exist from their first use: one command through the API.
        started = api.http.post(
            "/runs", params={"wait": "true"}, json={"scenario": "synthetic", "args": {"items": 1}}
        )
        assert started.status_code in (200, 201), started.text
        exported: Samples = scrape(f"http://127.0.0.1:{port}/metrics")
        exported.update(scrape(f"{api.url}/metrics"))
    # Counters and histograms are queried by their series names (_total, _bucket ...).
    missing = _dashboard_metrics() - names(exported)
    assert not missing, f"the dashboard queries metrics no process exports: {sorted(missing)}"

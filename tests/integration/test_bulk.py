"""Bulk operations through runctl, on real Redis with a worker: a dry run sends nothing,
--yes applies a command to every match with one bulk id in each run's history, a line per
run says done or rejected and why."""

from __future__ import annotations

import asyncio
import json

import msgspec

from runstream.client import Client
from runstream.contracts import events as ev
from runstream.settings import Settings

from .support import fast, runctl_async, until, worker_running


def test_bulk_stop_with_a_dry_run_then_for_real(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            slow = [
                await client.start("synthetic", {"items": 100_000, "delay_ms": 1}, name=f"slow{i}")
                for i in range(3)
            ]
            quick = await client.start("synthetic", {"items": 5}, name="quick")
            await client.wait(quick, timeout=30, poll=0.05)
            for run_id in slow:
                await until(lambda r=run_id: client.find(r), f"{run_id} indexed", timeout=10)  # type: ignore[misc]

            # A dry run: the count and the first matches; nothing is sent.
            dry = await runctl_async(s, "stop", "--where", "name=has:slow", "--dry-run")
            assert dry.code == 0, dry.stderr
            assert "would apply to 3 runs" in dry.stdout
            assert all(r in dry.stdout for r in slow) and quick not in dry.stdout
            assert {(await client.get(r)).state for r in slow} <= {"queued", "running"}

            # Without --yes and no terminal to ask on: refused, nothing sent.
            unasked = await runctl_async(s, "stop", "--where", "name=has:slow")
            assert unasked.code == 2 and "--yes" in unasked.stderr

            # For real, over the stopped-or-not runs and the finished one: the finished
            # one is rejected with its reason, the others stopped; exit 1 (some rejected).
            done = await runctl_async(
                s, "stop", "--where", "name=has:", "--reason", "maintenance", "--yes", "--json"
            )
            assert done.code == 1, done.stderr
            report = json.loads(done.stdout)
            outcomes = {r["run_id"]: r for r in report["runs"]}
            assert set(outcomes) == {*slow, quick}
            assert outcomes[quick]["outcome"] == "rejected"
            assert "cannot stop a run that is succeeded" in outcomes[quick]["detail"]
            assert all(outcomes[r]["outcome"] == "done" for r in slow)
            assert report["counts"] == {"done": 3, "rejected": 1, "timeout": 0}
            bulk_id = report["bulk_id"]

            for run_id in slow:
                await until(lambda r=run_id: _state_is(client, r, "stopped"), f"{run_id} stopped")  # type: ignore[misc]
                stopped = [
                    e for _, e in await client.history(run_id) if isinstance(e, ev.RunStopped)
                ]
                assert [(e.bulk_id, e.reason) for e in stopped] == [(bulk_id, "maintenance")]
            shown = json.loads((await runctl_async(s, "show", quick, "--json")).stdout)
            rejected = [c for c in shown["commands"] if c["rejected"]]
            assert [(c["command"], c["bulk_id"]) for c in rejected] == [("StopRun", bulk_id)]

            # The human form: a line per run and a summary.
            again = await runctl_async(s, "cancel", "--where", "state=eq:stopped", "--yes")
            assert again.code == 0, again.stderr
            assert "3 runs, 3 done, 0 rejected, 0 timed out" in again.stdout
            assert all(f"cancel {r}: done" in again.stderr for r in slow)

    asyncio.run(body())


async def _state_is(client: Client, run_id: str, state: str) -> bool:
    return (await client.get(run_id)).state == state


def test_bulk_refuses_bad_filters_and_mixed_targets(settings: Settings) -> None:
    async def body() -> None:
        s = msgspec.structs.replace(settings)
        bad = await runctl_async(s, "delete", "--where", "colour=eq:red", "--yes")
        assert bad.code == 2 and "unknown field 'colour'" in bad.stderr
        both = await runctl_async(s, "stop", "01M844VDSEN9HP7QTS3Y0PN4N1", "--where", "state=eq:x")
        assert both.code == 2 and "not both" in both.stderr
        neither = await runctl_async(s, "cancel")
        assert neither.code == 2 and "--where" in neither.stderr
        nothing = await runctl_async(s, "revert", "--where", "state=eq:failed", "--dry-run")
        assert nothing.code == 0 and "would apply to 0 runs" in nothing.stdout

    asyncio.run(body())

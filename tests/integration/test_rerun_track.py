"""Re-runs (start --from) and tracked runs (track), on a real Redis with an in-process
worker, through runctl and the client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.ids import new_id
from runstream.settings import Settings

from .support import fast, runctl_async, worker_running


def test_a_rerun_repeats_scenario_version_and_arguments_with_overrides(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            source = await client.start(
                "synthetic", {"items": 5, "seed": 3, "edges_per_item": 1}, name="nightly"
            )
            assert (await client.wait(source, timeout=20)).state == "succeeded"

            again = await runctl_async(
                s, "start", "--from", source, "--arg", "seed=4", "--wait", "--json"
            )
            assert again.code == 0, again.stderr
            new_id_ = json.loads(again.stdout)["id"]
            assert json.loads(again.stdout)["source_run_id"] == source
            shown = json.loads((await runctl_async(s, "show", new_id_, "--json")).stdout)
            original = await client.get(source)
            assert shown["source_run_id"] == source
            assert shown["scenario"] == "synthetic"
            assert shown["scenario_version"] == original.scenario_version
            assert shown["args"] == {**original.args, "seed": 4}
            assert shown["name"] == "nightly"
            assert shown["state"] == "succeeded"
            human = await runctl_async(s, "show", new_id_)
            assert f"re-run of  {source}" in human.stdout

            # The client does the same.
            third = await client.rerun(source)
            summary = await client.wait(third, timeout=20)
            assert (summary.source_run_id, summary.args) == (source, original.args)

    asyncio.run(body())


def test_a_rerun_of_a_missing_run_or_with_bad_overrides_sends_nothing(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            missing = await runctl_async(s, "start", "--from", new_id())
            assert missing.code == 3
            assert "does not exist" in missing.stderr
            source = await client.start("synthetic", {"items": 2})
            await client.wait(source, timeout=20)
            bad = await runctl_async(s, "start", "--from", source, "--arg", "items=many")
            assert bad.code == 2
            assert "bad arguments for scenario 'synthetic'" in bad.stderr
            other = await runctl_async(s, "start", "notify", "--from", source)
            assert other.code == 2
            assert "is of scenario 'synthetic', not 'notify'" in other.stderr
            assert len(await client.list_runs()) == 1

    asyncio.run(body())


def test_a_rerun_is_rejected_when_the_scenario_changed_version(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            source = await client.start("synthetic", {"items": 2})
            await client.wait(source, timeout=20)
            command = await client.rerun_command(source)
            old = msgspec.structs.replace(command, scenario_version="0")
            outcome = await client.execute(old, wait=False, timeout=10)
            assert outcome.rejected
            assert "scenario 'synthetic' is at version 1 now, not 0" in outcome.reason
            assert await client.find(command.run_id) is None

    asyncio.run(body())


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    inp, outp, log = tmp_path / "in.json", tmp_path / "out.json", tmp_path / "log.txt"
    inp.write_text('{"orders": [1, 2, 3]}')
    outp.write_text('{"routes": [[1, 3], [2]], "cost": 12.5}\n')
    log.write_text("loading\nsolving\ndone\n")
    return inp, outp, log


def test_a_tracked_run_is_recorded_listed_and_shown_with_its_input_output_and_log(
    settings: Settings, tmp_path: Path
) -> None:
    async def body() -> None:
        s = fast(settings)
        inp, outp, log = _files(tmp_path)
        async with worker_running(s), Client.connect(settings=s) as client:
            result = await runctl_async(
                s,
                "track",
                "router",
                "--status",
                "succeeded",
                "--input",
                str(inp),
                "--output",
                str(outp),
                "--duration-ms",
                "1200",
                "--log-file",
                str(log),
                "--json",
            )
            assert result.code == 0, result.stderr
            run_id = json.loads(result.stdout)["id"]
            summary = await client.get(run_id)
            assert summary.state == "succeeded"
            assert summary.tracked
            assert summary.tracked_duration_ms == 1200
            assert summary.scenario == "router"
            assert summary.input_bytes == len(inp.read_bytes())
            assert summary.output_bytes == len(outp.read_bytes())
            assert summary.effects["applied"] == 0
            assert [r.id for r in await client.list_runs()] == [run_id]
            human = await runctl_async(s, "show", run_id)
            assert "tracked  yes: executed elsewhere" in human.stdout
            assert "took 1200 ms" in human.stdout

            _, lines = await client.logs(run_id)
            assert [x.line for x in lines] == ["loading", "solving", "done"]
            files = await client.results(run_id)
            assert [(f.name, f.media_type) for f in files] == [
                ("input.json", "application/json"),
                ("output.json", "application/json"),
            ]
            assert await client.result(run_id, "output.json") == outp.read_bytes()

            reverted = await runctl_async(s, "revert", run_id)
            assert reverted.code == 1
            assert "a tracked run has no effects to revert" in reverted.stderr
            rerun = await runctl_async(s, "start", "--from", run_id)
            assert rerun.code == 2
            assert "was tracked" in rerun.stderr
            deleted = await client.execute(cmd.DeleteRun(run_id=run_id), timeout=10)
            assert not deleted.rejected

    asyncio.run(body())


def test_a_failed_tracked_run_keeps_its_error(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            outcome = await client.track("router", "failed", "{}", "null", error="infeasible")
            assert not outcome.rejected
            summary = await client.get(outcome.run_id)
            assert (summary.state, summary.error, summary.tracked) == ("failed", "infeasible", True)

    asyncio.run(body())


def test_tracked_run_validation_as_nextmv_has_it(settings: Settings, tmp_path: Path) -> None:
    async def body() -> None:
        s = fast(settings)
        inp, outp, _ = _files(tmp_path)
        not_json = tmp_path / "bad.json"
        not_json.write_text("{orders: oops")
        base = ["track", "router", "--input", str(inp), "--output", str(outp)]
        async with worker_running(s), Client.connect(settings=s) as client:
            err = await runctl_async(s, *base, "--status", "succeeded", "--error", "boom")
            assert err.code == 2
            assert "--error is only allowed with --status failed" in err.stderr
            status = await runctl_async(s, *base, "--status", "done")
            assert status.code == 2
            assert "bad --status 'done'" in status.stderr
            bad = await runctl_async(
                s, "track", "router", "--status", "failed", "--input", str(not_json),
                "--output", str(outp),
            )  # fmt: skip
            assert bad.code == 2
            assert f"--input {not_json} is not JSON" in bad.stderr

            # The worker checks the same for callers other than runctl.
            rejected = await client.track("router", "succeeded", "{}", "{}", error="boom")
            assert rejected.rejected
            assert "an error message is only allowed with status failed" in rejected.reason
            rejected = await client.track("router", "failed", "{}", "{not json")
            assert rejected.rejected
            assert "the output must be JSON" in rejected.reason
            assert await client.list_runs() == []

    asyncio.run(body())

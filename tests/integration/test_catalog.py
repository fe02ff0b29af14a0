"""runctl knows the scenarios the workers publish, not its own: a scenario module loaded
only by the worker (RUNSTREAM_SCENARIO_MODULES set for the worker alone) can be listed and
started, and with no worker published runctl says so (exit 8)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import msgspec
import pytest

from runstream.settings import Settings

from .support import fast, runctl, runctl_async, worker_running

MODULE = "only_on_the_worker"
SCENARIO_SOURCE = textwrap.dedent(
    """
    import msgspec

    from runstream.domain.scenarios import Scenario


    class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        count: int = 2


    def _step(ctx, params, item):
        ctx.network.add_node(f"{ctx.run_id}:{item}", item=item)


    SCENARIO = Scenario(
        name="worker-only",
        version="7",
        description="Known to the worker alone.",
        params=Params,
        inputs=lambda params, start: range(start, params.count),
        step=_step,
        count=lambda params: params.count,
    )
    """
)


def test_runctl_lists_and_starts_a_scenario_only_the_worker_loaded(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / f"{MODULE}.py").write_text(SCENARIO_SOURCE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    s = fast(settings)  # runctl's settings: no scenario modules
    on_worker = msgspec.structs.replace(s, scenario_modules=(MODULE,))

    async def body() -> None:
        async with worker_running(on_worker):
            listed = await runctl_async(s, "scenarios", "--json")
            assert listed.code == 0, listed.stderr
            published = {p["name"]: p for p in json.loads(listed.stdout)}
            assert {"worker-only", "synthetic"} <= set(published)
            only = published["worker-only"]
            assert only["version"] == "7"
            assert "count" in json.dumps(only["parameters"])

            started = await runctl_async(s, "start", "worker-only", "--arg", "count=3", "--wait")
            assert started.code == 0, started.stderr
            assert started.stdout.split()[1] == "succeeded"

            bad = await runctl_async(s, "start", "worker-only", "--arg", "count=many")
            assert bad.code == 2, bad.stderr
            assert "bad arguments for scenario 'worker-only'" in bad.stderr
            unknown = await runctl_async(s, "start", "nowhere")
            assert unknown.code == 2, unknown.stderr
            assert "unknown scenario 'nowhere' (known: " in unknown.stderr
            assert "worker-only" in unknown.stderr

    asyncio.run(body())


def test_with_no_worker_published_runctl_says_so_and_exits_8(settings: Settings) -> None:
    for args in (("scenarios",), ("start", "synthetic", "--arg", "items=1")):
        result = runctl(settings, *args)
        assert result.code == 8, result
        assert result.stderr.strip() == (
            "runctl: no worker has published its scenarios: is a worker running? "
            "('make run' or 'runctl dev' starts one)"
        )

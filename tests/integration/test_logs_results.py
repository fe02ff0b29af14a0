"""A run's log lines and result files, on a real Redis with an in-process worker: bounds,
--since, --follow, the archive byte for byte, size limits, delete/revert, rebuild."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from pathlib import Path

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.settings import Settings
from runstream.store import index

from .support import fast, runctl_async, worker_running


def _part(n: int, every: int, size: int, seed: int = 0) -> bytes:
    """The content synthetic puts as part-<n>.txt."""
    line = f"{n * every} items processed, seed {seed}\n"
    return (line * (size // len(line) + 1))[:size].encode()


def test_log_lines_are_kept_in_order_and_bounded_with_a_line_saying_how_many_dropped(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings, max_log_lines=25, chunk_items=7)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start("synthetic", {"items": 30, "log_lines": 2})
            assert (await client.wait(run_id, timeout=20)).state == "succeeded"
            dropped, lines = await client.logs(run_id)
            expected = [f"item {i} line {k}" for i in range(30) for k in range(2)]
            assert dropped == 35
            assert [x.line for x in lines] == expected[-25:]

            result = await runctl_async(s, "logs", run_id)
            assert result.code == 0, result.stderr
            shown = result.stdout.splitlines()
            assert shown[0] == "[35 earlier lines dropped]"
            assert [line.split("  ", 1)[1] for line in shown[1:]] == expected[-25:]
            as_json = json.loads((await runctl_async(s, "logs", run_id, "--json")).stdout)
            assert as_json["dropped"] == 35
            assert [x["line"] for x in as_json["lines"]] == expected[-25:]
            assert as_json["lines"][0]["at"].endswith("Z")

    asyncio.run(body())


def test_logs_since_a_time_shows_only_the_lines_logged_from_then(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings, chunk_items=5)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start("synthetic", {"items": 20, "log_lines": 1, "delay_ms": 15})
            assert (await client.wait(run_id, timeout=20)).state == "succeeded"
            _, lines = await client.logs(run_id)
            times = sorted({x.at for x in lines})
            assert len(times) >= 3, "the run's chunks were logged at different times"
            cut = times[len(times) // 2]
            _, since = await client.logs(run_id, since=cut)
            assert since == [x for x in lines if x.at >= cut]
            assert 0 < len(since) < len(lines)
            _, none = await client.logs(run_id, since=times[-1] + 1)
            assert none == []

            result = await runctl_async(s, "logs", run_id, "--since", "2000-01-01T00:00:00Z")
            assert len(result.stdout.splitlines()) == 20
            result = await runctl_async(s, "logs", run_id, "--since", "1m")
            assert len(result.stdout.splitlines()) == 20
            bad = await runctl_async(s, "logs", run_id, "--since", "yesterday-ish")
            assert bad.code == 2
            assert "bad --since 'yesterday-ish'" in bad.stderr

    asyncio.run(body())


def test_logs_follow_prints_lines_as_they_come_and_returns_when_the_run_ends(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings, chunk_items=3)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start("synthetic", {"items": 30, "log_lines": 1, "delay_ms": 30})
            result = await runctl_async(s, "logs", run_id, "--follow", "--json", timeout=30)
            assert result.code == 0, result.stderr
            followed = [json.loads(line)["line"] for line in result.stdout.splitlines()]
            assert followed == [f"item {i} line 0" for i in range(30)]
            assert (await client.get(run_id)).state == "succeeded"

    asyncio.run(body())


def test_results_are_listed_fetched_and_archived_byte_for_byte(
    settings: Settings, tmp_path: Path
) -> None:
    async def body() -> None:
        s = fast(settings, chunk_items=3)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start(
                "synthetic", {"items": 20, "result_every": 5, "result_bytes": 1000, "seed": 7}
            )
            summary = await client.wait(run_id, timeout=20)
            assert summary.state == "succeeded"
            expected = {f"part-{n}.txt": _part(n, 5, 1000, seed=7) for n in range(1, 5)}
            assert summary.output_bytes == 4000
            assert summary.input_bytes > 0

            files = await client.results(run_id)
            assert [(f.name, f.size, f.media_type) for f in files] == [
                (name, 1000, "text/plain") for name in sorted(expected)
            ]
            listing = await runctl_async(s, "results", run_id)
            assert "part-3.txt" in listing.stdout and "text/plain" in listing.stdout

            one = tmp_path / "p2.txt"
            fetched = await runctl_async(s, "results", run_id, "part-2.txt", "-o", str(one))
            assert fetched.code == 0, fetched.stderr
            assert one.read_bytes() == expected["part-2.txt"]

            archive = tmp_path / "all.tar.gz"
            got = await runctl_async(s, "results", run_id, "--archive", "-o", str(archive))
            assert got.code == 0, got.stderr
            with tarfile.open(archive, "r:gz") as tar:
                members = tar.getmembers()
                assert sorted(m.name for m in members) == sorted(expected)
                for m in members:
                    extracted = tar.extractfile(m)
                    assert extracted is not None
                    assert extracted.read() == expected[m.name]

            missing = await runctl_async(s, "results", run_id, "nope.txt")
            assert missing.code == 2
            assert "has no result 'nope.txt'" in missing.stderr
            both = await runctl_async(s, "results", run_id, "x", "--archive", "-o", "f")
            assert both.code == 2

    asyncio.run(body())


def test_a_result_over_the_per_file_limit_fails_the_run_with_a_clear_error(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings, max_result_bytes=500)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start(
                "synthetic", {"items": 10, "result_every": 5, "result_bytes": 501}
            )
            summary = await client.wait(run_id, timeout=20)
            assert summary.state == "failed"
            assert "item 4: ResultTooLarge: result 'part-1.txt' is 501 bytes" in summary.error
            assert "RUNSTREAM_MAX_RESULT_BYTES" in summary.error
            assert summary.items_processed == 4
            assert await client.results(run_id) == []

    asyncio.run(body())


def test_results_over_the_per_run_limit_fail_the_run_and_keep_what_fit(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings, max_run_result_bytes=2500, chunk_items=4)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start(
                "synthetic", {"items": 20, "result_every": 2, "result_bytes": 1000}
            )
            summary = await client.wait(run_id, timeout=20)
            assert summary.state == "failed"
            assert "result 'part-3.txt' brings the run's results to 3000 bytes" in summary.error
            assert "RUNSTREAM_MAX_RUN_RESULT_BYTES" in summary.error
            assert [f.name for f in await client.results(run_id)] == ["part-1.txt", "part-2.txt"]
            assert summary.output_bytes == 2000

    asyncio.run(body())


def test_results_and_logs_stay_with_a_reverted_run_and_go_with_a_deleted_one(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start(
                "synthetic", {"items": 10, "result_every": 5, "log_lines": 1}
            )
            assert (await client.wait(run_id, timeout=20)).state == "succeeded"
            reverted = await client.execute(cmd.RevertRun(run_id=run_id), timeout=20)
            assert not reverted.rejected
            assert (await client.get(run_id)).state == "reverted"
            assert len(await client.results(run_id)) == 2
            assert len((await client.logs(run_id))[1]) == 10

            deleted = await client.execute(cmd.DeleteRun(run_id=run_id), timeout=20)
            assert not deleted.rejected
            k = client.keys
            assert await client.redis.exists(k.logs(run_id), k.results(run_id)) == 0
            assert await client.redis.exists(k.result_meta(run_id)) == 0
            gone = await runctl_async(s, "results", run_id)
            assert gone.code == 3
            assert "was deleted" in gone.stderr

    asyncio.run(body())


def test_rebuilding_gives_the_same_logs_and_results(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings, max_log_lines=15, chunk_items=4)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_ids = [
                await client.start(
                    "synthetic", {"items": 12, "log_lines": 2, "result_every": 3, "seed": n}
                )
                for n in range(3)
            ]
            before = {}
            for run_id in run_ids:
                assert (await client.wait(run_id, timeout=20)).state == "succeeded"
                dropped, lines = await client.logs(run_id)
                archive = await client.results_archive(run_id)
                before[run_id] = (dropped, [(x.at, x.line) for x in lines], _files(archive))
            k = client.keys
            await client.redis.delete(*(k.logs(r) for r in run_ids))
            await client.redis.delete(*(k.results(r) for r in run_ids))
            await client.redis.hset(k.meta(run_ids[0]), "log_dropped", 999)
            await index.rebuild(client.redis, k, client.store)
            for run_id in run_ids:
                dropped, lines = await client.logs(run_id)
                archive = await client.results_archive(run_id)
                after = (dropped, [(x.at, x.line) for x in lines], _files(archive))
                assert after == before[run_id]
                assert dropped == 9

    asyncio.run(body())


def _files(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            extracted = tar.extractfile(m)
            assert extracted is not None
            out[m.name] = extracted.read()
        return out

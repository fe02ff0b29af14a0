"""Logs, results, bulk actions, network stats, dead letters, tombstones and tracked runs
over HTTP, against a real API process, real workers and real Redis."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from runstream.keys import Fields, Keys
from runstream.settings import Settings

from .api_service import ApiService, api_service
from .test_api_events import sse_messages


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[ApiService]:
    with api_service(settings, tmp_path) as service:
        yield service


def start(api: ApiService, wait: bool = True, **args: Any) -> str:
    response = api.http.post(
        "/runs", params={"wait": str(wait).lower()}, json={"scenario": "synthetic", "args": args}
    )
    assert response.status_code == (200 if wait else 202), response.text
    run_id: str = response.json()["run_id"]
    return run_id


def test_logs_page_and_follow_with_iso_times(api: ApiService) -> None:
    run_id = start(api, items=5, log_lines=2)
    first = api.http.get(f"/runs/{run_id}/logs", params={"limit": 4}).json()
    assert [line["line"] for line in first["lines"]] == [
        "item 0 line 0",
        "item 0 line 1",
        "item 1 line 0",
        "item 1 line 1",
    ]
    assert first["lines"][0]["at"].endswith("Z")
    rest = api.http.get(f"/runs/{run_id}/logs", params={"after": first["next_after"]}).json()
    assert len(rest["lines"]) == 6 and "next_after" not in rest
    bad = api.http.get(f"/runs/{run_id}/logs", params={"since": "noon"})
    assert bad.status_code == 400 and bad.json()["field"] == "since"

    # Followed: every line as an event, resumable by id, then "end" once the run ended.
    with api.http.stream(
        "GET",
        f"/runs/{run_id}/logs",
        headers={"Accept": "text/event-stream", "Last-Event-ID": first["next_after"]},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    assert "event: end" in text
    followed = [b for _, b in sse_messages_of(text) if "line" in b]
    assert [b["line"] for b in followed] == [line["line"] for line in rest["lines"]]


def sse_messages_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    class _Lines:
        def iter_lines(self) -> Iterator[str]:
            yield from text.splitlines()

    return list(sse_messages(_Lines()))  # type: ignore[arg-type]


def test_results_list_one_file_and_the_archive(api: ApiService) -> None:
    run_id = start(api, items=4, result_every=2, result_bytes=50)
    files = api.http.get(f"/runs/{run_id}/results").json()["files"]
    assert sorted(f["name"] for f in files) == ["part-1.txt", "part-2.txt"]
    one = api.http.get(f"/runs/{run_id}/results/part-1.txt")
    assert one.status_code == 200
    assert one.headers["content-type"].startswith("text/plain")
    assert len(one.content) == 50
    missing = api.http.get(f"/runs/{run_id}/results/nope.txt")
    assert missing.status_code == 404
    assert "part-1.txt" in missing.json()["message"]
    archive = api.http.get(f"/runs/{run_id}/results.tar.gz")
    assert archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["part-1.txt", "part-2.txt"]
        member = tar.extractfile("part-1.txt")
        assert member is not None and member.read() == one.content


def test_bulk_stop_with_a_dry_run_first(api: ApiService) -> None:
    slow = [start(api, wait=False, items=100000, delay_ms=1) for _ in range(3)]
    done = start(api, items=1)
    for run_id in slow:
        api.wait_state(run_id, "running")
    preview = api.http.post(
        "/runs/bulk", json={"action": "stop", "where": ["state=running"], "dry_run": True}
    )
    assert preview.status_code == 200, preview.text
    assert preview.json()["count"] == 3
    assert {r["id"] for r in preview.json()["first"]} == set(slow)
    assert api.http.get(f"/runs/{slow[0]}").json()["state"] == "running"  # nothing sent

    stopped = api.http.post(
        "/runs/bulk",
        json={"action": "stop", "where": ["state=running"], "reason": "bulk", "wait": True},
    )
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert body["counts"] == {"done": 3, "rejected": 0, "timeout": 0}
    for run_id in slow:
        run = api.http.get(f"/runs/{run_id}").json()
        assert run["state"] == "stopped" and run["reason"] == "bulk"
    assert api.http.get(f"/runs/{done}").json()["state"] == "succeeded"
    history = api.http.get(f"/runs/{slow[0]}/history").json()["events"]
    # Not necessarily the last event: a chunk recorded just before the stop is confirmed
    # (ItemsProcessed) after it.
    stop = next(h["event"] for h in reversed(history) if h["event"]["type"] == "RunStopped")
    assert stop["bulk_id"] == body["bulk_id"]

    bad = api.http.post("/runs/bulk", json={"action": "stop", "where": ["colour=red"]})
    assert bad.status_code == 400 and bad.json()["field"] == "where"
    empty = api.http.post("/runs/bulk", json={"action": "stop", "where": []})
    assert empty.status_code == 400
    with api.client_as("vic", "viewer") as viewer:
        refused = viewer.post("/runs/bulk", json={"action": "cancel", "where": ["state=stopped"]})
        assert refused.status_code == 403 and "operator" in refused.json()["message"]
        allowed = viewer.post(
            "/runs/bulk", json={"action": "cancel", "where": ["state=stopped"], "dry_run": True}
        )
        assert allowed.status_code == 200 and allowed.json()["count"] == 3


def test_network_stats_tombstones_and_tracked_runs(api: ApiService) -> None:
    run_id = start(api, items=3)
    stats = api.http.get("/network/stats").json()["stats"]
    assert stats["nodes"] >= 3
    deleted = api.http.post(
        f"/runs/{run_id}/delete", params={"wait": "true"}, json={"mode": "keep_effects"}
    )
    assert deleted.status_code == 200, deleted.text
    gone = api.http.get(f"/runs/{run_id}")
    assert gone.status_code == 410 and gone.json()["tombstone"]["run_id"] == run_id
    tombs = api.http.get("/tombstones").json()["tombstones"]
    assert [t["run_id"] for t in tombs] == [run_id]
    assert tombs[0]["deleted_at"].endswith("Z")

    tracked = api.http.post(
        "/runs/tracked",
        params={"wait": "true"},
        json={
            "scenario": "synthetic",
            "status": "succeeded",
            "input": {"items": 2},
            "output": {"ok": True},
            "duration_ms": 1200,
            "log": ["ran elsewhere"],
        },
    )
    assert tracked.status_code == 200, tracked.text
    tracked_id = tracked.json()["run_id"]
    run = api.http.get(f"/runs/{tracked_id}").json()
    assert run["tracked"] is True and run["state"] == "succeeded"
    output = api.http.get(f"/runs/{tracked_id}/results/output.json")
    assert json.loads(output.content) == {"ok": True}
    unknown = api.http.post(
        "/runs/tracked",
        json={"scenario": "nope", "status": "failed", "input": {}, "output": {}},
    )
    assert unknown.status_code == 422 and unknown.json()["field"] == "scenario"


def test_dead_letters_listed_retried_and_dropped_by_an_admin(api: ApiService) -> None:
    keys = Keys(api.settings.prefix, api.settings.shards)
    r = redis.Redis.from_url(api.settings.redis_url)
    try:
        for n in range(2):
            r.xadd(keys.commands(0), {Fields.COMMAND: f"not a command {n}".encode()})
    finally:
        r.close()
    deadline = time.monotonic() + 30
    letters: list[dict[str, Any]] = []
    while len(letters) < 2:
        assert time.monotonic() < deadline, letters
        letters = api.http.get("/dead-letters").json()["letters"]
        time.sleep(0.1)
    assert all(letter["reason"] for letter in letters)
    with api.client_as("opal", "operator") as operator:
        refused = operator.get("/dead-letters")
        assert refused.status_code == 403 and "admin" in refused.json()["message"]
    dropped = api.http.delete(f"/dead-letters/{letters[0]['id']}")
    assert dropped.status_code == 204
    retried = api.http.post(f"/dead-letters/{letters[1]['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["published_as"]
    missing = api.http.delete(f"/dead-letters/{letters[0]['id']}")
    assert missing.status_code == 404

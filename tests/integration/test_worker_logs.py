"""A real worker process's log: one JSON object per line, the standard library's lines
(faststream's among them) included, no colour codes; a rejected command is logged once,
as rejected."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from runstream.settings import Settings

from .support import fast, logs_of, runctl, worker_pool


def parse_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        assert "\x1b[" not in line, f"colour codes in a log line: {line!r}"
        try:
            parsed = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n--- log\n{text}") from None
        assert isinstance(parsed, dict) and "event" in parsed and "level" in parsed, line
        lines.append(parsed)
    return lines


def test_worker_log_is_json_and_a_rejection_is_logged_once(
    tmp_path: Path, settings: Settings
) -> None:
    s = fast(settings)
    with worker_pool(s, tmp_path) as pool:
        worker = pool.start("w-logs")
        worker.wait_ready()  # it has published its scenarios: runctl start checks them
        started = runctl(s, "start", "synthetic", "--arg", "items=3", "--wait", "--json")
        assert started.code == 0, f"{started}\n{logs_of(pool)}"
        run_id = json.loads(started.stdout)["id"]
        refused = runctl(s, "continue", run_id)
        assert refused.code == 1, refused
        worker.terminate()
        assert worker.proc.wait(30) == 0, logs_of(pool)
        lines = parse_lines(worker.log())

    events = [line["event"] for line in lines]
    assert "worker_started" in events and "worker_stopped" in events
    # faststream logs through the standard library: rendered by structlog like the rest.
    assert any(str(line.get("logger", "")).startswith("faststream") for line in lines), events
    rejected = [line for line in lines if line["event"] == "command_rejected"]
    assert len(rejected) == 1, rejected
    assert rejected[0]["command"] == "ContinueRun" and rejected[0]["run_id"] == run_id
    by_command = Counter(
        line["command_id"] for line in lines if line["event"].startswith("command_")
    )
    assert by_command[rejected[0]["command_id"]] == 1, lines

"""What this worker did, as Prometheus counters (served on its status port, see
``status_server``). The rest of the worker reports through the functions here, one call
each, so its code stays free of metric names and labels.

Cheap on the hot path: a labelled child is looked up once and kept (``labels()`` costs
more than the increment), and effects are counted per chunk or revert step, not each.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter(
    "runstream_commands",
    "Commands this worker handled, by type and outcome (applied, rejected, duplicate)",
    ["type", "outcome"],
)
COMMAND_LATENCY = Histogram(
    "runstream_command_latency_seconds",
    "From a command's issue (its issued_at) to its outcome stored, by type",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EFFECTS = Counter(
    "runstream_effects",
    "Network effects by outcome: applied (confirmed in a chunk), compensated and skipped "
    "(conflicts) by reverts",
    ["outcome"],
)
DEAD_LETTERED = Counter(
    "runstream_dead_lettered",
    "Messages this worker parked in a dead-letter stream (undecodable, or kept failing)",
)
LEASE_TAKEOVERS = Counter(
    "runstream_lease_takeovers",
    "Runs under way (started before) that this worker took from the runnable line: their "
    "driver died, stalled past its lease or shut down",
)
LEASES_LOST = Counter(
    "runstream_leases_lost",
    "Runs this worker stopped driving because another worker took their lease",
)
RUNS_DRIVEN = Gauge("runstream_worker_runs_driven", "Runs this worker is driving now")

_handled: dict[tuple[str, str], Counter] = {}
_latency: dict[str, Histogram] = {}
_applied = EFFECTS.labels("applied")
_compensated = EFFECTS.labels("compensated")
_skipped = EFFECTS.labels("skipped")


def command_handled(kind: str, outcome: str, issued_at: float) -> None:
    """One command's outcome stored: counted, and its latency since it was issued."""
    counter = _handled.get((kind, outcome))
    if counter is None:
        counter = _handled[(kind, outcome)] = COMMANDS.labels(kind, outcome)
    counter.inc()
    latency = _latency.get(kind)
    if latency is None:
        latency = _latency[kind] = COMMAND_LATENCY.labels(kind)
    # Clocks of two machines: a command "from the future" counts as instant.
    latency.observe(max(0.0, time.time() - issued_at))


def effects_applied(count: int) -> None:
    if count:
        _applied.inc(count)


def effects_compensated(compensated: int, skipped: int) -> None:
    if compensated:
        _compensated.inc(compensated)
    if skipped:
        _skipped.inc(skipped)


def dead_lettered() -> None:
    DEAD_LETTERED.inc()


def lease_taken_over() -> None:
    LEASE_TAKEOVERS.inc()


def lease_lost() -> None:
    LEASES_LOST.inc()


def track_runs_driven(count: Callable[[], float]) -> None:
    """Read at each scrape: the executor's count of runs in hand."""
    RUNS_DRIVEN.set_function(count)

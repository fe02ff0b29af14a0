"""Runs as Mistral executions, scenarios as Mistral workflows.

Execution ids are the run ids written as UUIDs (a run id is a 128-bit ULID: the same
number), since Mistral clients send only UUID-like ids as ``source_execution_id``. States:

| runstream  | Mistral   | state_info                       |
| ---------- | --------- | -------------------------------- |
| queued     | IDLE      |                                  |
| running    | RUNNING   |                                  |
| stopped    | PAUSED    | the stop reason                  |
| succeeded  | SUCCESS   |                                  |
| failed     | ERROR     | the error                        |
| cancelled  | CANCELLED | the cancel reason                |
| reverting  | RUNNING   | "reverting"                      |
| reverted   | CANCELLED | "reverted: N effects compensated"|

Revert has no Mistral equivalent: use the runstream API (POST /runs/{id}/revert).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from runstream.domain.run import RunSummary
from runstream.domain.scenarios import Scenario
from runstream.ids import is_run_id

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
PROJECT_ID = "<default-project>"
_WORKFLOW_NS = uuid.UUID("5b0c6f0e-7a53-4d0e-9a51-52756e737472")

STATES = {
    "queued": "IDLE",
    "running": "RUNNING",
    "stopped": "PAUSED",
    "succeeded": "SUCCESS",
    "failed": "ERROR",
    "cancelled": "CANCELLED",
    "reverting": "RUNNING",
    "reverted": "CANCELLED",
}
MISTRAL_STATES = ("IDLE", "RUNNING", "PAUSED", "SUCCESS", "ERROR", "CANCELLED")


class Execution(msgspec.Struct, kw_only=True):
    """Mistral v2's execution resource, with its strings where Mistral sends strings
    (``input``, ``output`` and ``params`` are JSON text)."""

    id: str
    workflow_id: str
    workflow_name: str
    workflow_namespace: str = ""
    description: str
    tags: list[str] = []
    params: str
    input: str
    output: str
    state: str
    state_info: str | None
    task_execution_id: str | None = None
    root_execution_id: str | None = None
    source_execution_id: str | None
    created_at: str
    updated_at: str
    project_id: str = PROJECT_ID


class Workflow(msgspec.Struct, kw_only=True):
    id: str
    name: str
    namespace: str = ""
    # Mistral's input spec: "name, name=default, ..."
    input: str
    definition: str
    tags: list[str] = []
    scope: str = "public"
    project_id: str = PROJECT_ID
    created_at: str
    updated_at: str | None = None


def run_to_uuid(run_id: str) -> str:
    n = 0
    for c in run_id:
        n = n * 32 + _VALUE[c]
    return str(uuid.UUID(int=n))


def uuid_to_run(text: str) -> str | None:
    """The run id an execution id names (a UUID, or a run id as it is); None if neither."""
    if is_run_id(text):
        return text
    try:
        n = uuid.UUID(text).int
    except ValueError:
        return None
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[n & 31])
        n >>= 5
    return "".join(reversed(chars))


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def workflow_id(name: str) -> str:
    return str(uuid.uuid5(_WORKFLOW_NS, name))


def state_info(run: RunSummary) -> str | None:
    match run.state:
        case "failed":
            return run.error or None
        case "stopped" | "cancelled":
            return run.reason or None
        case "reverting":
            return "reverting"
        case "reverted":
            return f"reverted: {run.effects.get('compensated', 0)} effects compensated"
    return None


def execution(run: RunSummary, output: dict[str, Any] | None = None) -> Execution:
    return Execution(
        id=run_to_uuid(run.id),
        workflow_id=workflow_id(run.scenario),
        workflow_name=run.scenario,
        description=run.description or run.name,
        params=json.dumps({"run_id": run.id, "scenario_version": run.scenario_version}),
        input=json.dumps(run.args),
        output=json.dumps(output or {}),
        state=STATES.get(run.state, "ERROR"),
        state_info=state_info(run),
        source_execution_id=run_to_uuid(run.source_run_id) if run.source_run_id else None,
        created_at=when(run.created_at),
        updated_at=when(run.updated_at),
    )


def _input_spec(schema: dict[str, Any]) -> str:
    defs = schema.get("$defs", {})
    first: dict[str, Any] = next(iter(defs.values()), schema) if defs else schema
    required = set(first.get("required", []))
    parts = []
    for name, prop in first.get("properties", {}).items():
        if name in required or "default" not in prop:
            parts.append(name)
        else:
            parts.append(f"{name}={json.dumps(prop['default'])}")
    return ", ".join(parts)


def workflow(scenario: Scenario[Any]) -> Workflow:
    described = scenario.describe()
    return Workflow(
        id=workflow_id(scenario.name),
        name=scenario.name,
        input=_input_spec(described["parameters"]),
        definition=json.dumps(
            {"version": scenario.version, "description": scenario.description}, indent=2
        ),
        tags=[f"version:{scenario.version}"],
        created_at=when(0.0) or "1970-01-01 00:00:00",
    )

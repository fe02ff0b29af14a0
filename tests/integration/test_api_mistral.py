"""The Mistral v2 facade, driven by the real python-mistralclient (no Keystone)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mistralclient.api.base import APIException  # type: ignore[import-untyped]
from mistralclient.api.v2 import client as mistral  # type: ignore[import-untyped]

from runstream.settings import Settings

from .api_service import ApiService, api_service, create_token


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[ApiService]:
    with api_service(settings, tmp_path) as service:
        yield service


def _client(api: ApiService, role: str = "admin") -> Any:
    token = create_token(api.settings, "mistral-user", role)  # type: ignore[arg-type]
    return mistral.Client(mistral_url=f"{api.url}/v2", auth_token=token)


def _until_state(c: Any, ex_id: str, *states: str) -> Any:
    deadline = time.monotonic() + 30
    while True:
        ex = c.executions.get(ex_id)
        if ex.state in states:
            return ex
        assert time.monotonic() < deadline, f"{ex_id} still {ex.state}"
        time.sleep(0.05)


def test_workflows_and_an_execution_run_to_success(api: ApiService) -> None:
    c = _client(api)
    names = {w.name for w in c.workflows.list()}
    assert {"synthetic", "notify"} <= names
    wf = c.workflows.get("synthetic")
    assert "items" in wf.input
    ex = c.executions.create("synthetic", workflow_input={"items": 5}, description="five")
    assert ex.workflow_name == "synthetic" and ex.description == "five"
    done = _until_state(c, ex.id, "SUCCESS")
    assert json.loads(done.input)["items"] == 5
    assert isinstance(done.created_at, str) and isinstance(done.output, str)
    rerun = c.executions.create(source_execution_id=ex.id)
    assert rerun.source_execution_id == ex.id
    _until_state(c, rerun.id, "SUCCESS")


def test_pause_resume_cancel_delete_and_errors(api: ApiService) -> None:
    c = _client(api)
    ex = c.executions.create("synthetic", workflow_input={"items": 100000, "delay_ms": 1})
    _until_state(c, ex.id, "RUNNING")
    paused = c.executions.update(ex.id, "PAUSED")
    assert paused.state == "PAUSED"
    with pytest.raises(APIException) as refused:
        c.executions.update(ex.id, "PAUSED")
    assert refused.value.error_code == 409
    assert c.executions.update(ex.id, "RUNNING").state == "RUNNING"
    cancelled = c.executions.update(ex.id, "CANCELLED")
    assert cancelled.state == "CANCELLED"
    with pytest.raises(APIException) as kept:
        c.executions.delete(ex.id)  # it has effects: a plain delete is refused
    assert kept.value.error_code == 409
    c.executions.delete(ex.id, force=True)  # keeps its effects
    with pytest.raises(APIException) as gone:
        c.executions.get(ex.id)
    assert gone.value.error_code == 404
    with pytest.raises(APIException) as unknown:
        c.executions.create("no-such-workflow")
    assert unknown.value.error_code == 404


def test_list_filters_sort_marker_limit_and_fields(api: ApiService) -> None:
    c = _client(api)
    ids = []
    for n in (1, 2, 3):
        ex = c.executions.create("synthetic", workflow_input={"items": n})
        _until_state(c, ex.id, "SUCCESS")
        ids.append(ex.id)
    listed = c.executions.list(sort_keys="created_at", sort_dirs="desc")
    assert [e.id for e in listed] == ids[::-1]
    first = c.executions.list(limit=2)
    assert [e.id for e in first] == ids[:2]
    rest = c.executions.list(marker=first[-1].id, limit=2)
    assert [e.id for e in rest] == ids[2:]
    assert [e.id for e in c.executions.list(state="SUCCESS")] == ids
    assert c.executions.list(state="in:RUNNING,PAUSED") == []
    assert [e.id for e in c.executions.list(id=f"neq:{ids[0]}")] == ids[1:]
    assert len(c.executions.list(workflow_name="has:synth")) == 3
    slim = c.executions.list(fields=["state"])
    assert all(set(e.to_dict()) <= {"id", "state"} for e in slim)
    with pytest.raises(APIException) as bad:
        c.executions.list(colour="red")
    assert bad.value.error_code == 400


def test_a_viewer_token_cannot_start_and_no_token_is_401(api: ApiService) -> None:
    viewer = _client(api, "viewer")
    assert viewer.executions.list() == []
    with pytest.raises(APIException) as refused:
        viewer.executions.create("synthetic", workflow_input={"items": 1})
    assert refused.value.error_code == 403
    anonymous = mistral.Client(mistral_url=f"{api.url}/v2")
    with pytest.raises(APIException) as unauthorized:
        anonymous.executions.list()
    assert unauthorized.value.error_code == 401

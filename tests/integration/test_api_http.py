"""The HTTP API end to end: a real API process, real workers, real Redis, over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream.settings import Settings

from .api_service import ApiService, api_service


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[ApiService]:
    with api_service(settings, tmp_path) as service:
        yield service


def test_scenarios_are_listed_with_their_parameter_json_schema(api: ApiService) -> None:
    response = api.http.get("/scenarios")
    assert response.status_code == 200
    by_name = {s["name"]: s for s in response.json()}
    assert {"synthetic", "graph-import", "notify"} <= set(by_name)
    schema = by_name["synthetic"]["parameters"]
    assert "$defs" in schema or "properties" in schema
    assert api.http.get("/scenarios/synthetic").json()["name"] == "synthetic"
    missing = api.http.get("/scenarios/nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["message"]


def test_a_started_run_is_polled_to_its_end_and_listed(api: ApiService) -> None:
    response = api.http.post("/runs", json={"scenario": "synthetic", "args": {"items": 30}})
    assert response.status_code == 202, response.text
    body = response.json()
    run_id, command_id = body["run_id"], body["command_id"]
    assert response.headers["location"] == f"/commands/{command_id}"
    assert response.headers["content-location"] == f"/runs/{run_id}"
    run = api.wait_state(run_id, "succeeded")
    assert run["items_processed"] == 30
    # Times in ISO 8601 with the zone, never epoch floats.
    assert run["created_at"].endswith("Z") and run["ended_at"].endswith("Z")
    assert run["created_at"] <= run["started_at"] <= run["ended_at"]
    assert run["actor"] == "tester"  # the token's subject
    poll = api.http.get(f"/commands/{command_id}")
    assert poll.status_code == 200
    assert poll.json()["status"] in ("accepted", "done")
    assert poll.json()["run"]["id"] == run_id

    listed = api.http.get("/runs", params={"state": "succeeded"}).json()
    assert [r["id"] for r in listed["runs"]] == [run_id]
    history = api.http.get(f"/runs/{run_id}/history").json()["events"]
    types = [e["event"]["type"] for e in history]
    assert types[0] == "RunQueued" and types[-1] == "RunSucceeded"


def test_start_with_wait_answers_once_the_run_ended(api: ApiService) -> None:
    response = api.http.post(
        "/runs", params={"wait": "true"}, json={"scenario": "synthetic", "args": {"items": 5}}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done"
    assert body["event"]["type"] == "RunSucceeded"
    assert body["run"]["state"] == "succeeded"


def test_list_pages_with_a_marker_and_caps_the_page_size(api: ApiService) -> None:
    ids = [
        api.http.post(
            "/runs", params={"wait": "true"}, json={"scenario": "synthetic", "args": {"items": 1}}
        ).json()["run_id"]
        for _ in range(3)
    ]
    first = api.http.get("/runs", params={"limit": 2}).json()
    assert [r["id"] for r in first["runs"]] == ids[:2]
    second = api.http.get("/runs", params={"limit": 2, "marker": first["next_marker"]}).json()
    assert [r["id"] for r in second["runs"]] == ids[2:]
    assert second.get("next_marker") is None
    too_many = api.http.get("/runs", params={"limit": 100_000})
    assert too_many.status_code == 400
    assert too_many.json()["field"] == "limit"
    bad_state = api.http.get("/runs", params={"state": "sleeping"})
    assert bad_state.status_code == 400
    assert "sleeping" in bad_state.json()["message"]


def test_stop_continue_cancel_with_wait_and_a_rejection_is_409(api: ApiService) -> None:
    start = api.http.post(
        "/runs", json={"scenario": "synthetic", "args": {"items": 100000, "delay_ms": 1}}
    )
    run_id = start.json()["run_id"]
    api.wait_state(run_id, "running")
    stop = api.http.post(
        f"/runs/{run_id}/stop", params={"wait": "true"}, json={"reason": "looks wrong"}
    )
    assert stop.status_code == 200, stop.text
    assert stop.json()["run"]["state"] == "stopped"
    again = api.http.post(f"/runs/{run_id}/stop", params={"wait": "true"})
    assert again.status_code == 409, again.text
    problem = again.json()
    assert problem["error"] == "rejected" and problem["message"]
    cont = api.http.post(f"/runs/{run_id}/continue", params={"wait": "true"})
    assert cont.status_code == 200, cont.text
    cancel = api.http.post(
        f"/runs/{run_id}/cancel", params={"wait": "true"}, json={"reason": "enough"}
    )
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["run"]["state"] == "cancelled"
    assert cancel.json()["run"]["reason"] == "enough"


def test_revert_dry_run_then_revert_then_delete_leaves_a_tombstone_410(api: ApiService) -> None:
    run_id = api.http.post(
        "/runs", params={"wait": "true"}, json={"scenario": "synthetic", "args": {"items": 20}}
    ).json()["run_id"]
    plain = api.http.post(f"/runs/{run_id}/delete", params={"wait": "true"})
    assert plain.status_code == 409
    assert "revert" in plain.json()["message"]
    plan = api.http.post(f"/runs/{run_id}/revert", params={"dry_run": "true"})
    assert plan.status_code == 200, plan.text
    assert plan.json()["compensate"] > 0
    assert api.http.get(f"/runs/{run_id}").json()["state"] == "succeeded"  # nothing changed
    reverted = api.http.post(f"/runs/{run_id}/revert", params={"wait": "true"})
    assert reverted.status_code == 200, reverted.text
    assert reverted.json()["run"]["state"] == "reverted"
    twice = api.http.post(f"/runs/{run_id}/revert", params={"dry_run": "true"})
    assert twice.status_code == 409
    deleted = api.http.post(f"/runs/{run_id}/delete", params={"wait": "true"})
    assert deleted.status_code == 200, deleted.text
    gone = api.http.get(f"/runs/{run_id}")
    assert gone.status_code == 410
    assert gone.json()["tombstone"]["run_id"] == run_id
    assert api.http.post(f"/runs/{run_id}/stop").status_code == 410
    assert api.http.get(f"/runs/{run_id}/history").status_code == 410


def test_unknown_and_malformed_runs_and_bad_input_are_json_errors(api: ApiService) -> None:
    unknown = api.http.get("/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert unknown.status_code == 404
    assert "does not exist" in unknown.json()["message"]
    assert api.http.post("/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV/stop").status_code == 404
    malformed = api.http.get("/runs/not-a-run")
    assert malformed.status_code == 400
    assert malformed.json()["field"] == "run_id"
    no_scenario = api.http.post("/runs", json={"scenario": "nope"})
    assert no_scenario.status_code == 422
    assert "nope" in no_scenario.json()["message"]
    assert no_scenario.json()["field"] == "scenario"
    bad_args = api.http.post("/runs", json={"scenario": "synthetic", "args": {"items": "many"}})
    assert bad_args.status_code == 422
    assert bad_args.json()["field"] == "args"
    assert "items" in bad_args.json()["message"]
    unknown_field = api.http.post("/runs", json={"scenario": "synthetic", "colour": "red"})
    assert unknown_field.status_code == 400
    assert "colour" in unknown_field.json()["message"]
    not_json = api.http.post(
        "/runs", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"] == "bad_input"
    big = api.http.post("/runs", json={"scenario": "synthetic", "name": "x" * 300_000})
    assert big.status_code == 413
    assert big.json()["error"] == "too_large"
    assert api.http.get("/nowhere").json()["status"] == 404
    assert api.http.get("/commands/unknown-command").status_code == 404


def test_a_retried_start_with_the_same_idempotency_key_makes_one_run(api: ApiService) -> None:
    key = str(uuid.uuid4())
    body = {"scenario": "synthetic", "args": {"items": 5}}
    first = api.http.post("/runs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202
    retries = [
        api.http.post("/runs", json=body, headers={"Idempotency-Key": key}) for _ in range(3)
    ]
    waited = api.http.post(
        "/runs", params={"wait": "true"}, json=body, headers={"Idempotency-Key": key}
    )
    run_id = first.json()["run_id"]
    assert {r.json()["run_id"] for r in [*retries, waited]} == {run_id}
    assert waited.status_code == 200, waited.text
    assert waited.json()["run"]["state"] == "succeeded"
    assert len(api.http.get("/runs").json()["runs"]) == 1
    history = api.http.get(f"/runs/{run_id}/history").json()["events"]
    assert [e["event"]["type"] for e in history].count("RunQueued") == 1
    other = api.http.post("/runs", json={**body, "name": "other"}, headers={"Idempotency-Key": key})
    assert other.status_code == 422
    assert other.json()["field"] == "Idempotency-Key"


def test_a_retried_stop_is_applied_once_and_a_retried_rejection_stays_409(
    api: ApiService,
) -> None:
    run_id = api.http.post(
        "/runs", json={"scenario": "synthetic", "args": {"items": 100000, "delay_ms": 1}}
    ).json()["run_id"]
    api.wait_state(run_id, "running")
    headers = {"Idempotency-Key": "stop-1"}
    first = api.http.post(f"/runs/{run_id}/stop", params={"wait": "true"}, headers=headers)
    assert first.status_code == 200, first.text
    retry = api.http.post(f"/runs/{run_id}/stop", params={"wait": "true"}, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json()["command_id"] == first.json()["command_id"]
    history = api.http.get(f"/runs/{run_id}/history", params={"limit": 500}).json()["events"]
    assert [e["event"]["type"] for e in history].count("RunStopped") == 1
    # A stop of a stopped run is rejected, and so is each retry of it (never applied).
    reject_headers = {"Idempotency-Key": "stop-2"}
    for _ in range(2):
        again = api.http.post(
            f"/runs/{run_id}/stop", params={"wait": "true"}, headers=reject_headers
        )
        assert again.status_code == 409, again.text
    api.http.post(f"/runs/{run_id}/cancel", params={"wait": "true"})
    # A retried delete answers as the delete did, though the run is gone now.
    api.http.post(
        f"/runs/{run_id}/delete",
        json={"mode": "keep_effects"},
        params={"wait": "true"},
        headers={"Idempotency-Key": "del"},
    )
    retried = api.http.post(
        f"/runs/{run_id}/delete",
        json={"mode": "keep_effects"},
        params={"wait": "true"},
        headers={"Idempotency-Key": "del"},
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "done"


def test_openapi_31_document_and_a_docs_page_without_cdn(api: ApiService) -> None:
    doc = api.http.get("/schema/openapi.json")
    assert doc.status_code == 200
    spec = doc.json()
    assert spec["openapi"].startswith("3.1")
    assert "/runs/{run_id}/stop" in spec["paths"]
    created_at = spec["components"]["schemas"]["RunSummary"]["properties"]["created_at"]
    assert created_at["format"] == "date-time" and "string" in created_at["type"]
    messages = api.http.get("/asyncapi").json()
    assert messages["asyncapi"].startswith("3.")
    prefix = api.settings.prefix
    commands = messages["channels"]["commands"]
    # The served document names the deployment's own keys: its prefix, shard 0's hash tag.
    assert commands["address"] == f"{prefix}:{{shardTag}}:commands"
    assert commands["parameters"]["shardTag"]["examples"][0] == f"{{{prefix}:s0}}"
    page = api.http.get("/schema")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text, page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert api.http.get(f"/schema/assets/{asset}").status_code == 200

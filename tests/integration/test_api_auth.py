"""Access to the HTTP API: tokens (stored hashed) with a role per project or for all;
401 without a valid token, 403 naming the role needed; the subject is the actor."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from runstream.keys import Keys
from runstream.settings import Settings

from .api_service import ApiService, api_service
from .support import runctl


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[ApiService]:
    with api_service(settings, tmp_path) as service:
        yield service


def test_no_bad_or_revoked_token_is_401_with_a_json_body(api: ApiService) -> None:
    anonymous = httpx.get(f"{api.url}/runs")
    assert anonymous.status_code == 401
    assert "Authorization: Bearer" in anonymous.json()["message"]
    bad = httpx.get(f"{api.url}/runs", headers={"Authorization": "Bearer rst_abc_nope"})
    assert bad.status_code == 401
    assert bad.json()["error"] == "unauthorized"
    basic = httpx.get(f"{api.url}/runs", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    assert httpx.get(f"{api.url}/health").status_code == 200  # open: for probes
    assert httpx.get(f"{api.url}/schema/openapi.json").status_code == 200


def test_roles_viewer_reads_operator_starts_admin_deletes(api: ApiService) -> None:
    with (
        api.client_as("vera", "viewer") as viewer,
        api.client_as("otto", "operator") as operator,
    ):
        assert viewer.get("/runs").status_code == 200
        assert viewer.get("/scenarios").status_code == 200
        refused = viewer.post("/runs", json={"scenario": "synthetic", "args": {"items": 2}})
        assert refused.status_code == 403
        assert "operator" in refused.json()["message"]
        started = operator.post(
            "/runs", params={"wait": "true"}, json={"scenario": "synthetic", "args": {"items": 2}}
        )
        assert started.status_code == 200, started.text
        run_id = started.json()["run_id"]
        assert started.json()["run"]["actor"] == "otto"
        history = viewer.get(f"/runs/{run_id}/history").json()["events"]
        assert history[0]["event"]["actor"] == "otto"
        denied = operator.post(f"/runs/{run_id}/delete", json={"mode": "keep_effects"})
        assert denied.status_code == 403
        assert "admin" in denied.json()["message"]
        assert operator.post(f"/runs/{run_id}/revert").status_code == 403
        # A dry run changes nothing: a viewer may look.
        assert viewer.post(f"/runs/{run_id}/revert", params={"dry_run": "true"}).status_code == 200
        deleted = api.http.post(
            f"/runs/{run_id}/delete", params={"wait": "true"}, json={"mode": "keep_effects"}
        )
        assert deleted.status_code == 200, deleted.text
        assert api.http.get(f"/runs/{run_id}").json()["tombstone"]["actor"] == "tester"


def test_a_token_for_another_project_sees_and_starts_nothing_here(api: ApiService) -> None:
    run_id = api.http.post(
        "/runs", params={"wait": "true"}, json={"scenario": "synthetic", "args": {"items": 1}}
    ).json()["run_id"]
    with api.client_as("pat", "admin", project="elsewhere") as other:
        assert other.get("/runs").json()["runs"] == []
        assert other.get("/scenarios").json() == []
        read = other.get(f"/runs/{run_id}")
        assert read.status_code == 403
        assert "project 'default'" in read.json()["message"]
        start = other.post("/runs", json={"scenario": "synthetic"})
        assert start.status_code == 403
    with api.client_as("dee", "viewer", project="default") as scoped:
        assert [r["id"] for r in scoped.get("/runs").json()["runs"]] == [run_id]


def test_runctl_token_create_list_revoke_keeps_only_a_hash(
    api: ApiService, redis_client: redis.Redis
) -> None:
    created = runctl(api.settings, "token", "create", "--subject", "ci", "--role", "operator")
    assert created.code == 0, created.stderr
    token = created.stdout.split()[0]
    assert token.startswith("rst_")
    stored = redis_client.hgetall(Keys(api.settings.prefix, api.settings.shards).api_tokens)
    raw = b"".join(v for v in stored.values() if isinstance(v, bytes))
    assert token.encode() not in raw
    assert hashlib.sha256(token.encode()).hexdigest().encode() in raw
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{api.url}/runs", headers=headers).status_code == 200
    listed = runctl(api.settings, "token", "list", "--json")
    assert listed.code == 0
    assert token not in listed.stdout and "sha256" not in listed.stdout
    token_id = token.split("_")[1]
    assert token_id in listed.stdout
    assert httpx.get(f"{api.url}/runs", headers=headers).status_code == 200  # remembered
    revoked = runctl(api.settings, "token", "revoke", token_id)
    assert revoked.code == 0 and "refuses it at once" in revoked.stdout
    # The API remembered the token a moment ago; the revocation's message made it forget
    # (runctl published it before it exited).
    assert httpx.get(f"{api.url}/runs", headers=headers).status_code == 401
    again = runctl(api.settings, "token", "revoke", token_id)
    assert again.code == 2 and "no token" in again.stderr
    bad_role = runctl(api.settings, "token", "create", "--subject", "x", "--role", "root")
    assert bad_role.code == 2 and "--role" in bad_role.stderr

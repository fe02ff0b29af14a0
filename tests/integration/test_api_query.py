"""GET /runs with the read side's query model over HTTP: filters, sort, marker paging and
count answered by the index (Client.search/count), and bad queries refused naming the
parameter; the same for Mistral's list of executions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runstream.settings import Settings

from .api_service import ApiService, api_service


@pytest.fixture(scope="module")
def populated(
    tmp_path_factory: pytest.TempPathFactory, module_settings: Settings
) -> Iterator[tuple[ApiService, list[dict[str, Any]]]]:
    """Five finished runs (items 1..5) and one stopped run, shared by the module's tests."""
    with api_service(module_settings, tmp_path_factory.mktemp("api")) as api:
        for items in range(1, 6):
            response = api.http.post(
                "/runs",
                params={"wait": "true"},
                json={"scenario": "synthetic", "args": {"items": items}, "name": f"r{items}"},
            )
            assert response.status_code == 200, response.text
        slow = api.http.post(
            "/runs", json={"scenario": "synthetic", "args": {"items": 100000, "delay_ms": 1}}
        ).json()["run_id"]
        api.wait_state(slow, "running")
        stop = api.http.post(f"/runs/{slow}/stop", params={"wait": "true"})
        assert stop.status_code == 200, stop.text
        runs = api.http.get("/runs", params={"limit": 500}).json()["runs"]
        assert len(runs) == 6
        yield api, runs


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["runs"]]


def test_filters_sort_and_count_come_from_the_query_model(
    populated: tuple[ApiService, list[dict[str, Any]]],
) -> None:
    api, runs = populated
    by_items = {r["args"]["items"]: r["id"] for r in runs}
    # Several filters, a sort, a count.
    response = api.http.get(
        "/runs",
        params=[
            ("state", "in:succeeded,stopped"),
            ("args.items", "gte:3"),
            ("sort", "created_at:desc"),
            ("count", "true"),
        ],
    )
    assert ids(response) == [by_items[100000], by_items[5], by_items[4], by_items[3]]
    assert response.json()["count"] == 4
    assert ids(api.http.get("/runs", params={"state": "stopped"})) == [by_items[100000]]
    assert ids(api.http.get("/runs", params={"name": "in:r1,r2"})) == [by_items[1], by_items[2]]
    # A time filter in ISO 8601 (as the runs show it, to the millisecond): the runs
    # created since the fourth one.
    fourth = next(r for r in runs if r["id"] == by_items[4])
    after = ids(api.http.get("/runs", params={"created_at": f"gte:{fourth['created_at']}"}))
    assert after == [by_items[4], by_items[5], by_items[100000]]


def test_marker_paging_follows_the_sort_order_to_the_last_page(
    populated: tuple[ApiService, list[dict[str, Any]]],
) -> None:
    api, runs = populated
    seen: list[str] = []
    params: dict[str, Any] = {"sort": "items_processed:desc", "limit": 4}
    while True:
        body = api.http.get("/runs", params=params).json()
        seen += [r["id"] for r in body["runs"]]
        if "next_marker" not in body:
            break
        params["marker"] = body["next_marker"]
    expected = sorted(runs, key=lambda r: (-r["items_processed"], r["id"]))
    assert seen == [r["id"] for r in expected]


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"colour": "blue"}, "colour", "unknown field"),
        ({"state": "in:running,sleeping"}, "state", "sleeping"),
        ({"created_at": "gte:yesterday"}, "created_at", "ISO 8601"),
        ({"created_at": "gte:2026-01-01T00:00:00"}, "created_at", "zone"),
        ({"items_processed": "has:3"}, "items_processed", "has"),
        ({"state": "like:running"}, "state", "operator"),
        ({"sort": "colour"}, "sort", "cannot sort"),
        ({"marker": "not-a-run"}, "marker", "not a run id"),
        ({"marker": "0123456789ABCDEFGHJKMNPQRS"}, "marker", "not a run this query lists"),
        ({"limit": "0"}, "limit", ""),
    ],
)
def test_a_bad_query_is_a_400_naming_the_parameter(
    populated: tuple[ApiService, list[dict[str, Any]]],
    params: dict[str, str],
    field: str,
    words: str,
) -> None:
    api, _ = populated
    response = api.http.get("/runs", params=params)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["field"] == field
    assert words in problem["message"]


def test_mistral_lists_executions_through_the_query_model(
    populated: tuple[ApiService, list[dict[str, Any]]],
) -> None:
    api, _ = populated
    listed = api.http.get(
        "/v2/executions",
        params={"state": "in:SUCCESS,PAUSED", "sort_keys": "created_at", "sort_dirs": "desc"},
    )
    assert listed.status_code == 200, listed.text
    executions = listed.json()["executions"]
    assert len(executions) == 6
    assert executions[0]["state"] == "PAUSED"
    paused = api.http.get("/v2/executions", params={"state": "PAUSED"}).json()["executions"]
    assert len(paused) == 1
    page = api.http.get("/v2/executions", params={"limit": 4, "fields": "state"}).json()
    assert len(page["executions"]) == 4 and set(page["executions"][0]) == {"id", "state"}
    rest = api.http.get(
        "/v2/executions", params={"limit": 4, "marker": page["executions"][-1]["id"]}
    ).json()
    assert len(rest["executions"]) == 2 and "next" not in rest
    bad = api.http.get("/v2/executions", params={"state_info": "eq:x"})
    assert bad.status_code == 400
    assert "state_info" in bad.json()["faultstring"]
    odd_sort = api.http.get("/v2/executions", params={"sort_keys": "output"})
    assert odd_sort.status_code == 400
    assert "output" in odd_sort.json()["faultstring"]

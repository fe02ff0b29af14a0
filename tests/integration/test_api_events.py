"""Server-sent events over HTTP: the feed of all runs and of one run, resumed with
Last-Event-ID, against a real API process, real workers and real Redis."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from runstream.settings import Settings

from .api_service import ApiService, api_service, create_token


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[ApiService]:
    with api_service(settings, tmp_path) as service:
        yield service


Message = tuple[str, dict[str, Any]]


def sse_messages(response: httpx.Response) -> Iterator[Message]:
    """Each message with data in the stream: its id and its JSON (comments are skipped)."""
    event_id, data = "", list[str]()
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event_id, json.loads("\n".join(data))
            data = []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def read_until(
    api: ApiService,
    path: str,
    done: Callable[[dict[str, Any]], bool],
    headers: dict[str, str] | None = None,
    after_open: Callable[[], None] | None = None,
) -> list[Message]:
    """Messages of the stream at ``path`` up to the first ``done`` one (``after_open`` is
    called once the stream answered, so what it sets off is on the stream)."""
    got: list[Message] = []
    timeout = httpx.Timeout(60.0, read=30.0)
    with api.http.stream("GET", path, headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        if after_open is not None:
            after_open()
        for message in sse_messages(response):
            got.append(message)
            if done(message[1]):
                return got
    raise AssertionError(f"the stream ended early: {got}")


def start_and_wait(api: ApiService, items: int = 3) -> str:
    response = api.http.post(
        "/runs", params={"wait": "true"}, json={"scenario": "synthetic", "args": {"items": items}}
    )
    assert response.status_code == 200, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def test_all_runs_stream_carries_a_runs_events_with_iso_times_and_resumes(
    api: ApiService,
) -> None:
    started: list[str] = []
    starter = threading.Thread(target=lambda: started.append(start_and_wait(api)))

    def succeeded(body: dict[str, Any]) -> bool:
        return bool(body["type"] == "RunSucceeded")  # the test's only run

    got = read_until(api, "/events", succeeded, after_open=starter.start)
    starter.join(30)
    assert {b["run_id"] for _, b in got} == set(started)
    types = [b["type"] for _, b in got]
    assert types[0] == "RunQueued" and types[-1] == "RunSucceeded"
    versions = [b["version"] for _, b in got]
    assert versions == sorted(versions) and versions[0] >= 1
    for event_id, body in got:
        # One feed entry id per shard, comma-separated.
        assert len(event_id.split(",")) == api.settings.shards
        assert datetime.fromisoformat(body["at"]).tzinfo is not None

    # Resuming after the first event replays exactly what followed it.
    rest = read_until(api, "/events", succeeded, headers={"Last-Event-ID": got[0][0]})
    assert rest == got[1:]


def test_one_runs_stream_resumes_from_its_entry_id_and_ends_after_delete(
    api: ApiService,
) -> None:
    run_id = start_and_wait(api, items=2)
    # From the oldest the feed holds ("0"): the run's whole story so far.
    story = read_until(
        api,
        f"/runs/{run_id}/events?last_event_id=0",
        lambda b: b["type"] == "RunSucceeded",
    )
    assert {b["run_id"] for _, b in story} == {run_id}
    assert story[0][1]["type"] == "RunQueued"
    last_id = story[-1][0]
    assert "," not in last_id and last_id.count("-") == 1  # one shard: its entry id

    deleted = api.http.post(
        f"/runs/{run_id}/delete", params={"wait": "true"}, json={"mode": "keep_effects"}
    )
    assert deleted.status_code == 200, deleted.text
    # Resumed after the deletion: the events it missed, and the stream ends.
    with api.http.stream(
        "GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": last_id}
    ) as response:
        assert response.status_code == 200
        after = list(sse_messages(response))
    assert [b["type"] for _, b in after][-1] == "RunDeleted"
    assert all(b["run_id"] == run_id for _, b in after)
    # A deleted run's stream is not opened afresh: 410 with its tombstone.
    gone = api.http.get(f"/runs/{run_id}/events")
    assert gone.status_code == 410
    assert gone.json()["tombstone"]["run_id"] == run_id


def test_bad_positions_unknown_runs_and_roles_are_refused_plainly(api: ApiService) -> None:
    bad = api.http.get("/events", headers={"Last-Event-ID": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["field"] == "Last-Event-ID"
    assert "yesterday" in bad.json()["message"]
    assert api.settings.shards > 1  # so one entry id is too few for /events
    short = api.http.get("/events", params={"last_event_id": "1-0"})
    assert short.status_code == 400
    assert short.json()["field"] == "last_event_id"
    missing = api.http.get("/runs/0123456789ABCDEFGHJKMNPQRS/events")
    assert missing.status_code == 404
    assert httpx.get(f"{api.url}/events").status_code == 401
    run_id = start_and_wait(api, items=1)
    with api.client_as("outsider", "viewer", project="elsewhere") as other:
        refused = other.get(f"/runs/{run_id}/events")
    assert refused.status_code == 403
    assert "viewer" in refused.json()["message"]


def test_a_browser_signed_in_to_the_ui_follows_the_same_streams_with_its_cookie(
    api: ApiService,
) -> None:
    """EventSource sends no Authorization header: a page signed in to the UI (its cookie,
    as a browser keeps it) gets /events and /runs/{id}/events under /ui; without the
    cookie a 401 that says where to sign in, and /events without a token names /ui/events."""
    run_id = start_and_wait(api, items=2)
    token = create_token(api.settings, "bea", "viewer")
    with httpx.Client(base_url=api.url, timeout=60.0, headers={"Origin": api.url}) as browser:
        login = browser.post("/ui/login", data={"token": token, "next": "/ui/runs"})
        assert login.status_code == 303, login.text
        assert "authorization" not in browser.headers
        timeout = httpx.Timeout(60.0, read=30.0)
        with browser.stream(
            "GET", f"/ui/runs/{run_id}/events?last_event_id=0", timeout=timeout
        ) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            story = []
            for message in sse_messages(response):
                story.append(message)
                if message[1]["type"] == "RunSucceeded":
                    break
        assert {b["run_id"] for _, b in story} == {run_id}
        assert story[0][1]["type"] == "RunQueued"
        # The same messages as the API's stream for a token.
        assert story == read_until(
            api, f"/runs/{run_id}/events?last_event_id=0", lambda b: b["type"] == "RunSucceeded"
        )
        with browser.stream("GET", "/ui/events?last_event_id=0", timeout=timeout) as response:
            assert response.status_code == 200
            first = next(sse_messages(response))
        assert first[1]["type"] and first[0].count(",") == api.settings.shards - 1
    anonymous = httpx.get(f"{api.url}/ui/events")
    assert anonymous.status_code == 401
    assert "/ui/login" in anonymous.json()["message"]
    no_token = httpx.get(f"{api.url}/events")
    assert no_token.status_code == 401 and "/ui/events" in no_token.json()["message"]

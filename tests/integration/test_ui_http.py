"""The admin UI over plain HTTP (the browser tests drive it in Chromium): sign-in with a
token cookie, pages that call the read side, a start from the form with the server's
validation message, actions recorded with the token's subject, and what a viewer may not do."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import tarfile
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import httpx
import pytest

from runstream.contracts import commands as cmd
from runstream.keys import Fields, Keys
from runstream.settings import Settings
from runstream.tokens import Role

from .api_service import ApiService, api_service, create_token
from .support import connect, parked, run_id_on


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ApiService]:
    settings = Settings(redis_url=redis_url, prefix="tui" + uuid.uuid4().hex[:8], shards=2)
    with api_service(settings, tmp_path_factory.mktemp("ui")) as service:
        yield service


@contextlib.contextmanager
def signed_in(api: ApiService, subject: str, role: Role) -> Iterator[httpx.Client]:
    token = create_token(api.settings, subject, role)
    with httpx.Client(base_url=api.url, timeout=60.0, headers={"Origin": api.url}) as browser:
        yield _login(browser, token)


def _login(browser: httpx.Client, token: str) -> httpx.Client:
    answer = browser.post("/ui/login", data={"token": token, "next": "/ui/runs"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/runs"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    return browser


def start(browser: httpx.Client, **fields: str) -> str:
    answer = browser.post("/ui/scenarios/synthetic/start", data=fields)
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/ui/runs/([0-9A-Z]{26})", answer.headers["location"])
    assert found, answer.headers["location"]
    return found.group(1)


def test_pages_need_a_valid_token(api: ApiService) -> None:
    anonymous = httpx.get(f"{api.url}/ui/runs")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/ui/login?next=/ui/runs"
    refused = httpx.post(f"{api.url}/ui/login", data={"token": "rst_abc_nope"})
    assert refused.status_code == 401
    assert "unknown or revoked" in refused.text
    forged = httpx.get(f"{api.url}/ui/runs", cookies={"runstream_ui": "rst_abc_" + "x" * 30})
    assert forged.status_code == 303
    assert httpx.get(f"{api.url}/ui/static/htmx.min.js").status_code == 200


def test_a_start_from_the_form_runs_with_the_subject_as_actor(api: ApiService) -> None:
    with signed_in(api, "olga", "operator") as browser:
        run_id = start(browser, items="3", run_name="from-form", run_labels="team=ui")
        api.wait_state(run_id, "succeeded")
        page = browser.get(f"/ui/runs/{run_id}")
        assert page.status_code == 200
        assert "from-form" in page.text and "succeeded" in page.text
        assert "team=ui" in page.text
        history = api.http.get(f"/runs/{run_id}/history").json()["events"]
        assert history[0]["event"]["actor"] == "olga"
        listed = browser.get("/ui/runs", params={"labels": "team=ui"})
        assert run_id in listed.text
        assert (
            browser.get("/ui/runs", params={"state": "failed", "labels": "team=ui"}).text.count(
                run_id
            )
            == 0
        )


def test_the_servers_validation_message_is_shown_beside_the_form(api: ApiService) -> None:
    with signed_in(api, "olga", "operator") as browser:
        bad = browser.post("/ui/scenarios/synthetic/start", data={"namespace": "a|b"})
        assert bad.status_code == 422
        assert "namespace" in bad.text
        assert 'aria-invalid="true"' in bad.text
        not_a_number = browser.post("/ui/scenarios/synthetic/start", data={"items": "many"})
        assert not_a_number.status_code == 422
        assert "$.items" in not_a_number.text


def test_a_rejected_command_is_shown_and_changes_nothing(api: ApiService) -> None:
    with signed_in(api, "ada", "admin") as browser:
        run_id = start(browser, items="2")
        api.wait_state(run_id, "succeeded")
        page = browser.get(f"/ui/runs/{run_id}").text
        # A finished run: no stop or continue offered.
        assert 'id="act-stop"' not in page and 'id="act-continue"' not in page
        assert 'id="act-revert"' in page and 'id="act-delete"' in page
        refused = browser.post(f"/ui/runs/{run_id}/act/continue")
        assert refused.status_code == 409
        assert "cannot continue a run that is succeeded" in refused.text
        assert api.http.get(f"/runs/{run_id}").json()["state"] == "succeeded"


def test_a_viewer_is_offered_no_action_and_refused_one(api: ApiService) -> None:
    with signed_in(api, "ada", "admin") as admin:
        run_id = start(admin, items="2")
    api.wait_state(run_id, "succeeded")
    with signed_in(api, "vic", "viewer") as viewer:
        page = viewer.get(f"/ui/runs/{run_id}").text
        assert "act-" not in page
        assert 'name="run"' not in viewer.get("/ui/runs").text  # no bulk selection
        refused = viewer.post(f"/ui/runs/{run_id}/act/delete", data={"mode": "keep_effects"})
        assert refused.status_code == 403
        assert "admin role" in refused.text
    assert api.http.get(f"/runs/{run_id}").status_code == 200


def test_a_post_from_another_site_is_refused(api: ApiService) -> None:
    with signed_in(api, "ada", "admin") as browser:
        run_id = start(browser, items="2")
        api.wait_state(run_id, "succeeded")
        forged = browser.post(
            f"/ui/runs/{run_id}/act/delete",
            data={"mode": "keep_effects"},
            headers={"Origin": "http://evil.example"},
        )
        assert forged.status_code == 403
    assert api.http.get(f"/runs/{run_id}").status_code == 200


def test_bulk_preview_counts_the_runs_the_action_fits(api: ApiService) -> None:
    with signed_in(api, "ada", "admin") as browser:
        done = start(browser, items="2")
        api.wait_state(done, "succeeded")
        slow = start(browser, items="1000", delay_ms="50")
        api.wait_state(slow, "running")
        preview = browser.post("/ui/runs/bulk", data={"action": "stop", "run": [done, slow]})
        assert preview.status_code == 200
        assert re.search(r"would apply to <strong>1</strong> of the 2 selected", preview.text)
        assert "cannot stop" in preview.text or done in preview.text
        assert api.http.get(f"/runs/{slow}").json()["state"] == "running"  # nothing sent yet
        sent = browser.post(
            "/ui/runs/bulk",
            data={"action": "stop", "run": [slow], "confirm": "yes", "reason": "bulk test"},
        )
        assert sent.status_code == 200
        assert "1 accepted" in sent.text
        stopped = api.wait_state(slow, "stopped")
        assert stopped["reason"] == "bulk test"


def live_batches(
    browser: httpx.Client, *, last_event_id: str = "", run: str = ""
) -> Generator[tuple[str, dict[str, Any]], None, None]:
    """(event id, batch) of the /ui/live stream, as they come."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    params = {"run": run} if run else {}
    with browser.stream("GET", "/ui/live", headers=headers, params=params) as stream:
        event_id, kind = "", ""
        for line in stream.iter_lines():
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind == "runs":
                yield event_id, json.loads(line[5:])


def test_live_sends_changed_runs_and_resumes_where_it_stopped(api: ApiService) -> None:
    with signed_in(api, "ada", "admin") as browser:
        stream = live_batches(browser)
        run_id = start(browser, items="40", delay_ms="25")
        states: list[str] = []
        first_id = ""
        for event_id, batch in stream:
            mine = [c for c in batch["runs"] if c["id"] == run_id]
            if mine:
                first_id = first_id or event_id
                states.append(mine[-1]["state"])
                if states[-1] == "succeeded":
                    break
        stream.close()
        assert states[-1] == "succeeded" and len(states) >= 2
        # A page that lost its connection after the first batch gets what came after.
        resumed = live_batches(browser, last_event_id=first_id, run=run_id)
        for _, batch in resumed:
            assert all(c["id"] == run_id for c in batch["runs"])
            if batch["runs"][-1]["state"] == "succeeded":
                break
        resumed.close()


def test_dead_letters_are_listed_retried_and_dropped(api: ApiService) -> None:
    keys = Keys(api.settings.prefix, api.settings.shards)
    stop = cmd.encode_command(cmd.StopRun(run_id=run_id_on(keys, 0)))

    async def park() -> None:
        async with connect(api.settings) as r:
            await parked(r, keys, api.settings, 0, {Fields.COMMAND: stop}, "testing")
            await parked(r, keys, api.settings, 1, {Fields.COMMAND: b"junk"}, "garbled")

    asyncio.run(park())
    with signed_in(api, "vic", "viewer") as viewer:
        listed = viewer.get("/ui/dead-letters")
        assert "testing" in listed.text and "garbled" in listed.text
        # A viewer is offered nothing.
        assert re.findall(r'/ui/dead-letters/[^/"]+/(retry|drop)', listed.text) == []
    with signed_in(api, "ada", "admin") as admin:
        page = admin.get("/ui/dead-letters").text
        retry = re.search(r'action="(/ui/dead-letters/[^"]+/retry)"', page)
        assert retry, page
        done = admin.post(retry.group(1), follow_redirects=True)
        assert done.status_code == 200
        assert "published again" in done.text and "testing" not in done.text
        drop = re.search(r'action="(/ui/dead-letters/[^"]+/drop)"', done.text)
        assert drop
        dropped = admin.post(drop.group(1), follow_redirects=True)
        assert "dropped" in dropped.text and "No dead letters." in dropped.text


def test_conflicts_name_the_run_that_changed_the_element(api: ApiService) -> None:
    namespace = "c" + uuid.uuid4().hex[:6]
    with signed_in(api, "ada", "admin") as browser:
        first = start(browser, items="4", edges_per_item="0", namespace=namespace)
        api.wait_state(first, "succeeded")
        second = start(browser, items="2", edges_per_item="0", namespace=namespace)
        api.wait_state(second, "succeeded")
        plan = browser.get(f"/ui/runs/{first}/revert").text
        assert "This is the plan of a dry run" in plan
        assert re.search(r"<strong>2</strong> conflicts", plan)
        link = f'<a href="/ui/runs/{second}">{second}</a>'
        assert f"n:{namespace}:0" in plan and link in plan
        assert 'name="force"' in plan  # force is offered, not chosen
        browser.post(f"/ui/runs/{first}/act/revert")
        api.wait_state(first, "reverted")
        page = browser.get(f"/ui/runs/{first}").text
        assert "Conflicts" in page and link in page


def test_rerun_starts_a_run_with_the_same_arguments(api: ApiService) -> None:
    with signed_in(api, "olga", "operator") as browser:
        source = start(browser, items="3", seed="7")
        api.wait_state(source, "succeeded")
        answer = browser.post(f"/ui/runs/{source}/act/rerun")
        assert answer.status_code == 303
        rerun = answer.headers["location"].rsplit("/", 1)[-1]
        assert rerun != source
        body = api.wait_state(rerun, "succeeded")
        assert body["source_run_id"] == source and body["args"]["seed"] == 7
        assert body["actor"] == "olga"
        assert f'Re-run of <a href="/ui/runs/{source}">' in browser.get(f"/ui/runs/{rerun}").text


def test_results_download_one_by_one_and_as_an_archive(api: ApiService) -> None:
    with signed_in(api, "vic", "viewer") as viewer, signed_in(api, "ada", "admin") as admin:
        run_id = start(admin, items="4", result_every="2", result_bytes="10", log_lines="1")
        api.wait_state(run_id, "succeeded")
        page = viewer.get(f"/ui/runs/{run_id}").text
        names = re.findall(rf'href="/ui/runs/{run_id}/results/([^"]+)"', page)
        assert names == ["part-1.txt", "part-2.txt"], names
        assert "item 3 line 0" in page  # the log
        one = viewer.get(f"/ui/runs/{run_id}/results/part-1.txt")
        assert one.status_code == 200 and len(one.content) == 10
        assert "attachment" in one.headers["content-disposition"]
        archive = viewer.get(f"/ui/runs/{run_id}/results.tar.gz")
        with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
            assert sorted(tar.getnames()) == names
        missing = viewer.get(f"/ui/runs/{run_id}/results/nope.txt")
        assert missing.status_code == 404 and "part-1.txt" in missing.text

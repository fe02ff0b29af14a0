"""The admin UI as an operator uses it, in Chromium, against real workers and Redis: start
from the form, watch it live, stop, continue, revert after reading the plan, delete with
the dialog's default, filter and page, see a rejection, and a viewer offered nothing."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, Page, expect
from tests.integration.api_service import ApiService

from .conftest import shot, sign_in

pytestmark = pytest.mark.browser
RUN_URL = re.compile(r".*/ui/runs/([0-9A-Z]{26})$")


def start_via_api(stack: ApiService, **args: Any) -> str:
    answer = stack.http.post("/runs", json={"scenario": "synthetic", "args": args})
    assert answer.status_code in (200, 202), answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


def items_shown(page: Page) -> int:
    text = page.locator("#live [data-field=items]").inner_text()
    return int(text.split("/")[0].replace(",", "").strip())


def test_start_from_the_form_watch_it_live_stop_and_continue(
    admin: Page, stack: ApiService
) -> None:
    page = admin
    page.get_by_role("link", name="Scenarios").click()
    page.get_by_role("link", name="synthetic").click()
    page.locator("#run-name").fill("browser-run")
    page.get_by_label("items", exact=True).fill("3000")  # 60 s: still running when cancelled
    page.get_by_label("delay_ms", exact=True).fill("20")
    page.get_by_label("log_lines", exact=True).fill("1")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(RUN_URL)
    run_id = RUN_URL.match(page.url).group(1)  # type: ignore[union-attr]
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#run-state")).to_have_text("running")
    first = items_shown(page)
    deadline = time.monotonic() + 20
    while items_shown(page) <= first and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert items_shown(page) > first, "progress did not move on the page"
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    expect(page.locator("#log li").first).to_be_visible()  # log lines follow live
    shot(page, "run-running")

    page.locator("#act-stop").click()
    page.get_by_label("Why stop?").fill("checking the output")
    page.get_by_role("button", name="Stop the run").click()
    expect(page.locator("#outcome")).to_contain_text("StopRun accepted")
    expect(page.locator("#run-state")).to_have_text("stopped")
    timeline = page.locator("table.timeline")
    expect(timeline).to_contain_text("RunStopped")
    expect(timeline).to_contain_text("checking the output")
    expect(timeline.locator("tr", has_text="RunStopped")).to_contain_text("alice")
    stopped_at = items_shown(page)
    assert stopped_at < 3000
    shot(page, "run-stopped")

    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#outcome")).to_contain_text("ContinueRun accepted")
    expect(page.locator("#run-state")).to_have_text("running")
    page.locator("#act-cancel").click()
    page.get_by_label("Why cancel?").fill("enough")
    page.get_by_role("button", name="Cancel the run").click()
    expect(page.locator("#run-state")).to_have_text("cancelled")
    history = stack.http.get(f"/runs/{run_id}/history").json()["events"]
    actors = {e["event"]["type"]: e["event"].get("actor") for e in history}
    assert actors["RunStopped"] == actors["RunContinued"] == actors["RunCancelled"] == "alice"


def test_a_refresh_answering_after_a_form_was_opened_keeps_the_form(
    admin: Page, stack: ApiService
) -> None:
    """The live part asked for just before the operator opened Cancel answers after it:
    the half-typed reason stays (it was swapped away, and the form closed, before)."""
    page = admin
    run_id = start_via_api(stack, items=3, delay_ms=3000)
    stack.wait_state(run_id, "running")
    page.goto(f"{stack.url}/ui/runs/{run_id}")
    page.evaluate(
        """(runId) => new Promise((resolve) => {
            document.addEventListener("htmx:afterRequest", () => resolve(), { once: true });
            htmx.ajax("GET", "/ui/runs/" + runId + "/live",
                      { target: "#live", select: "#live", swap: "outerHTML" });
            document.getElementById("act-cancel").click();  // opens the form at once
            document.getElementById("cancel-reason").value = "half typed";
        })""",
        run_id,
    )
    page.wait_for_timeout(500)  # a swap (and settle) would have happened by now
    reason = page.locator("#cancel-reason")
    expect(reason).to_be_visible()
    expect(reason).to_have_value("half typed")
    page.get_by_role("button", name="Cancel the run").click()
    expect(page.locator("#run-state")).to_have_text("cancelled")


def test_revert_shows_the_plan_and_delete_defaults_to_revert_first(
    admin: Page, stack: ApiService
) -> None:
    page = admin
    run_id = start_via_api(stack, items=12, notify_every=5)
    stack.wait_state(run_id, "succeeded")
    page.goto(f"{stack.url}/ui/runs/{run_id}")
    page.locator("#act-revert").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("This is the plan of a dry run")
    expect(dialog).to_contain_text("will be taken back")
    expect(dialog).to_contain_text("2 irreversible effects")
    shot(page, "revert-dialog")
    page.get_by_role("link", name="Keep as is").click()
    expect(dialog).to_be_hidden()
    assert stack.http.get(f"/runs/{run_id}").json()["state"] == "succeeded"  # nothing sent

    page.locator("#act-revert").click()
    page.get_by_role("button", name="Revert").click()
    expect(page.locator("#run-state")).to_have_text("reverted")

    other = start_via_api(stack, items=5)
    stack.wait_state(other, "succeeded")
    page.goto(f"{stack.url}/ui/runs/{other}")
    page.locator("#act-delete").click()
    expect(dialog).to_contain_text("The run's id is what lets you revert its changes")
    expect(page.get_by_label("Revert them, then delete (recommended)")).to_be_checked()
    expect(page.get_by_label("Delete and keep the changes on the network")).not_to_be_checked()
    shot(page, "delete-dialog")
    page.get_by_role("button", name="Delete").click()
    # Reverted first, then deleted: the page follows it live to the tombstone.
    expect(page.get_by_role("heading", name="Run deleted")).to_be_visible()
    deadline = time.monotonic() + 20
    while stack.http.get(f"/runs/{other}").status_code != 410 and time.monotonic() < deadline:
        time.sleep(0.1)
    gone = stack.http.get(f"/runs/{other}")
    assert gone.status_code == 410
    assert gone.json()["tombstone"]["effects_left"] == 0  # reverted before it was deleted
    shot(page, "deleted")


def test_the_runs_page_follows_state_changes_live(admin: Page, stack: ApiService) -> None:
    page = admin
    run_id = start_via_api(stack, items=3, delay_ms=3000)  # no item done for a while
    stack.wait_state(run_id, "running")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{stack.url}/ui/runs")
    page.evaluate("window.__sameDocument = true")
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    expect(row.locator("[data-field=state]")).to_have_text("running")
    page.wait_for_timeout(500)  # the event stream is open
    stopped = stack.http.post(f"/runs/{run_id}/stop", params={"wait": "true"}, json={})
    assert stopped.status_code == 200, stopped.text
    expect(row.locator("[data-field=state]")).to_have_text("stopped")
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    assert page.evaluate("window.runstreamLive.changes") >= 1
    assert not errors, errors  # an update that throws would leave the rest of its batch
    stack.http.post(f"/runs/{run_id}/cancel", json={})


def test_filters_sorting_and_paging(admin: Page, stack: ApiService) -> None:
    page = admin
    ids = []
    for n in range(27):
        answer = stack.http.post(
            "/runs",
            json={
                "scenario": "synthetic",
                "args": {"items": 1},
                "name": f"paged-{n:02d}",
            },
        )
        ids.append(answer.json()["run_id"])
    for run_id in ids:
        stack.wait_state(run_id, "succeeded")
    page.goto(f"{stack.url}/ui/runs")
    page.get_by_label("Actor").fill("tester")
    page.get_by_label("Per page").select_option("25")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#runs-count")).to_contain_text("run")
    count = int(page.locator("#runs-count strong").inner_text().replace(",", ""))
    assert count >= 27
    expect(page.locator("table.runs tbody tr")).to_have_count(25)
    page.get_by_role("link", name="Run", exact=True).click()  # sort by name, descending first
    expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "descending")
    page.get_by_role("link", name="Run", exact=True).click()
    expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "ascending")
    page.locator("#next-page").click()
    expect(page.get_by_role("link", name="First page")).to_be_visible()
    rows = page.locator("table.runs tbody tr")
    assert 1 <= rows.count() <= 25
    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("table.runs tbody")).to_contain_text("No runs match")


def test_a_rejected_command_is_shown_to_the_user(admin: Page, stack: ApiService) -> None:
    page = admin
    run_id = start_via_api(stack, items=2000, delay_ms=20)
    stack.wait_state(run_id, "running")
    page.goto(f"{stack.url}/ui/runs/{run_id}")
    page.locator("#act-cancel").click()  # an open form: live updates leave it alone
    page.get_by_label("Why cancel?").fill("too late")
    cancelled = stack.http.post(f"/runs/{run_id}/cancel", params={"wait": "true"}, json={})
    assert cancelled.status_code == 200, cancelled.text
    page.get_by_role("button", name="Cancel the run").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("CancelRun rejected: cannot cancel a run that is cancelled")
    shot(page, "rejected")
    # The server's validation of a start is shown beside the field.
    page.goto(f"{stack.url}/ui/scenarios/synthetic")
    page.get_by_label("namespace", exact=True).fill("a|b")
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_role("alert")).to_contain_text("namespace")
    expect(page.get_by_label("namespace", exact=True)).to_have_attribute("aria-invalid", "true")
    shot(page, "start-invalid")


def test_a_viewer_sees_no_write_actions(context: BrowserContext, stack: ApiService) -> None:
    run_id = start_via_api(stack, items=2)
    stack.wait_state(run_id, "succeeded")
    page = sign_in(context.new_page(), stack, "victor", "viewer")
    expect(page.locator("table.runs")).to_be_visible()
    expect(page.locator("input[name=run]")).to_have_count(0)
    expect(page.locator("#bulk-action")).to_have_count(0)
    page.goto(f"{stack.url}/ui/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_text("succeeded")
    expect(page.locator("[id^=act-]")).to_have_count(0)
    expect(page.locator("#actions-h ~ .hint")).to_contain_text("Nothing you may do")
    page.goto(f"{stack.url}/ui/scenarios/synthetic")
    expect(page.get_by_role("button", name="Start run")).to_have_count(0)
    shot(page, "viewer-run")


PAGES = ["runs", "scenarios", "scenarios/synthetic", "dead-letters", "network", "guide"]


def test_every_page_screenshot_and_axe_finds_nothing_serious(
    admin: Page, stack: ApiService
) -> None:
    page = admin
    run_id = start_via_api(stack, items=30, notify_every=10, log_lines=2, result_every=10)
    stack.wait_state(run_id, "succeeded")
    axe = Axe()
    problems: dict[str, list[str]] = {}

    def check(name: str) -> None:
        shot(page, name)
        results = axe.run(page)
        serious = [
            f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        if serious:
            problems[name] = serious

    for name in PAGES:
        page.goto(f"{stack.url}/ui/{name}")
        check(name.replace("/", "-"))
    page.goto(f"{stack.url}/ui/runs/{run_id}")
    check("run")
    page.locator("#act-revert").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    check("run-revert-dialog")
    page.keyboard.press("Escape")
    page.goto(f"{stack.url}/ui/runs")
    page.locator("input[name=run]").first.check()
    page.get_by_role("button", name="Preview…").click()
    expect(page.locator("#bulk-count")).to_be_visible()
    check("bulk-preview")
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{stack.url}/ui/runs")
    check("runs-narrow")
    page.goto(f"{stack.url}/ui/runs/{run_id}")
    check("run-narrow")
    page.context.clear_cookies()
    page.goto(f"{stack.url}/ui/login")
    check("login")
    assert not problems, problems

"""The admin UI in a real browser: Playwright driving Debian's chromium (Playwright's own
browser download cannot work here), against the API and real workers on a real Redis.

Chromium comes from $RUNSTREAM_CHROMIUM, else /usr/bin/chromium (`make test` installs it
with apt when it can). Without one the tests skip, loudly: the reason is in the summary.
Screenshots of every page go to .artifacts/ui/ (git-ignored), to be looked at.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from tests.integration.api_service import ApiService, api_service, create_token

from runstream.settings import Settings
from runstream.tokens import Role

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "ui"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("RUNSTREAM_CHROMIUM", ""), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser(stack: ApiService) -> Iterator[Browser]:
    # After the stack: its set-up runs asyncio, which Playwright's running loop would refuse.
    path = chromium_path()
    if path is None:
        reason = (
            "BROWSER TESTS NOT RUN: no chromium (apt-get install chromium, or set "
            "RUNSTREAM_CHROMIUM); the admin UI was NOT tested in a browser"
        )
        warnings.warn(reason, stacklevel=1)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ApiService]:
    settings = Settings(redis_url=redis_url, prefix="tbr" + uuid.uuid4().hex[:8], shards=2)
    with api_service(settings, tmp_path_factory.mktemp("browser"), workers=2) as service:
        yield service


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport={"width": 1280, "height": 860})
    made.set_default_timeout(20_000)
    try:
        yield made
    finally:
        made.close()


def token_for(stack: ApiService, subject: str, role: Role) -> str:
    # Playwright's sync API keeps an event loop running in this thread: asyncio elsewhere.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(create_token, stack.settings, subject, role).result()


def sign_in(page: Page, stack: ApiService, subject: str, role: Role) -> Page:
    token = token_for(stack, subject, role)
    page.goto(f"{stack.url}/ui/runs")
    page.wait_for_url("**/ui/login**")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/runs")
    return page


@pytest.fixture
def admin(context: BrowserContext, stack: ApiService) -> Page:
    return sign_in(context.new_page(), stack, "alice", "admin")


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

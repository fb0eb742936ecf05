"""Browser tests of the playground: Playwright driving Debian's Chromium against ``imagegen
serve`` and the Replicate double, both real processes on loopback.

Locally, without Chromium, these tests skip (``apt-get install chromium`` enables them); with
``CI=true`` a missing browser is a failure, so CI cannot pass without running them.
Screenshots go to ``test-artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import imagegen
from tests.fakes.replicate_double import DoubleProcess
from tests.support.imagegen_process import ImagegenProcess

REPO_ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM = (
    os.environ.get("IMAGEGEN_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}"
    return None


def skip_module_without_a_browser() -> None:
    """Locally, without Chromium, one skip line for the whole module; never with CI set."""
    problem = _missing()
    if problem is not None and not _in_ci():
        pytest.skip(
            f"browser tests: {problem}; `apt-get install -y chromium` enables them",
            allow_module_level=True,
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread until it
    stops, which would break every asyncio test that runs after it in the session."""
    problem = _missing()
    if problem is not None:
        pytest.fail(f"CI is set and the browser tests cannot run: {problem}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, double: DoubleProcess
) -> Iterator[ImagegenProcess]:
    with imagegen(tmp_path_factory.mktemp("playground"), double) as process:
        yield process


class Visit:
    """A browser tab on one imagegen, recording every request and console error."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def screenshot(self, name: str) -> None:
        """The page now, at desktop and at phone width."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            self.page.set_viewport_size(size)
            self.page.wait_for_timeout(200)  # let the layout settle after the resize
            self.page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        self.page.set_viewport_size(DESKTOP)

    def outside_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(self.base_url + "/")]


def open_visit(browser: Any, base_url: str) -> Iterator[Visit]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(30_000)
    visit = Visit(context.new_page(), base_url)
    try:
        yield visit
    finally:
        context.close()
    assert visit.outside_requests() == [], "the page loaded something from outside imagegen"
    unexpected = [e for e in visit.errors if "status of 4" not in e]  # API refusals under test
    assert unexpected == [], unexpected


@pytest.fixture
def visit(browser: Any, site: ImagegenProcess, control: Any) -> Iterator[Visit]:
    yield from open_visit(browser, site.base_url)

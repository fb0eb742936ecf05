"""The playground as a person uses it: fill the form, watch it run, see the images; cancel;
read the errors; page through the history; open a generation's page; do it all by keyboard."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import imagegen
from tests.e2e.playground.conftest import Visit, open_visit, skip_module_without_a_browser
from tests.e2e.test_keys_e2e import imagegen_cli
from tests.support.waiting import wait_until

from imagegen.auth.authenticator import MISSING

skip_module_without_a_browser()

from playwright.sync_api import Route, expect  # noqa: E402

pytestmark = pytest.mark.e2e

MODEL = "black-forest-labs/flux-schnell"
ASYNC = {"Prefer": "respond-async"}
BODY = {"model": MODEL, "prompt": "a red fox", "num_images": 1, "width": 512, "height": 512}

# Records every value the progress bar's aria-valuenow takes, as it changes.
WATCH_PROGRESS = """() => {
  window.seenProgress = [];
  new MutationObserver(() => {
    const bar = document.querySelector("[role=progressbar]");
    if (!bar || !bar.hasAttribute("aria-valuenow")) return;
    const value = Number(bar.getAttribute("aria-valuenow"));
    if (window.seenProgress.at(-1) !== value) window.seenProgress.push(value);
  }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def fill_form(visit: Visit, prompt: str, **fields: str) -> None:
    page = visit.page
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.locator("input[name=model]").fill(fields.pop("model", MODEL))
    for name, value in fields.items():
        page.locator(f"[name={name}]").fill(value)


def job_state(visit: Visit) -> Any:
    return visit.page.locator("#job .job-title .state")


def expect_loaded(visit: Visit, image: Any) -> None:
    check = "img => img.complete && img.naturalWidth > 0"
    visit.page.wait_for_function(check, arg=image.element_handle())


def test_generate_and_see_the_images(visit: Visit) -> None:
    page = visit.page
    response = visit.goto("/")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(f"#model-list option[value='{MODEL}']")).to_have_count(1)
    page.get_by_label("Size").select_option("512x512")
    expect(page.get_by_label("Width")).to_have_value("512")
    fill_form(visit, "a lighthouse in a storm", num_images="2", seed="42")
    page.get_by_role("button", name="Generate").click()

    expect(job_state(visit)).to_have_text("succeeded")
    expect(page.get_by_role("status").filter(has_text="Generation")).to_have_text(
        "Generation succeeded: 2 images"
    )
    images = page.locator("#job img")
    expect(images).to_have_count(2)
    for index in range(2):
        assert images.nth(index).get_attribute("src").startswith(visit.base_url + "/images/")
        expect_loaded(visit, images.nth(index))
    expect(page.locator("#job a[download]")).to_have_count(2)
    inputs = page.locator("#job .inputs-json").first
    expect(inputs).to_contain_text('"prompt": "a lighthouse in a storm"')
    expect(inputs).to_contain_text('"seed": 42')
    expect(page.locator("#job .took")).to_have_text(re.compile(r"\d+\.\d s"))
    visit.screenshot("playground")


def test_progress_moves_while_a_slow_model_runs(visit: Visit, control: Any) -> None:
    control.configure(duration=4.0)  # flux-schnell's 4 steps: a progress line every second
    page = visit.page
    visit.goto("/")
    page.evaluate(WATCH_PROGRESS)
    fill_form(visit, "a slow sunrise")
    page.get_by_role("button", name="Generate").click()

    bar = page.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^[1-9]\d?$"))
    expect(page.locator("#job-elapsed")).to_have_text(re.compile(r"running · \d+% · \d+\.\d s"))
    visit.screenshot("playground-running")
    page.wait_for_function("() => window.seenProgress.length >= 2")
    expect(job_state(visit)).to_have_text("succeeded", timeout=30_000)
    seen = page.evaluate("() => window.seenProgress")
    running = [value for value in seen if value < 100]
    assert len(running) >= 2, seen
    assert running == sorted(running), seen
    expect(page.get_by_role("progressbar")).to_have_count(0)  # gone once it ended


def test_cancel_stops_the_generation_upstream(visit: Visit, control: Any) -> None:
    control.script("never_finish")
    page = visit.page
    visit.goto("/")
    fill_form(visit, "a painting that never dries")
    page.get_by_role("button", name="Generate").click()
    expect(job_state(visit)).to_have_text("running")
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", re.compile(r"\d+"))

    page.get_by_role("button", name="Cancel").click()
    expect(job_state(visit)).to_have_text("canceled")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    wait_until(lambda: control.stats()["cancels"] >= 1, 15, "the double to see the cancel")


def test_a_400_is_shown_next_to_the_field_it_names(visit: Visit) -> None:
    page = visit.page
    visit.goto("/")
    fill_form(visit, "a tiny boat", width="10")
    page.get_by_role("button", name="Generate").click()

    width_error = page.locator("#width-error")
    expect(width_error).to_have_text("400: width: must be an integer from 64 to 4096")
    expect(page.get_by_label("Width")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Width")).to_be_focused()
    expect(page.locator("#job")).to_be_hidden()
    visit.screenshot("playground-error")

    page.get_by_label("Width").fill("512")
    page.get_by_label("Prompt", exact=True).fill("   ")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#prompt-error")).to_have_text("400: prompt: must not be empty")
    expect(width_error).to_be_empty()
    expect(page.get_by_label("Width")).not_to_have_attribute("aria-invalid", "true")


def test_keyboard_only_submit(visit: Visit) -> None:
    page = visit.page
    visit.goto("/")
    expect(page.locator(f"#model-list option[value='{MODEL}']")).to_have_count(1)

    def tab_to(selector: str) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate(f"() => document.activeElement.matches({selector!r})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("textarea[name=prompt]")
    page.keyboard.type("a keyboard drawn in ink")
    tab_to("select[name=size]")
    page.keyboard.press("ArrowUp")  # the preset above 1024x1024: 768x768
    expect(page.get_by_label("Width")).to_have_value("768")
    tab_to("button[type=submit]")
    visit.screenshot("playground-keyboard-focus")
    page.keyboard.press("Enter")

    expect(job_state(visit)).to_have_text("succeeded")
    expect(page.locator("#job img")).to_have_count(1)
    expect(page.locator("#job .facts")).to_contain_text("a keyboard drawn in ink")
    expect(page.locator("#job .facts")).to_contain_text("1 \u00d7 768\u00d7768")


PAGES = ("/", "/history", "/generations/gen_anything", "/assets/api.js", "/assets/style.css")


def test_an_api_key_is_asked_for_on_401_and_sent_as_bearer(
    browser: Any, double: Any, control: Any, tmp_path: Any
) -> None:
    created = imagegen_cli(tmp_path, "keys", "create", "playground")  # the server's database
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    with imagegen(tmp_path, double) as server:  # with a key, the API needs one
        with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
            for path in PAGES:  # the pages hold no data: they need no key
                assert anonymous.get(path).status_code == 200, path
            for path in ("/api/v1/models", "/api/v1/generations"):
                assert anonymous.get(path).status_code == 401, path
        sent: list[str | None] = []  # the Authorization header of each create

        def record(request: Any) -> None:
            if request.url.endswith("/api/v1/images/generate"):
                sent.append(request.headers.get("authorization"))

        for visit in open_visit(browser, server.base_url):
            page = visit.page
            page.on("request", record)
            visit.goto("/")  # its list of models is refused: it asks for a key at once
            expect(page.locator("#key-panel")).to_have_attribute("open", "")
            expect(page.locator("#form-error")).to_contain_text("Could not list the models: 401")
            fill_form(visit, "a locked door")
            page.get_by_role("button", name="Generate").click()
            expect(page.locator("#form-error")).to_have_text(
                f'401 Unauthorized: {MISSING}. Enter an API key under "API key" at the top.'
            )
            expect(page.locator("#key-panel")).to_have_attribute("open", "")
            expect(page.get_by_label("API key")).to_be_focused()
            visit.screenshot("playground-api-key")

            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Save").click()
            expect(page.locator(f"#model-list option[value='{MODEL}']")).to_have_count(1)
            page.get_by_role("button", name="Generate").click()
            expect(job_state(visit)).to_have_text("succeeded")
            expect_loaded(visit, page.locator("#job img").first)
            assert sent == [None, f"Bearer {key}"]
            stored = page.evaluate(
                "() => [sessionStorage.length, localStorage.length, document.cookie]"
            )
            assert stored == [1, 0, ""]

            visit.goto("/history")  # the key lasts for the tab: the history reads with it
            expect(page.locator(".history-item")).to_have_count(1)


def test_a_generations_page(visit: Visit) -> None:
    page = visit.page
    with httpx.Client(base_url=visit.base_url, timeout=30) as api:
        created = api.post("/api/v1/images/generate", json={**BODY, "num_images": 2}).json()

    def with_cost(route: Route) -> None:  # the cost field, when the API reports one
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "cost": 0.0042})

    page.route(f"**/api/v1/generations/{created['id']}", with_cost)
    visit.goto(f"/generations/{created['id']}")
    expect(page.locator("h1")).to_have_text(f"Generation {created['id']}")
    expect(job_state(visit)).to_have_text("succeeded")
    images = page.locator("#job img")
    expect(images).to_have_count(2)
    expect_loaded(visit, images.first)
    assert images.first.get_attribute("src") == created["image_urls"][0]
    expect(page.locator("#job .cost")).to_have_text("$0.0042")
    expect(page.locator("#job .inputs-json")).to_contain_text('"prompt": "a red fox"')
    visit.screenshot("generation")

    visit.goto("/generations/gen_doesnotexist")
    expect(page.locator("#page-error")).to_have_text(re.compile(r"^404: .*gen_doesnotexist"))


def test_a_generations_page_follows_it_while_it_runs(visit: Visit, control: Any) -> None:
    control.configure(duration=3.0)
    with httpx.Client(base_url=visit.base_url, timeout=30) as api:
        created = api.post("/api/v1/images/generate", json=BODY, headers=ASYNC).json()
    page = visit.page
    visit.goto(f"/generations/{created['id']}")
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", re.compile(r"\d+"))
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    visit.screenshot("generation-running")
    expect(job_state(visit)).to_have_text("succeeded", timeout=30_000)
    expect(page.locator("#job img")).to_have_count(1)


def test_history_pages_newest_first_with_thumbnails_states_and_errors(
    browser: Any, double: Any, control: Any, tmp_path: Any
) -> None:
    with imagegen(tmp_path, double) as server:  # an empty history of its own
        with httpx.Client(base_url=server.base_url, timeout=30) as api:
            for index in range(5):
                if index == 1:
                    control.script("fail_prediction", error="the model fell over")
                api.post("/api/v1/images/generate", json={**BODY, "prompt": f"picture {index}"})
            ids = [g["id"] for g in api.get("/api/v1/generations?limit=10").json()["data"]]
        for visit in open_visit(browser, server.base_url):
            page = visit.page
            items = page.locator(".history-item")
            visit.goto("/history?limit=2")
            expect(items.locator(".history-prompt")).to_have_text(["picture 4", "picture 3"])
            expect(page.locator(".thumb img")).to_have_count(2)
            expect_loaded(visit, page.locator(".thumb img").first)
            expect(items.first.locator(".state")).to_have_text("succeeded")
            visit.screenshot("history")

            page.get_by_role("link", name="Older").click()
            expect(items.locator(".history-prompt")).to_have_text(["picture 2", "picture 1"])
            failed = items.nth(1)
            expect(failed.locator(".state")).to_have_text("failed")
            expect(failed.locator(".history-error")).to_contain_text("the model fell over")
            expect(failed.locator(".thumb img")).to_have_count(0)
            visit.screenshot("history-older")

            page.get_by_role("link", name="Older").click()
            expect(items.locator(".history-prompt")).to_have_text(["picture 0"])
            expect(page.get_by_role("link", name="Older")).to_be_hidden()

            page.get_by_role("link", name="picture 0").click()
            expect(page).to_have_url(f"{server.base_url}/generations/{ids[-1]}")
            expect(job_state(visit)).to_have_text("succeeded")
    assert len(ids) == 5


def test_provider_urls_are_linked_not_loaded(
    browser: Any, double: Any, control: Any, tmp_path: Any
) -> None:
    env = {"IMAGEGEN_RETURN_PROVIDER_URLS": "true"}
    with imagegen(tmp_path, double, **env) as server:  # images stay at the provider
        with httpx.Client(base_url=server.base_url, timeout=30) as api:
            created = api.post("/api/v1/images/generate", json=BODY).json()
        assert created["image_urls"][0].startswith(double.base_url)
        for visit in open_visit(browser, server.base_url):  # asserts nothing came from elsewhere
            visit.goto(f"/generations/{created['id']}")
            expect(job_state(visit)).to_have_text("succeeded")
            expect(visit.page.locator("#job img")).to_have_count(0)
            link = visit.page.get_by_role("link", name="Image 1 at the provider")
            expect(link).to_have_attribute("href", created["image_urls"][0])
            visit.goto("/history")
            expect(visit.page.locator(".history-item")).to_have_count(1)
            expect(visit.page.locator(".thumb img")).to_have_count(0)

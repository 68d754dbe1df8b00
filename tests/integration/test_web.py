"""The web page in real headless Chromium against a live stack (`pneumo gateway`, Redis, worker).

Screenshots (desktop, phone, model card) are saved to test-artifacts/ for people to look at.
Chromium comes from the OS (`apt-get install chromium`), driven by Playwright for Python; no
browser download is needed. Without either, these tests skip and say which is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.schemas import OUT_OF_DISTRIBUTION_MESSAGE
from tests.support.dicoms import DicomSpec, dicom_file, ramp
from tests.support.images import phantom_png
from tests.support.processes import REPO_ROOT, GatewayProcess, worker_environment

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)"
)
CHROMIUM = os.environ.get("PNEUMO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
RESULT_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            f"No Chromium at {CHROMIUM}: apt-get install -y chromium (or set PNEUMO_CHROMIUM)"
        )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.fixture()
def images(tmp_path: Path) -> dict[str, Path]:
    twelve_bit = (np.rint(ramp(192, 160)) * 16).astype(np.uint16)
    payloads = {
        "chest-pa.png": phantom_png(seed=91, size=384),
        "chest-lateral.dcm": dicom_file(DicomSpec(twelve_bit, bits_stored=12, window=(2000, 3600))),
        "notes.png": b"this is not a radiograph",
    }
    for name, data in payloads.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in payloads}


def open_page(browser, url: str, viewport: dict, **options):
    context = browser.new_context(viewport=viewport, **options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The gateway sends a Content-Security-Policy; anything the page does that it forbids
    # (an inline style or script, a foreign origin) is reported here and fails the test.
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', event => console.error("
        "`CSP violation: ${event.violatedDirective} ${event.blockedURI}`))"
    )
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if "Content Security Policy" in message.text or "CSP violation" in message.text
            else None
        ),
    )
    # Playwright turns on file-chooser interception when the first listener is added, and does
    # so asynchronously: add one now, or the first picker opened by a key press can be missed.
    page.on("filechooser", lambda chooser: None)
    response = page.goto(url)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    return context, page, errors


def choose_files(page, paths: list[Path]) -> None:
    """Through the drop zone button, as a person would: it must open the file picker."""
    with page.expect_file_chooser() as chooser:
        page.click("#drop-zone")
    chooser.value.set_files([str(path) for path in paths])


def wait_for_pictures(page) -> None:
    """Every picture of every finished result (original, model input, heatmap) has decoded."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('.result[data-state=succeeded] img')]"
        ".every(image => image.complete && image.naturalWidth > 0)"
    )


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_upload_two_images_and_see_results_on_desktop(
    browser, gateway: GatewayProcess, images
) -> None:
    context, page, errors = open_page(browser, gateway.url, DESKTOP)
    sync_api.expect(page.locator("#synthetic-banner")).to_be_visible()
    sync_api.expect(page.locator("#synthetic-banner")).to_contain_text("not for diagnosis")
    choose_files(page, [images["chest-pa.png"], images["chest-lateral.dcm"]])
    done = page.locator('.result[data-state="succeeded"]')
    sync_api.expect(done).to_have_count(2, timeout=RESULT_TIMEOUT_MS)
    for index in range(2):
        result = done.nth(index)
        assert result.locator(".label-text").inner_text() in ("NORMAL", "PNEUMONIA")
        probability = float(result.locator(".fact-probability").inner_text())
        assert 0 <= probability <= 1 and float(result.locator(".fact-threshold").inner_text()) > 0
        sync_api.expect(result.locator(".fact-model")).to_contain_text("tiny-test-model 0.0.1")
    wait_for_pictures(page)
    assert page.locator(".result img").count() == 6
    sync_api.expect(page.locator("#results-summary")).to_have_text("2 images · 2 done")
    sync_api.expect(page.locator("#announcer")).not_to_be_empty()
    screenshot(page, "web-desktop.png")
    assert errors == []
    context.close()


def test_keyboard_only_use(browser, gateway: GatewayProcess, images) -> None:
    """Tab to the drop zone, Enter opens the picker, arrow keys move the opacity slider."""
    context, page, errors = open_page(browser, gateway.url, DESKTOP)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    for _ in range(8):
        if page.evaluate("document.activeElement.id") == "drop-zone":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drop-zone"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(str(images["chest-pa.png"]))
    slider = page.locator(".opacity")
    sync_api.expect(page.locator('.result[data-state="succeeded"]')).to_have_count(
        1, timeout=RESULT_TIMEOUT_MS
    )
    slider.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    sync_api.expect(page.locator(".opacity-value")).to_have_text("60%")
    assert page.eval_on_selector(".image-heatmap", "image => image.style.opacity") == "0.6"
    outline = page.eval_on_selector(".opacity", "element => getComputedStyle(element).outlineStyle")
    assert outline == "solid"  # a visible focus ring
    assert errors == []
    context.close()


def test_phone_layout_and_a_refused_file(browser, gateway: GatewayProcess, images) -> None:
    context, page, errors = open_page(
        browser, gateway.url, PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    choose_files(page, [images["notes.png"], images["chest-pa.png"]])
    sync_api.expect(page.locator('.result[data-state="succeeded"]')).to_have_count(
        1, timeout=RESULT_TIMEOUT_MS
    )
    failed = page.locator('.result[data-state="failed"]')
    sync_api.expect(failed.locator(".error-text")).to_contain_text("Only JPEG, PNG and DICOM")
    wait_for_pictures(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "web-phone.png")
    assert errors == []
    context.close()


def test_model_card_page(browser, gateway: GatewayProcess) -> None:
    context, page, errors = open_page(browser, gateway.url + "/model-card", DESKTOP)
    card = page.locator(".model-card")
    sync_api.expect(card).to_have_count(1)
    sync_api.expect(card.locator("h2")).to_contain_text("tiny-test-model 0.0.1")
    sync_api.expect(card).to_contain_text("Triage support")
    sync_api.expect(card).to_contain_text("Decision threshold")
    sync_api.expect(page.locator("#synthetic-banner")).to_be_visible()
    screenshot(page, "model-card.png")
    assert errors == []
    context.close()


def test_api_key_is_asked_for_and_sent(
    browser, redis_server, tiny_model_dir, worker, tmp_path: Path, images
) -> None:
    environment = worker_environment(redis_server.url, tiny_model_dir, PNEUMO_API_KEYS="ward-7-key")
    keyed_gateway = GatewayProcess(environment, tmp_path / "gateway.log").start()
    try:
        context, page, errors = open_page(browser, keyed_gateway.url, DESKTOP)
        sync_api.expect(page.locator("#connection")).to_have_attribute("open", "")
        page.fill("#api-key", "ward-7-key")
        page.keyboard.press("Enter")
        sync_api.expect(page.locator("#synthetic-banner")).to_be_visible()
        choose_files(page, [images["chest-pa.png"]])
        sync_api.expect(page.locator('.result[data-state="succeeded"]')).to_have_count(
            1, timeout=RESULT_TIMEOUT_MS
        )
        wait_for_pictures(page)
        assert page.evaluate("sessionStorage.getItem('pneumo.apiKey')") == "ward-7-key"
        assert errors == []
        context.close()
    finally:
        keyed_gateway.stop()


def test_a_flagged_result_leads_with_the_warning(browser, gated_stack, tmp_path: Path) -> None:
    """A model with a gate: the noise field is out of distribution, and the page says so before
    the label (kept, for the record only); the phantom beside it shows its label as usual."""
    (tmp_path / "noise.png").write_bytes(gated_stack.model.noise_field)
    (tmp_path / "chest.png").write_bytes(gated_stack.model.typical_film)
    context, page, errors = open_page(browser, gated_stack.gateway.url, DESKTOP)
    choose_files(page, [tmp_path / "noise.png", tmp_path / "chest.png"])
    done = page.locator('.result[data-state="succeeded"]')
    sync_api.expect(done).to_have_count(2, timeout=RESULT_TIMEOUT_MS)
    flagged = page.locator('.result:has(.verdict[data-assessment="out_of_distribution"])')
    typical = page.locator('.result:has(.verdict[data-assessment="in_distribution"])')
    sync_api.expect(flagged).to_have_count(1)
    sync_api.expect(typical).to_have_count(1)
    warning = flagged.locator(".ood-warning")
    sync_api.expect(warning).to_be_visible()
    sync_api.expect(warning).to_have_text(OUT_OF_DISTRIBUTION_MESSAGE)
    sync_api.expect(flagged.locator(".label-text")).to_contain_text("For the record only")
    warning_first = flagged.evaluate(
        "node => Boolean(node.querySelector('.ood-warning').compareDocumentPosition("
        "node.querySelector('.label-text')) & Node.DOCUMENT_POSITION_FOLLOWING)"
    )
    assert warning_first
    sync_api.expect(typical.locator(".ood-warning")).to_be_hidden()
    assert typical.locator(".label-text").inner_text() in ("NORMAL", "PNEUMONIA")
    wait_for_pictures(page)
    screenshot(page, "web-out-of-distribution.png")
    assert errors == []
    context.close()

"""End to end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright's Python package).

Open the page, upload an image and read P(fake); upload a tiny labelled zip, fine-tune 1 epoch and see
the curve; look at Compare. Screenshots go to the test's tmp dir, and also to $FDFTNET_SCREENSHOTS if set.
"""
import json
import os
import shutil
from pathlib import Path

import pytest

from test_lab import free_port, lab  # noqa: F401 - `lab` is a fixture (tiny checkpoints, bench results)

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


def docs_env() -> dict:
    """For README screenshots ($FDFTNET_SCREENSHOTS set): the repo's real checkpoints/ and bench/results,
    when checkpoints/ already holds an FDFtNet and a baseline; otherwise the tiny test checkpoints."""
    if not os.environ.get("FDFTNET_SCREENSHOTS"):
        return {}
    kinds = set()
    for cfg in (REPO / "checkpoints").glob("*/config.json"):
        try:
            kinds.add(json.loads(cfg.read_text()).get("model_type"))
        except (OSError, ValueError, AttributeError):
            pass
    if not {"fdftnet", "baseline"} <= kinds:
        return {}
    return {"FDFTNET_CHECKPOINTS": str(REPO / "checkpoints"), "FDFTNET_RESULTS": str(REPO / "bench" / "results")}


@pytest.fixture(scope="module")
def url(lab):  # noqa: F811
    import app
    env = docs_env()
    old = {k: os.environ[k] for k in env}
    os.environ.update(env)
    app.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
    yield app.demo.local_url
    app.demo.close()
    os.environ.update(old)


@pytest.fixture
def page(url):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.get_by_text("FDFtNet lab", exact=False).first.wait_for()
        yield page
        browser.close()


def shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("FDFTNET_SCREENSHOTS"):
        out = Path(os.environ["FDFTNET_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.name)


def test_detect_an_image_then_a_bad_one(page, lab, tmp_path):  # noqa: F811
    page.wait_for_function("() => !document.body.innerText.includes('default FDFtNet (missing)')")
    page.locator("#image input[type=file]").set_input_files(lab.fake)  # the upload event runs detection
    page.locator("#faces tr.face-row").first.wait_for()  # a 64x64 face crop: used as is, one row
    p = float(page.locator("#faces .p-fake").first.inner_text())
    assert 0 <= p <= 1
    page.locator("#verdict").get_by_text("P(fake)").wait_for()  # detect.png: test_browser_detect.py (a real photo)
    # a file that is not an image: a one-line message in the page, and the page keeps working
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    page.locator("#image").get_by_label("Remove Image").click()
    page.locator("#image input[type=file]").set_input_files(str(bad))
    page.get_by_text("not an image", exact=False).first.wait_for()
    assert "Traceback" not in page.content()


def test_finetune_one_epoch_and_see_the_curve(page, lab, tmp_path):  # noqa: F811
    page.get_by_role("tab", name="Few-shot fine-tune").click()
    page.locator("#ft-zip").wait_for()
    upload = page.locator("#ft-zip input[type=file]")
    for _ in range(3):  # right after the tab click its input may not listen yet: upload again if nothing happened
        upload.set_input_files(lab.zip)
        page.wait_for_timeout(3000)
        if upload.count() == 0:  # the input is gone once the component holds (or is uploading) the file
            break
    page.locator("#ft-zip a[download='set.zip']").wait_for()  # the link exists once the upload is done
    epochs = page.locator("#ft-epochs input[type=number]")
    epochs.fill("1")
    epochs.press("Enter")
    page.get_by_role("button", name="Fine-tune", exact=True).click()
    page.locator("#ft-status").get_by_text("done", exact=False).wait_for(timeout=120_000)
    page.locator("#ft-curves .js-plotly-plot .scatterlayer .trace").first.wait_for()
    assert "epoch 1 of 1" in page.locator("#ft-status").inner_text()
    page.locator("#ft-results").get_by_text("fine-tuned FDFtNet").wait_for()
    shot(page, tmp_path, "finetune")
    page.get_by_role("tab", name="Compare", exact=True).click()
    page.locator(".js-plotly-plot:visible").first.wait_for()  # compare.png: test_browser_fewshot.py (its sweep too)

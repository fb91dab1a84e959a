"""The Few-shot tab's "compare methods" sweep end to end in headless Chromium, then the Compare tab.

Upload a labelled zip, run the sweep, watch points appear, see the summary, find the best model in Detect's
picker and the sweep in Compare. Fixtures come from tests/test_browser.py (app, page, screenshots). With
$FDFTNET_SCREENSHOTS set and the repo's checkpoints present, the upload is real face crops from the shared gan64
set (never committed) and the sweep uses the lab's real settings, for docs/screenshots/finetune-sweep.png and
compare.png.
"""
import os
import re
import zipfile
from pathlib import Path

import pytest

from test_browser import docs_env, page, shot, url  # noqa: F401 - fixtures
from test_lab import lab  # noqa: F401 - fixture

GAN64 = Path(os.environ.get("FDFTNET_SHARED_DATA", "/work/shared/data")) / "gan64"


def _docs_mode() -> bool:
    return bool(docs_env()) and (GAN64 / "test").is_dir()


def _gan64_zip(path: Path, n: int) -> str:
    """n real + n fake face crops of gan64's test split, as a labelled zip (a file of the test's tmp dir)."""
    with zipfile.ZipFile(path, "w") as zf:
        for cls in ("real", "fake"):
            for f in sorted((GAN64 / "test" / cls).iterdir())[:n]:
                zf.write(f, f"gan64-sample/{cls}/{f.name}")
    return str(path)


@pytest.fixture
def sweep_settings(lab, tmp_path, monkeypatch):  # noqa: F811
    """(zip, shots, labels of methods to untick): tiny and quick, or (docs mode) real crops and the lab's steps."""
    from lab import methods
    if _docs_mode():
        return _gan64_zip(tmp_path / "gan64-sample.zip", 16), "2,5,10", ["baseline, all layers retrained"]
    monkeypatch.setattr(methods, "STEPS", 6)  # the app runs in this process
    return lab.zip, "1,2", ["baseline, all layers retrained", "FDFtNet: new attention"]


def _upload(page, path: str) -> None:
    upload = page.locator("#ft-zip input[type=file]")
    for _ in range(3):  # right after the tab click its input may not listen yet: upload again if nothing happened
        upload.set_input_files(path)
        page.wait_for_timeout(3000)
        if upload.count() == 0:
            break
    page.locator(f"#ft-zip a[download='{Path(path).name}']").wait_for()


def test_compare_methods_draws_curves_live_then_in_detect_and_compare(page, sweep_settings, tmp_path):  # noqa: F811
    zip_path, shots, untick = sweep_settings
    page.get_by_role("tab", name="Few-shot fine-tune").click()
    page.locator("#ft-zip").wait_for()
    _upload(page, zip_path)
    page.get_by_role("tab", name="Compare methods (shots sweep)").click()
    box = page.locator("#cm-shots textarea, #cm-shots input").first
    box.fill(shots)
    box.press("Tab")
    for label in untick:
        page.locator("#cm-methods").get_by_label(label, exact=False).first.uncheck()
    page.locator("#cm-eta").get_by_text("runs (methods", exact=False).wait_for()
    page.get_by_role("button", name="Compare methods", exact=True).click()
    # live: a status "1/N runs ..." and a curve before the sweep ends
    page.locator("#cm-status").get_by_text("runs: ", exact=False).wait_for(timeout=900_000)
    # a marker of a mean curve (the ±1 sd band, drawn first, has no area while each k has one run)
    page.locator("#cm-curves .js-plotly-plot .scatterlayer .points path").first.wait_for()
    # the final status ("Done: N runs"), not a live one ("3/18 runs done; ...": get_by_text ignores case)
    page.locator("#cm-status").get_by_text(re.compile(r"Done: \d+ runs")).wait_for(timeout=1_800_000)
    page.locator("#cm-table").get_by_text("linear probe").wait_for()
    assert "Traceback" not in page.content()
    page.wait_for_timeout(1500)  # let plotly finish laying out
    shot(page, tmp_path, "finetune-sweep")
    # the best run is a model of the session: Detect's picker offers it
    page.get_by_role("tab", name="Detect").click()
    page.get_by_label("Model").first.click()
    page.get_by_role("option", name="sweep #1 best", exact=False).wait_for()
    page.keyboard.press("Escape")
    # Compare: the headline, the curves (the sweep is a dataset of this session) and the ROC
    page.get_by_role("tab", name="Compare", exact=True).click()
    page.locator("#cmp-headline .js-plotly-plot").wait_for()
    page.locator("#cmp-shots .js-plotly-plot").wait_for()
    page.wait_for_timeout(1500)
    shot(page, tmp_path, "compare")


def test_reals_only_shows_pseudo_fakes_then_fine_tunes(page, lab, tmp_path):  # noqa: F811
    import io

    import numpy as np
    from PIL import Image

    from conftest import make_face
    z = tmp_path / "me.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(8):
            buf = io.BytesIO()
            Image.fromarray(make_face(np.random.default_rng(i))).save(buf, "PNG")
            zf.writestr(f"me/{i}.png", buf.getvalue())
    page.get_by_role("tab", name="Few-shot fine-tune").click()
    page.locator("#ft-zip").wait_for()
    _upload(page, str(z))
    page.locator("#ft-reals-only input[type=checkbox]").check()
    page.locator("#ft-pseudo").get_by_text("self-blend 1").first.wait_for()  # before training starts
    epochs = page.locator("#ft-epochs input[type=number]")
    epochs.fill("1")
    epochs.press("Enter")
    page.get_by_role("button", name="Fine-tune", exact=True).click()
    page.locator("#ft-status").get_by_text("done", exact=False).wait_for(timeout=300_000)
    page.locator("#ft-results").get_by_text("self-blends of its reals", exact=False).wait_for()
    assert "Traceback" not in page.content()

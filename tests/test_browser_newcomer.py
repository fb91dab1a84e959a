"""Issue #32, "a lab a newcomer gets through without a guide": one newcomer's path through the lab in headless
Chromium, asserting what the page says at each step.

Detect a photo of one face (a verdict and what the model was tested on), then a group photo (a row per face and a
count of verdicts); fine-tune on a labelled zip of 20 real + 20 fake faces (live progress, then the hold-out
table); compare methods with the shots left on "auto" (the status names the k it chose); open Compare (the
session's sweep first, no internal variant names outside the "advanced" fold). All along: no error toast or badge,
no traceback, none of the words newcomers tripped on (MBblockV3, save_pretrained, issue 21, Cutout α).

Fixtures come from tests/test_browser.py (the tiny checkpoints of tests/test_lab.py; with $FDFTNET_SCREENSHOTS set,
the repo's checkpoints when present, see test_browser.docs_env). Screenshots newcomer-*.png go to the test's tmp
dir, and to $FDFTNET_SCREENSHOTS when set:

    FDFTNET_SCREENSHOTS=/tmp/newcomer-shots .venv/bin/python -m pytest tests/test_browser_newcomer.py
"""
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import add_upsampling_artefact, make_face
from test_browser import lab, page, shot, url  # noqa: F401 - fixtures and the screenshot helper
from test_browser_detect import EXAMPLES, rows, upload
from test_browser_fewshot import _upload as upload_zip

pytest.importorskip("facenet_pytorch")

MINUTES = 60_000  # ms
JARGON = ("MBblockV3", "save_pretrained", "issue 21", "Cutout α")  # issue #32: words newcomers tripped on
# issue #32 leftovers, reported and not fixed yet: found alone they make the test xfail at the end of the walk (so
# it passes once they are fixed); anything else found fails it. Each is (the word or internal name, where it shows):
KNOWN = [
    # the sweep's method checkbox "FDFtNet: new FTT + MBblockV3 on the frozen backbone" (lab/methods.py METHOD_INFO)
    ("MBblockV3", "#cm-methods"),
    # a sweep's best model, in Compare's robustness "models" checkboxes (and Detect's picker), is named with the
    # method's internal name (lab/methods.py: f"sweep #{n} best: {backbone}, {best['method']}, ...")
    ("linear-probe", "sweep #1 best:"),
]

# every change of these status lines, every toast and every error badge, recorded by the page itself: a status
# that lasts a fraction of a second, or a toast gone before the next check, is still seen
WATCH = """() => {
  const w = window.__newcomer = {toasts: [], errors: [], status: {}};
  const ids = ['detect-status', 'verdict', 'ft-status', 'cm-status'];
  const note = (list, s) => { if (s && !list.includes(s)) list.push(s); };
  const scan = () => {
    document.querySelectorAll('.toast-body').forEach(t => note(w.toasts, `${t.className}: ${t.innerText}`.trim()));
    document.querySelectorAll('span.error').forEach(
      e => note(w.errors, `${(e.closest('[id]') || {}).id || '?'}: ${e.innerText}`.trim()));
    for (const id of ids) {
      const el = document.getElementById(id);
      if (el) note(w.status[id] = w.status[id] || [], el.innerText.trim());
    }
  };
  new MutationObserver(scan).observe(document.body, {childList: true, subtree: true, characterData: true});
  scan();
}"""

# what a visitor can read now: the rendered text, the plots' SVG text, the values in visible boxes
VISIBLE_TEXT = """() => {
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0
                       && getComputedStyle(e).visibility !== 'hidden'; };
  const parts = [document.body.innerText];
  document.querySelectorAll('svg text').forEach(t => { if (shown(t)) parts.push(t.textContent); });
  document.querySelectorAll('input, textarea').forEach(i => {
    if (!['file', 'password', 'checkbox', 'radio'].includes(i.type) && shown(i)) parts.push(i.value); });
  return parts.join('\\n');
}"""

# where a word is shown: the closest element with an id, and the text around it
WHERE = """(word) => {
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    if (n.textContent.toLowerCase().includes(word.toLowerCase()) && n.parentElement && shown(n.parentElement)) {
      const owner = n.parentElement.closest('[id]');
      out.push(`#${owner ? owner.id : '?'}: ${n.textContent.trim().slice(0, 100)}`);
    }
  }
  return out;
}"""

# the visible checkbox labels of the page
CHECKBOX_LABELS = """() => Array.from(document.querySelectorAll('input[type=checkbox]'))
  .filter(i => { const l = i.closest('label') || i; const r = l.getBoundingClientRect(); return r.width > 0; })
  .map(i => (i.closest('label') || i.parentElement).innerText.trim())"""


def labelled_faces_zip(path: Path, n: int = 20) -> str:
    """n real + n fake 64x64 face PNGs (tests/conftest.py's faces, the fakes with its upsampling grid) in real/ and
    fake/ folders: a newcomer's labelled zip."""
    with zipfile.ZipFile(path, "w") as zf:
        for cls in ("real", "fake"):
            for i in range(n):
                img = make_face(np.random.default_rng(i + (1000 if cls == "fake" else 0)))
                buf = io.BytesIO()
                Image.fromarray(add_upsampling_artefact(img) if cls == "fake" else img).save(buf, "PNG")
                zf.writestr(f"{cls}/{cls}-{i:02d}.png", buf.getvalue())
    return str(path)


def internal_names() -> set[str]:
    """The lab's own names of variants and sweep methods that a plain label must not show bare, e.g.
    fdftnet-unfrozen-lowlr (single words such as "baseline" are plain English too)."""
    from fdftnet.sweep import METHODS
    from lab.plots import NAMES
    return {n for n in [*NAMES, *METHODS] if "-" in n}


class Walk:
    """The checks every step of the path makes, and the internal words found along it."""

    def __init__(self, browser_page):
        self.page, self.found = browser_page, []  # (step, word or name, where it shows)
        browser_page.evaluate(WATCH)

    def clean(self, step: str) -> None:
        """No error toast or badge so far, no traceback, and (recorded, see KNOWN) no jargon in sight."""
        seen = self.page.evaluate("() => window.__newcomer")
        assert seen["toasts"] == [] and seen["errors"] == [], f"{step}: toasts {seen['toasts']}, {seen['errors']}"
        assert self.page.locator(".toast-body").count() == 0, step
        assert "Traceback" not in self.page.content(), step
        text = self.page.evaluate(VISIBLE_TEXT).lower()
        for word in JARGON:
            if word.lower() in text:
                where = self.page.evaluate(WHERE, word) or ["(in a box's value or a plot)"]
                self.found += [(step, word, w) for w in where if (step, word, w) not in self.found]

    def statuses(self, elem_id: str) -> list[str]:
        return self.page.evaluate("(id) => window.__newcomer.status[id] || []", elem_id)


def test_a_newcomer_gets_through_the_lab(page, lab, tmp_path, monkeypatch):  # noqa: F811
    from lab import methods
    monkeypatch.setattr(methods, "STEPS", 6)  # the app runs in this process: a quick sweep
    walk = Walk(page)
    page.wait_for_function("() => !document.body.innerText.includes('default FDFtNet (missing)')")
    walk.clean("the page opened")

    # 1. Detect: a photo of their own with one face
    from skimage import data
    photo = tmp_path / "my-photo.jpg"
    Image.fromarray(data.astronaut()).save(photo, quality=90)
    upload(page, photo)
    page.wait_for_function("() => document.querySelectorAll('#faces tr.face-row').length === 1", timeout=3 * MINUTES)
    page.locator("#verdict h3").wait_for()
    verdict = page.locator("#verdict").inner_text()
    assert re.match(r"\s*(FAKE|REAL|UNCERTAIN)\b", verdict), verdict
    assert "Tested on" in verdict or "not calibrated" in verdict, verdict
    assert 0 <= float(page.locator("#faces .p-fake").first.inner_text()) <= 1
    page.locator("#boxes img").wait_for()
    walk.clean("Detect, one face")
    page.wait_for_timeout(500)  # the boxed photo finishes loading
    shot(page, tmp_path, "newcomer-detect")

    # 2. Detect: a group photo
    upload(page, EXAMPLES / "two-astronauts.jpg")
    page.wait_for_function("() => document.querySelectorAll('#faces tr.face-row').length === 2", timeout=3 * MINUTES)
    page.locator("#verdict").get_by_text("2 faces", exact=False).wait_for()
    verdict = page.locator("#verdict").inner_text()
    assert re.search(r"2 faces: \d fake, \d uncertain, \d real", verdict), verdict
    counts = [int(n) for n in re.search(r"(\d) fake, (\d) uncertain, (\d) real", verdict).groups()]
    assert sum(counts) == 2 and rows(page).count() == 2
    assert "face 1:" in verdict and "face 2:" in verdict and ("Tested on" in verdict or "not calibrated" in verdict)
    walk.clean("Detect, a group photo")
    page.wait_for_timeout(500)
    shot(page, tmp_path, "newcomer-group")

    # 3. Few-shot fine-tune: a labelled zip of 20 real + 20 fake faces, two training rounds
    page.get_by_role("tab", name="Few-shot fine-tune").click()
    page.locator("#ft-zip").wait_for()
    walk.clean("Few-shot fine-tune, opened")
    upload_zip(page, labelled_faces_zip(tmp_path / "my-faces.zip"))
    epochs = page.locator("#ft-epochs input[type=number]")
    epochs.fill("2")
    epochs.press("Enter")
    page.get_by_role("button", name="Fine-tune", exact=True).click()
    page.locator("#ft-status").get_by_text(re.compile(r"Done:")).wait_for(timeout=15 * MINUTES)  # not "... done"
    live = [s for s in walk.statuses("ft-status") if "Done" not in s
            and ("finding the faces of your upload" in s or re.match(r"epoch \d+/2\b", s))]
    assert live, f"no live progress in the status: {walk.statuses('ft-status')}"
    results = page.locator("#ft-results table")
    results.wait_for()
    assert results.is_visible() and "fine-tuned FDFtNet" in results.inner_text()
    page.locator("#ft-curves .js-plotly-plot .scatterlayer .trace").first.wait_for()
    walk.clean("Few-shot fine-tune, done")
    page.wait_for_timeout(1000)
    shot(page, tmp_path, "newcomer-finetune")

    # 4. Compare methods: the shots left on "auto", the linear probe alone, one seed
    page.get_by_role("tab", name="Compare methods (shots sweep)").click()
    page.locator("#cm-methods").wait_for()
    assert page.locator("#cm-shots textarea, #cm-shots input").first.input_value() == "auto"
    walk.clean("Compare methods, opened")
    ticks = page.locator("#cm-methods input[type=checkbox]")
    for i in range(ticks.count()):
        ticks.nth(i).uncheck()
    page.locator("#cm-methods").get_by_label("linear probe", exact=False).first.check()
    seeds = page.locator("#cm-seeds input[type=number]")
    seeds.fill("1")
    seeds.press("Enter")
    page.locator("#cm-eta").get_by_text("at most 3 runs", exact=False).wait_for()  # 1 method x up to 3 k x 1 seed
    page.get_by_role("button", name="Compare methods", exact=True).click()
    page.locator("#cm-status").get_by_text(re.compile(r"Done: \d+ runs")).wait_for(timeout=20 * MINUTES)
    ks = methods.auto_shots({"real": 20, "fake": 20})  # [2, 5, 10]
    named = f"k = {', '.join(map(str, ks))}"
    assert any(named in s for s in walk.statuses("cm-status")), f"{named!r} never in {walk.statuses('cm-status')}"
    assert f"Done: {len(ks)} runs" in page.locator("#cm-status").inner_text()
    table = page.locator("#cm-table table")
    table.wait_for()
    assert all(f"k = {k}" in table.inner_text() for k in ks)
    page.locator("#cm-curves .js-plotly-plot .scatterlayer .points path").first.wait_for()
    walk.clean("Compare methods, done")
    page.wait_for_timeout(1500)  # let plotly finish laying out
    shot(page, tmp_path, "newcomer-sweep")

    # 5. Compare: the session's sweep first; plain labels outside the collapsed "advanced" fold
    page.get_by_role("tab", name="Compare", exact=True).click()
    dataset = page.get_by_label("dataset", exact=True).first
    dataset.wait_for()
    page.wait_for_function("(el) => el.value.includes('session sweep')", arg=dataset.element_handle(),
                           timeout=MINUTES)
    assert "session sweep" in dataset.input_value()
    page.locator("#cmp-headline .js-plotly-plot").wait_for()
    page.locator("#cmp-shots .js-plotly-plot").wait_for()
    fold = page.get_by_text("More variants (advanced)", exact=True)
    assert fold.is_visible()
    assert not page.get_by_text("variants to compare", exact=True).is_visible()  # the fold is collapsed
    names = internal_names()
    for label in page.evaluate(CHECKBOX_LABELS):  # visible ones: the fold's are hidden
        plain = re.sub(r"\[[^\]]*\]", "", label)  # "FDFtNet, backbone at lr / 10 [fdftnet-unfrozen-lowlr]" is fine
        walk.found += [("Compare, a checkbox label outside the fold", n, label) for n in names
                       if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", plain)]
    walk.clean("Compare")
    page.wait_for_timeout(1500)
    shot(page, tmp_path, "newcomer-compare")

    # 6. across the path: no word newcomers tripped on, no internal name in a plain label
    unknown = [f for f in walk.found if not any(word == f[1] and where in f[2] for word, where in KNOWN)]
    assert not unknown, f"internal words or names in sight (step, word, where): {unknown}"
    if walk.found:
        pytest.xfail(f"issue #32 leftovers still in sight (step, word, where): {walk.found}")

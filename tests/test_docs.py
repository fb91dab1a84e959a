"""The front door stays short and true: README.md at most 120 lines linking every docs/ page, every relative
link and every checkpoints/ path it or a docs page names exists, the README names today's default, and the
speed tables in docs/speed.md are exactly what bench.speed renders from the committed JSON.
"""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `bench` without an install
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # markdown links and images


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    linked = {m.split("#")[0] for m in LINK.findall(text)}
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= linked  # no page only a search finds
    assert all(f"docs/screenshots/{n}.png" in linked for n in ("detect", "finetune", "compare"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_and_checkpoint_paths_exist(page):
    text = page.read_text()
    for target in LINK.findall(text):
        if not re.match(r"[a-z]+:", target) and not target.startswith("#"):  # http(s):, mailto: are not checked
            assert (page.parent / target.split("#")[0]).exists(), f"{page.name}: broken link {target}"
    for path in re.findall(r"(?<![\w/.])checkpoints/[^\s`'\")\],]+", text):  # no placeholder like <default>
        assert (ROOT / path).exists(), f"{page.name} names {path}, which does not exist"


def test_readme_names_the_shipped_default():
    names = json.loads((ROOT / "checkpoints" / "default.json").read_text())
    text = (ROOT / "README.md").read_text()
    assert f"checkpoints/{names['fdftnet']}" in text and f"checkpoints/{names['baseline']}" in text, (
        "checkpoints/default.json changed: update the README's sentence on the shipped default (and its scores)")


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_speed_tables_are_generated_from_the_json(device):
    speed = pytest.importorskip("bench.speed")
    res = json.loads((ROOT / "bench" / "results" / f"speed_{device}.json").read_text())
    begin, end = speed.docs_markers(res)
    text = speed.DOCS.read_text()
    block = text.split(begin, 1)[1].split(end, 1)[0]
    assert block.strip() == speed.markdown(res).strip(), (
        f"docs/speed.md is stale: python -m bench.speed --from-json bench/results/speed_{device}.json --docs")


def test_every_public_limit_is_in_the_settings_table():
    """docs/lab.md "Settings for a public deployment" lists each limit of lab/limits.py with its default."""
    from lab.limits import DEFAULTS
    text = (ROOT / "docs" / "lab.md").read_text().split("## Settings for a public deployment", 1)[1]
    rows = {line.split("|")[1].strip(" `"): line.split("|")[3].strip() for line in text.splitlines()
            if line.startswith("| `")}
    for name, (default, _) in DEFAULTS.items():
        assert name in rows, f"docs/lab.md's settings table lacks {name}"
        if default is not None:
            assert rows[name].startswith(f"{default:g}"), f"{name}: the table says {rows[name]!r}, the code {default}"

"""bench.selfblend_transfer: detectors scored on a split's real fakes and on self-blends of its reals."""
import json
import shutil

import pytest

from bench.selfblend_transfer import main


def test_each_model_is_scored_on_real_fakes_and_on_self_blends_of_the_reals(tiny_baseline_dir, synthetic_images,
                                                                               tmp_path, capsys):
    run = tmp_path / "run"  # a copy that says it trained with its own self-blend settings
    shutil.copytree(tiny_baseline_dir, run)
    (run / "training.json").write_text(json.dumps({"train_config": {"self_blend": {"hue_deg": 0.0, "shift": 0.0}}}))
    out = tmp_path / "transfer.json"
    assert main(["--data", str(synthetic_images), "--model", f"plain={tiny_baseline_dir}", "--model", f"own={run}",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert "plain: AUROC real fakes" in capsys.readouterr().out
    plain, own = res["models"]["plain"], res["models"]["own"]
    assert plain["real_fakes"]["n"] == 128 and plain["real_fakes"]["n_fake"] == 64
    assert plain["self_blends"]["n_real"] == plain["self_blends"]["n_fake"] == plain["real_fakes"]["n_real"]
    assert own["real_fakes"] == plain["real_fakes"]  # the same weights on the same images
    assert own["self_blend_config"]["hue_deg"] == 0.0 and plain["self_blend_config"]["hue_deg"] > 0
    assert 0 <= plain["self_blends"]["auroc"] <= 1


def test_a_model_without_a_name_is_a_usage_error(synthetic_images, tiny_baseline_dir):
    with pytest.raises(SystemExit) as e:
        main(["--data", str(synthetic_images), "--model", str(tiny_baseline_dir)])
    assert e.value.code == 2

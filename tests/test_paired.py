"""bench.paired: the paired bootstrap of B - A (ACC and AUROC) on the same images."""
import json

import numpy as np

from bench.paired import main, paired


def test_identical_models_differ_by_nothing():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 400), 0, 1)
    r = paired(y, p, 0.5, p.copy(), 0.5, samples=200)
    for m in ("acc", "auroc"):
        assert r[m]["diff"] == 0 and r[m]["ci95"] == [0, 0] and r[m]["p_not_better"] == 1.0


def test_a_clearly_better_model_has_an_interval_above_zero_and_a_slightly_better_one_does_not():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    noise = rng.normal(0, 1, 2000)
    pa = 1 / (1 + np.exp(-(2 * y - 1) * 0.5 - noise))        # weak
    pb = 1 / (1 + np.exp(-(2 * y - 1) * 1.5 - noise))        # strong, same noise: paired
    r = paired(y, pa, 0.5, pb, 0.5, samples=300)
    assert r["acc"]["diff"] > 0.1 and r["acc"]["ci95"][0] > 0 and r["acc"]["p_not_better"] == 0
    assert r["auroc"]["ci95"][0] > 0
    flip = np.where(pb != pa)[0][:1]  # B differs from A on one image only: no evidence either way
    pc = pa.copy()
    pc[flip] = y[flip]
    r = paired(y, pa, 0.5, pc, 0.5, samples=300)
    assert r["acc"]["ci95"][0] <= 0 <= r["acc"]["ci95"][1] and r["acc"]["p_not_better"] > 0.05


def test_cli_compares_checkpoints_on_a_split(tiny_baseline_dir, synthetic_images, tmp_path, capsys):
    out = tmp_path / "paired.json"
    assert main(["--data", str(synthetic_images), "--a", str(tiny_baseline_dir), "--b", str(tiny_baseline_dir),
                 "--samples", "50", "--save", str(out)]) == 0
    res = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == res
    r = res["b"][str(tiny_baseline_dir)]
    assert r["n"] == 128 and r["acc"]["diff"] == 0 and r["auroc"]["ci95"] == [0, 0]


def test_b_flip_scores_the_mean_of_an_image_and_its_mirror(tiny_baseline_dir, synthetic_images, tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    from fdftnet import load_model
    from fdftnet.data import load_image_folder
    from fdftnet.inference import predict_imageset, predict_tensor
    out = tmp_path / "flip.json"
    assert main(["--data", str(synthetic_images), "--a", str(tiny_baseline_dir), "--b", str(tiny_baseline_dir),
                 "--b-flip", "--samples", "20", "--save", str(out)]) == 0
    res = json.loads(out.read_text())
    model, data = load_model(tiny_baseline_dir), load_image_folder(synthetic_images, "test")
    y, p = data.labels.numpy(), predict_imageset(model, data)
    flipped = (p + predict_tensor(model, data.images.flip(3))) / 2
    assert not np.allclose(p, flipped)  # the mirror images are scored, not the same ones again
    expect = roc_auc_score(y, flipped) - roc_auc_score(y, p)
    assert res["b_flip"] is True and abs(res["b"][str(tiny_baseline_dir)]["auroc"]["diff"] - expect) < 1e-9

"""Native resolution end to end (issue #30): a model's crop_size decides how faces are cropped, decoded, trained,
scored and swept; FDFtNet's FTT reads a large crop at 64 px; balanced epochs and extra training sets.

Models are tiny (squeezenet), data synthetic (conftest) or skimage's astronaut pasted into a 1024-px photo.
"""
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image_folder
from fdftnet.data import AugmentConfig, Batches, ImageSet, augment_batch
from fdftnet.data.loader import balanced_indices, balanced_len
from fdftnet.models import BaselineDetector, FDFtNet, crop_size_of
from fdftnet.robustness import at_crop_size, sweep
from fdftnet.train import TrainConfig, load_data, pretrain


@pytest.fixture(scope="module")
def native_images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("native"), {"train": 24, "validation": 12, "test": 12}, size=96)


def test_a_native_baseline_trains_and_is_scored_at_its_crop_size(native_images, tmp_path, capsys):
    from fdftnet.checkpoint import load_model
    from fdftnet.cli import main
    cfg = TrainConfig(stage="pretrain", data=str(native_images), backbone="squeezenet", input_size=96, crop_size=96,
                      out=str(tmp_path / "m"), epochs=1, batch_size=16, device="cpu", precise_bn=0)
    events = list(pretrain(cfg))
    assert events[-1]["type"] == "done"
    model = load_model(tmp_path / "m")
    assert crop_size_of(model) == 96 and model.config["crop_size"] == 96
    train, val = load_data(cfg, size=crop_size_of(model))
    assert train.images.shape[1:] == (3, 96, 96) and val.images.shape[1:] == (3, 96, 96)
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(native_images), "--split", "test"]) == 0
    assert "test: n=24" in capsys.readouterr().out


def test_old_checkpoints_keep_64_px_crops():
    """A config without crop_size (every checkpoint before it) is fed 64-px crops, as it was trained."""
    assert crop_size_of(BaselineDetector(backbone="squeezenet", input_size=128)) == 64


def test_fdftnet_on_a_native_baseline_reads_its_ftt_at_64_px(seed):
    base = BaselineDetector(backbone="squeezenet", input_size=128, crop_size=128)
    net = FDFtNet.from_baseline(base, mb_blocks=1, ftt_stages=2).eval()
    assert (net.crop_size, net.ftt_size, net.config["ftt_size"]) == (128, 64, 64)
    x = torch.rand(2, 3, 128, 128)
    assert net(x).shape == (2, 2)
    assert net.attention_heatmap(x).shape == (2, 32, 32)  # the first FTT stage of a 64-px input
    own = FDFtNet.from_baseline(base, mb_blocks=1, ftt_stages=2, ftt_size=128).eval()
    assert own.attention_heatmap(x).shape == (2, 64, 64)
    paper = FDFtNet.from_baseline(BaselineDetector(backbone="squeezenet"), mb_blocks=1)
    assert (paper.crop_size, paper.ftt_size) == (64, None)


def test_predict_cuts_the_face_straight_to_the_models_crop_size(tmp_path, monkeypatch):
    """A 1024-px photo, a 128-px model: the crop scored is the face cut from the photo at 128 px, not a 64-px crop
    brought back up to 128 (the detour that lost a generated face's traces)."""
    pytest.importorskip("facenet_pytorch")
    skdata = pytest.importorskip("skimage.data")
    import fdftnet.trust
    from fdftnet import faces
    from fdftnet.predict import predict_file

    photo = np.full((1024, 1024, 3), 120, np.uint8)
    photo[:1024, :1024] = np.asarray(Image.fromarray(skdata.astronaut()).resize((1024, 1024), Image.LANCZOS))
    Image.fromarray(photo).save(tmp_path / "big.png")
    model = BaselineDetector(backbone="squeezenet", input_size=128, crop_size=128).eval()
    seen = []
    real = fdftnet.trust.assess
    monkeypatch.setattr(fdftnet.trust, "assess", lambda m, crops: seen.append(crops) or real(m, crops))
    torch.set_num_threads(1)
    record = predict_file(model, str(tmp_path / "big.png"))
    assert len(record["faces"]) == 1 and len(seen) == 1
    crop = np.asarray(seen[0][0])
    face = faces.find_faces(photo, size=128).faces[0]
    assert crop.shape == (128, 128, 3)
    assert np.array_equal(crop, faces.crop_face(photo, face.box, face.landmarks, 128))
    detour = np.asarray(Image.fromarray(faces.crop_face(photo, face.box, face.landmarks, 64)).resize(
        (128, 128), Image.BICUBIC))
    # the direct crop keeps detail the detour has lost: more energy in its finest differences
    fine = lambda a: float(np.abs(np.diff(a.astype(np.float32), axis=1)).mean())  # noqa: E731
    assert fine(crop) > 1.15 * fine(detour)  # 7.0 against 5.7 here (the astronaut is 512 px, upscaled)


def test_balanced_epochs_subsample_each_sources_larger_class_afresh():
    labels = torch.tensor([0] * 10 + [1] * 40 + [0] * 5 + [1] * 3)
    groups = torch.tensor([0] * 50 + [1] * 8)
    assert balanced_len(labels, groups) == 20 + 6
    a = balanced_indices(labels, groups, torch.Generator().manual_seed(0))
    b = balanced_indices(labels, groups, torch.Generator().manual_seed(1))
    assert len(a) == len(b) == 26
    for idx in (a, b):
        assert set(range(10)) <= set(idx.tolist()) and set(range(55, 58)) <= set(idx.tolist())  # minority: all
        assert int((labels[idx] == 1).sum()) == 13 and int((groups[idx] == 1).sum()) == 6
    assert set(a.tolist()) != set(b.tolist())  # another draw of the 40 fakes
    data = ImageSet(torch.zeros(58, 3, 8, 8, dtype=torch.uint8), labels, [str(i) for i in range(58)],
                    groups=groups)
    batches = Batches(data, 8, balance=True)
    assert len(batches) == 4 and sum(len(y) for _, y in batches) == 26


def test_extra_training_sets_join_train_and_validation_with_their_own_group(synthetic_images, tmp_path):
    extra = make_image_folder(tmp_path / "gan", {"finetune": 10}, seed=3)
    cfg = TrainConfig(stage="pretrain", data=str(synthetic_images), backbone="squeezenet", limit=8,
                      extra_train=[f"{extra}:finetune"], extra_holdout=3, balance=True)
    train, val = load_data(cfg)
    # --limit 8 caps every split read, the extra one too: 8 + 8 of it, 3 + 3 held out
    assert len(train) == 16 + 10 and len(val) == 16 + 6
    assert train.group_ids().tolist() == [0] * 16 + [1] * 10 and val.group_ids().tolist() == [0] * 16 + [1] * 6
    held = {p for p in val.paths if str(extra) in p}
    assert len(held) == 6 and not held & set(train.paths)
    with pytest.raises(ValueError, match="ROOT:SPLIT"):
        TrainConfig(stage="pretrain", data="x", extra_train=["no-split-given"])


def test_the_degrade_policy_resizes_down_and_back_reproducibly():
    x = torch.rand(4, 3, 64, 64)
    cfg = AugmentConfig(shift_px=0, rotation_deg=0, zoom=0, hflip=False, resize_p=1.0, resize_scale=(0.4, 0.4))
    a = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    fine = lambda t: float(t.diff(dim=-1).abs().mean())  # noqa: E731
    assert fine(a) < 0.6 * fine(x)  # detail lost in the 0.4x round trip


def test_robustness_scores_each_model_at_its_own_crop_size(native_images):
    from fdftnet.data import load_image_folder
    data = load_image_folder(native_images, "test", limit=6, size=96)
    assert at_crop_size(data.images, 64).shape == (12, 3, 64, 64)
    assert at_crop_size(data.images, 96) is data.images
    models = {"old": BaselineDetector(backbone="squeezenet").eval(),
              "native": BaselineDetector(backbone="squeezenet", input_size=96, crop_size=96).eval()}
    res = sweep(models, data, kinds=["jpeg"], levels={"jpeg": [50]})
    assert set(res["kinds"]["jpeg"]["auroc"]) == {"old", "native"}
    assert all(len(v) == 2 for v in res["kinds"]["jpeg"]["auroc"].values())


def test_lab_uploads_are_cropped_at_the_starting_models_size(tmp_path):
    from lab.uploads import prepare_upload
    src = make_image_folder(tmp_path / "up", {"x": 6}, size=100)
    faces, counts, _ = prepare_upload(None, sorted(map(str, (src / "x" / "real").iterdir())),
                                      sorted(map(str, (src / "x" / "fake").iterdir())), tmp_path / "run", size=80)
    assert counts == {"real": 6, "fake": 6}
    assert {Image.open(p).size for p in faces.rglob("*.png")} == {(80, 80)}


def test_bench_native_ships_a_run_and_its_baseline_as_evaluate_scores_them(tmp_path, monkeypatch, capsys):
    """bench.native --export: both folders with weights, eval.json equal to `fdftnet evaluate` on the built test
    split, families.json from the run's scores, a card; default.json follows; a failed export leaves checkpoints."""
    import json

    import bench.native as native
    from fdftnet.cli import main
    from fdftnet.train import finetune
    data = tmp_path / "data"
    native_images = make_image_folder(data / "dfdc-full-128", {"train": 16, "finetune": 12, "validation": 8, "test": 12},
                                      size=96)
    runs, results, ckpts = tmp_path / "runs", tmp_path / "results", tmp_path / "checkpoints"
    results.mkdir()
    ckpts.mkdir()
    monkeypatch.setattr(native, "OUT", results)
    monkeypatch.setattr(native, "CHECKPOINTS", ckpts)
    base = TrainConfig(stage="pretrain", data=str(native_images), backbone="squeezenet", input_size=96, crop_size=96,
                       out=str(runs / "mixed"), epochs=1, batch_size=16, device="cpu", precise_bn=0)
    assert list(pretrain(base))[-1]["type"] == "done"
    ft = TrainConfig(stage="finetune", data=str(native_images), backbone_from=str(runs / "mixed"), mb_blocks=1,
                     out=str(runs / "mixed-fdftnet"), epochs=1, batch_size=16, device="cpu", precise_bn=0)
    assert list(finetune(ft))[-1]["type"] == "done"
    for run in ("mixed", "mixed-fdftnet"):
        (results / f"{run}.json").write_text(json.dumps({
            "dfdc test": {"data": "dfdc-full-128/test", "n": 24, "acc": 0.5, "auroc": 0.6},
            "gan test (faces)": {"data": "gan-faces-128/test", "n": 10, "acc": 0.7, "auroc": 0.8}}))
    (ckpts / "default.json").write_text('{"baseline": "old-b", "fdftnet": "old-f"}')

    with pytest.raises(FileNotFoundError):  # no such run: nothing is half-written, the default stays
        native.main(["--runs", str(tmp_path / "nowhere"), "--data", str(data), "--export", "mixed-fdftnet"])
    assert sorted(p.name for p in ckpts.iterdir()) == ["default.json"]

    native.main(["--runs", str(runs), "--data", str(data), "--export", "mixed-fdftnet", "--make-default"])
    names = json.loads((ckpts / "default.json").read_text())
    assert names == {"baseline": "baseline-efficientnet_lite0-native128", "fdftnet": "fdftnet-efficientnet_lite0-native128"}
    for kind in ("baseline", "fdftnet"):
        folder = ckpts / names[kind]
        shipped = json.loads((folder / "eval.json").read_text())
        capsys.readouterr()
        assert main(["evaluate", "--model", str(folder), "--data", str(data / "dfdc-full-128"), "--split", "test",
                     "--json", str(tmp_path / f"{kind}.json")]) == 0
        again = json.loads((tmp_path / f"{kind}.json").read_text())
        assert (shipped["acc"], shipped["auroc"], shipped["n"]) == (again["acc"], again["auroc"], again["n"])
        fam = {r["family"]: r for r in json.loads((folder / "families.json").read_text())["families"]}
        assert fam["GAN faces"]["trained_on"] and fam["GAN faces"]["tested_on"][0]["auroc"] == 0.8
        assert "96x96" in (folder / "README.md").read_text()
    info = json.loads((ckpts / names["fdftnet"] / "training.json").read_text())["info"]
    assert info["base_model"] == f"checkpoints/{names['baseline']}"

"""fdftnet.sweep: every method on the same k shots and the same held-out images, resumable, and its CLI."""
import json

import pytest
import torch

from conftest import make_image_folder
from fdftnet.cli import main
from fdftnet.data import DataError, load_image_folder
from fdftnet.models import FDFtNet
from fdftnet.sweep import SweepConfig, load_sweep, run_sweep, shots_of, split_for_seed, summarize

FAST = dict(steps=4, checks=2, batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def upload(tmp_path_factory):
    """An upload as the lab gets it: ROOT/{real,fake} with 14 images a class, no splits."""
    root = tmp_path_factory.mktemp("upload")
    make_image_folder(root, {"x": 14}, seed=3)
    (root / "x").rename(root / "set")
    return root / "set"


@pytest.fixture(scope="module")
def tiny_fdftnet(tmp_path_factory, tiny_baseline_dir):
    from fdftnet.checkpoint import load_model
    out = tmp_path_factory.mktemp("ft") / "fdftnet"
    torch.manual_seed(0)
    FDFtNet.from_baseline(load_model(tiny_baseline_dir), mb_blocks=1).save_pretrained(out)
    return out


def test_split_is_nested_and_held_out_is_shared(upload):
    pool = load_image_folder(upload, ".")
    seed_pool, test = split_for_seed(pool, None, k_max=4, seed=1)
    assert test.counts() == {"real": 10, "fake": 10}  # 14 - the largest k
    assert not set(test.paths) & set(seed_pool.paths)
    k2, k4 = shots_of(seed_pool, 2), shots_of(seed_pool, 4)
    assert k2.counts() == {"real": 2, "fake": 2} and set(k2.paths) < set(k4.paths)
    again, test2 = split_for_seed(pool, None, k_max=4, seed=1)
    assert again.paths == seed_pool.paths and test2.paths == test.paths  # the seed decides, nothing else
    assert split_for_seed(pool, None, k_max=4, seed=2)[0].paths != seed_pool.paths


def test_sweep_runs_every_method_and_resumes(upload, tiny_baseline_dir, tiny_fdftnet, tmp_path):
    out = tmp_path / "sweep.json"
    cfg = SweepConfig(data=str(upload), init_from=str(tiny_baseline_dir), fdftnet_from=str(tiny_fdftnet),
                      shots=[2, 4], seeds=2, methods=["fdftnet", "fdftnet-adapt", "baseline-head", "baseline-full",
                                                      "linear-probe"], out=str(out), **FAST)
    events = list(run_sweep(cfg))
    start, runs, done = events[0], [e for e in events if e["type"] == "run"], events[-1]
    assert start["type"] == "start" and start["runs"] == 20 and start["done"] == 0
    assert start["n_test"] == {"real": 10, "fake": 10}
    assert len(runs) == 20 and {r["n_test"] for r in runs} == {20}
    assert {(r["k"], r["n_train"]) for r in runs} == {(2, 4), (4, 8)}
    assert any(e["type"] == "progress" for e in events)
    for r in runs:
        assert 0 <= r["acc"] <= 1 and 0 <= r["auroc"] <= 1 and 0 < r["threshold"] < 1 and r["model"] is None
    saved = load_sweep(out)
    assert len(saved["runs"]) == 20 and saved["config"]["shots"] == [2, 4]
    assert {(s["method"], s["k"]): s["n"] for s in saved["summary"]} == {(r["method"], r["k"]): 2 for r in runs}
    assert done["type"] == "done" and done["best"]["method"] in cfg.methods
    # the same settings again: nothing re-runs; other settings: refused, the file is kept as it was
    again = list(run_sweep(cfg))
    assert again[0]["done"] == 20 and not [e for e in again if e["type"] == "run"]
    with pytest.raises(ValueError, match="other settings"):
        list(run_sweep(SweepConfig(**{**cfg.__dict__, "steps": 5})))
    assert len(load_sweep(out)["runs"]) == 20


def test_a_cancelled_sweep_keeps_finished_runs(upload, tiny_baseline_dir, tmp_path):
    out = tmp_path / "sweep.json"
    cfg = SweepConfig(data=str(upload), init_from=str(tiny_baseline_dir), shots=[2], seeds=2,
                      methods=["baseline-head", "linear-probe"], out=str(out), **FAST)
    gen = run_sweep(cfg)
    for ev in gen:
        if ev["type"] == "run":
            break
    gen.close()  # the lab's Cancel
    assert len(load_sweep(out)["runs"]) == 1
    rest = [e for e in run_sweep(cfg) if e["type"] == "run"]
    assert len(rest) == 3


def test_linear_probe_is_a_loadable_baseline(upload, tiny_baseline_dir, tmp_path):
    cfg = SweepConfig(data=str(upload), init_from=str(tiny_baseline_dir), shots=[4], seeds=1,
                      methods=["linear-probe"], work_dir=str(tmp_path / "w"), keep_models=True, **FAST)
    run = next(e for e in run_sweep(cfg) if e["type"] == "run")
    from fdftnet.checkpoint import load_model
    from fdftnet.inference import predict_imageset
    model = load_model(run["model"], expect="baseline")
    pool, _ = split_for_seed(load_image_folder(upload, "."), None, 4, 0)
    train = shots_of(pool, 4)
    p = predict_imageset(model, train)
    # the regression separates its 8 training images of this easy set, and the threshold calibrated on them does too
    assert ((p >= float(model.threshold)) == train.labels.bool().numpy()).all()


def test_summarize_means_and_sds():
    runs = [dict(method="fdftnet", k=5, seed=s, acc=a, auroc=a, ap=a) for s, a in enumerate([0.6, 0.8])]
    (row,) = summarize(runs)
    assert row["n"] == 2 and row["acc_mean"] == pytest.approx(0.7) and row["acc_sd"] == pytest.approx(0.1414, abs=1e-4)


def test_bad_settings_are_one_line(upload, tiny_baseline_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        SweepConfig(data=str(upload), methods=["fdftnet", "magic"])
    with pytest.raises(DataError, match="largest k"):  # 14 a class cannot give k = 13 and 2 held out
        list(run_sweep(SweepConfig(data=str(upload), init_from=str(tiny_baseline_dir), shots=[13],
                                   methods=["linear-probe"], seeds=1, **FAST)))
    with pytest.raises(ValueError, match="fdftnet_from"):
        list(run_sweep(SweepConfig(data=str(upload), init_from=str(tiny_baseline_dir), methods=["fdftnet-adapt"],
                                   shots=[2], seeds=1, **FAST)))


def test_cli_streams_json_lines_and_a_table(upload, tiny_baseline_dir, tmp_path, capsys):
    out = tmp_path / "s.json"
    rc = main(["sweep", "--data", str(upload), "--init-from", str(tiny_baseline_dir), "--shots", "2,3",
               "--methods", "baseline-head,linear-probe", "--seeds", "1", "--steps", "2", "--batch-size", "4",
               "--json", str(out), "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 0
    lines = [json.loads(line) for line in cap.out.splitlines()]
    assert [(r["method"], r["k"]) for r in lines] == [("baseline-head", 2), ("linear-probe", 2),
                                                      ("baseline-head", 3), ("linear-probe", 3)]
    assert "k=2" in cap.err and "linear-probe" in cap.err and out.exists()
    assert main(["sweep", "--data", str(tmp_path / "nothing"), "--init-from", str(tiny_baseline_dir)]) == 2
    assert "no dataset folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "--data", str(upload), "--shots", "5,x"])


def test_report_renders_a_sweep_from_its_json():
    from bench.report import sweep_tables
    runs = [dict(method=m, k=k, seed=s, acc=a, auroc=a, ap=a) for m, base in (("fdftnet", 0.8), ("baseline-full", 0.7))
            for k in (5, 10) for s, a in enumerate([base, base + 0.1])]
    lines = sweep_tables({"runs": runs, "summary": summarize(runs)})
    assert "| 5 | 85.00 ± 7.07 | 75.00 ± 7.07 | 2 |" in lines
    assert "| 10 | fdftnet | +10.00 | +10.00 | 2 of 2 |" in lines

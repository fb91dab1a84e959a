"""bench.reproduce end to end on tiny generated data: every job runs, resumes as done, the report matches the JSON."""
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import make_image_folder

from bench.reproduce import main
from fdftnet import load_model
from fdftnet.checkpoint import save_checkpoint
from fdftnet.inference import evaluate, predict_imageset
from fdftnet.metrics import THRESHOLD_RULE, best_threshold
from fdftnet.train import TrainConfig, load_data, load_split


def _args(root, tmp_path, *extra):
    return ["--data", str(root), "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
            "--backbones", "squeezenet", "--ablation-backbone", "squeezenet", "--fewshot-backbone", "squeezenet",
            "--ablation-shots", "2,4", "--fewshot-k", "4", "--seeds", "0", "--epochs", "1", "--patience", "1", "--holdout", "4",
            "--batch-size", "8", "--fewshot-batch-size", "8", "--mb-blocks", "1", "--device", "cpu", "--recipe-seeds", "0,1",
            "--baseline-seeds", "0,1", "--long-epochs", "1", "--long-patience", "1",
            "--pretrained-backbones", "efficientnet_lite0", "--pretrained-size", "64", "--pretrained-epochs", "1",
            "--pretrained-ft-epochs", "1", "--pretrained-size-ablation", "32", "--peer-epochs", "1", "--pretrained-seeds", "0,1",
            "--size-backbones", "efficientnet_lite0", "--cut-points", "5", "--small-data-sizes", "32", *extra]


def test_reproduce_runs_every_job_and_reports_what_the_json_says(tmp_path, capsys, monkeypatch):
    root = tmp_path / "data"
    make_image_folder(root / "dfdc64", {"train": 10, "finetune": 8, "validation": 6, "test": 6}, seed=1)
    make_image_folder(root / "gan64", {"finetune": 10, "test": 6}, seed=2)
    results = tmp_path / "results"

    assert main(_args(root, tmp_path, "--plan")) == 0
    planned = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    # 2 baseline seeds + 4 FDFtNet + the recipe's second seed; long: baseline + recipe; 4 ablations + 2 shot counts;
    # pretrained: baseline, 2 FDFtNets, the continued baseline, linear probe, one input size, the ResNet-18 peer,
    # the unfrozen FDFtNet and the continued baseline again at seed 1, the continued baseline with strong
    # augmentation, the baseline on finetune only, the 3 recipe trials on the continued baseline at seed 1 (the
    # FDFtNet warm-up needs 2 epochs), FDFtNet at seed 1 cut at block stage 5, the small-data run at 32 px;
    # 6 few-shot methods
    assert len(planned) == 7 + 2 + 6 + 16 + 6
    assert main(_args(root, tmp_path, "--plan", "--only", "pretrained", "--match", "warmup", "--pretrained-ft-epochs", "2")) == 0
    assert capsys.readouterr().out.split() == ["todo", "dfdc64/efficientnet_lite0/pretrained/fdftnet-unfrozen-lowlr-warmup-s1"]
    assert main(_args(root, tmp_path, "--plan", "--only", "selfblend", "--selfblend-backbones", "efficientnet_lite0")) == 0
    sb = "dfdc64/efficientnet_lite0/selfblend/"  # opt-in, so not run here
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == [
        sb + "reals-only", sb + "reals-only-all", sb + "reals-only-all-s1", sb + "reals-only-all-aug-paper",
        sb + "reals-only-all-aug-strong", sb + "mixed", sb + "continued-mixed", sb + "continued-mixed-s1"]
    assert main(_args(root, tmp_path)) == 0
    jobs = {k: json.loads((results / "jobs" / f"{k}.json").read_text()) for k in planned}
    for key, rec in jobs.items():
        assert rec["key"] == key and rec["test"]["n"] == 12 and 0.0 <= rec["test"]["auroc"] <= 1.0
        assert rec["epochs_run"] == 1 and rec["train_config"]["epochs"] == 1 and rec["device"].startswith("cpu")
        assert rec["train_seconds"] == sum(h["seconds"] for h in rec["history"]) > 0  # one epoch: history is all
        assert rec["threshold_rule"] == THRESHOLD_RULE
    assert jobs["gan64/squeezenet/k4/s0/fdftnet"]["train_config"]["batch_size"] == 8
    assert jobs["gan64/squeezenet/k4/s0/fdftnet-unfrozen"]["train_config"]["freeze_backbone"] is False
    adapt = jobs["gan64/squeezenet/k4/s0/fdftnet-unfrozen-adapt"]  # continues the dfdc64 FDFtNet, not a new one
    assert adapt["base"] == "dfdc64/squeezenet/fdftnet-unfrozen" and adapt["train_config"]["backbone_from"] is None
    assert adapt["train_config"]["init_from"].endswith("dfdc64/squeezenet/fdftnet-unfrozen")
    assert adapt["train_config"]["freeze_backbone"] is False and adapt["train_config"]["mb_blocks"] == 1
    low = jobs["dfdc64/squeezenet/fdftnet-unfrozen-lowlr"]["train_config"]
    assert low["freeze_backbone"] is False and low["backbone_lr"] == 1e-4 and low["lr"] == 1e-3
    assert jobs["dfdc64/squeezenet/ablation-no-ftt"]["train_config"]["use_ftt"] is False
    pre = "dfdc64/efficientnet_lite0/pretrained/"
    assert jobs[pre + "baseline"]["train_config"]["pretrained"] is True
    assert jobs[pre + "baseline"]["train_config"]["optimizer"] == "adamw"
    assert jobs[pre + "fdftnet-unfrozen-lowlr"]["base"] == pre + "baseline"
    assert jobs[pre + "linear-probe"]["train_config"]["head_only"] is True
    assert jobs[pre + "baseline-32px"]["train_config"]["input_size"] == 32
    cont = jobs[pre + "baseline-continued"]["train_config"]
    assert cont["init_from"].endswith(pre + "baseline") and cont["train_split"] == "finetune" and cont["lr"] == 1e-4
    assert jobs[pre + "baseline-continued-strong"]["train_config"] == {**cont, "augment_policy": "strong",
                                                                        "out": cont["out"] + "-strong"}
    cont1 = jobs[pre + "baseline-continued-s1"]["train_config"]
    for name, over in (("ema", dict(ema=0.995)), ("llrd", dict(layer_decay=0.85)), ("mixcut", dict(mixup=0.2, cutmix=1.0))):
        trial = jobs[pre + f"baseline-continued-{name}-s1"]  # one change to the run it pairs with
        assert trial["train_config"] == {**cont1, **over, "out": cont1["out"].replace("-s1", f"-{name}-s1")}
    small = jobs[pre + "small-data"]["train_config"]  # the baseline's recipe from ImageNet, on the finetune split
    assert small["train_split"] == "finetune" and small["pretrained"] is True and small["init_from"] is None
    assert jobs[pre + "small-data-32px"]["train_config"] == {**small, "input_size": 32, "out": small["out"] + "-32px"}
    ft1 = jobs[pre + "fdftnet-unfrozen-lowlr-s1"]["train_config"]  # one change: where MBblockV3 reads the backbone
    assert jobs[pre + "fdftnet-unfrozen-lowlr-cut5-s1"]["train_config"] == \
        {**ft1, "cut_blocks": 5, "out": ft1["out"].replace("-s1", "-cut5-s1")}
    for key in ("baseline-continued-s1", "fdftnet-unfrozen-lowlr-s1"):  # seed 1, on seed 0's baseline
        rec = jobs[pre + key]
        assert rec["seed"] == rec["train_config"]["seed"] == 1 and rec["base"] == pre + "baseline"
    assert {k: v for k, v in jobs[pre + "baseline-continued-s1"]["train_config"].items() if k not in ("seed", "out")} \
        == {k: v for k, v in cont.items() if k not in ("seed", "out")}
    for seed, key in ((0, "fdftnet-unfrozen-lowlr-no-cutout"), (1, "fdftnet-unfrozen-lowlr-no-cutout-s1")):
        both = jobs[f"dfdc64/squeezenet/{key}"]
        assert both["seed"] == both["train_config"]["seed"] == seed and both["group"] == "main"
        assert both["train_config"]["cutout"] is False and both["train_config"]["backbone_lr"] == 1e-4
        assert both["train_config"]["freeze_backbone"] is False
    assert jobs["dfdc64/squeezenet/shots-2"]["shots"] == 2
    b1 = jobs["dfdc64/squeezenet/baseline-s1"]
    assert b1["seed"] == b1["train_config"]["seed"] == 1 and b1["variant"] == "baseline" and b1["base"] is None
    assert jobs["dfdc64/squeezenet/fdftnet-frozen"]["base"] == "dfdc64/squeezenet/baseline"  # seed 0s
    long = jobs["dfdc64/squeezenet/long/fdftnet-unfrozen-lowlr-no-cutout"]  # built on the long baseline, same recipe
    assert long["group"] == "long" and long["base"] == "dfdc64/squeezenet/long/baseline"
    assert long["train_config"]["backbone_from"].endswith("dfdc64/squeezenet/long/baseline")
    assert {k: long["train_config"][k] for k in ("freeze_backbone", "backbone_lr", "cutout")} == \
        {k: jobs["dfdc64/squeezenet/fdftnet-unfrozen-lowlr-no-cutout"]["train_config"][k]
         for k in ("freeze_backbone", "backbone_lr", "cutout")}

    report = (results / "REPORT.md").read_text()
    base, frozen = jobs["dfdc64/squeezenet/baseline"]["test"], jobs["dfdc64/squeezenet/fdftnet-frozen"]["test"]
    row = next(line for line in report.splitlines() if line.startswith("| squeezenet |"))
    assert f"{100 * base['acc']:.2f} / {100 * base['auroc']:.2f}" in row
    assert f"{100 * frozen['acc']:.2f} / {100 * frozen['auroc']:.2f}" in row
    lowlr = jobs["dfdc64/squeezenet/fdftnet-unfrozen-lowlr"]["test"]
    assert f"| {100 * lowlr['acc']:.2f} / {100 * lowlr['auroc']:.2f} | " in row
    assert "± " in row and row.endswith(" (2) | 1 / 1 / 1 / 1 / 1,1 |")  # the recipe: mean ± sd of two seeds
    assert len([line for line in report.splitlines() if line.startswith("| squeezenet | ")]) == 1 + 2 + 1 + 2  # seeds, budgets
    assert "FDFtNet unfrozen, backbone lr 0.0001" in report
    b0 = jobs["dfdc64/squeezenet/baseline"]["test"]
    spread = [line for line in report.splitlines() if line.startswith("| squeezenet | ")][3]  # the baseline seeds table
    assert spread.startswith(f"| squeezenet | {100 * b0['acc']:.2f} / {100 * b0['auroc']:.2f} | "
                             f"{100 * b1['test']['acc']:.2f} / {100 * b1['test']['auroc']:.2f} | ")
    recipe = [jobs[f"dfdc64/squeezenet/fdftnet-unfrozen-lowlr-no-cutout{s}"]["test"] for s in ("", "-s1")]
    above = all(min(t[m] for t in recipe) > max(b0[m], b1["test"][m]) for m in ("acc", "auroc"))
    assert spread.endswith(" | yes |" if above else " | no |") and spread.count("±") == 4
    lb = jobs["dfdc64/squeezenet/long/baseline"]["test"]
    assert len([line for line in report.splitlines() if line.startswith("| squeezenet | 1, 1 | ")]) == 2  # the budgets
    assert f"| squeezenet | 1, 1 | {100 * lb['acc']:.2f} / {100 * lb['auroc']:.2f} | {100 * long['test']['acc']:.2f}" \
        in report
    fs = next(line for line in report.splitlines() if line.startswith("| 4 |"))
    assert f"| {100 * jobs['gan64/squeezenet/k4/s0/full']['test']['acc']:.2f} |" in fs and "±" not in fs  # one seed
    gathered = json.loads((results / "reproduce.json").read_text())["runs"]
    assert sorted(r["key"] for r in gathered) == sorted(planned)
    assert all(r["metrics"] == r["test"] for r in gathered)  # what the lab's Compare tab reads

    # resumable: a second run trains nothing and every job is listed as done
    stamps = {k: (results / "jobs" / f"{k}.json").stat().st_mtime_ns for k in planned}
    capsys.readouterr()
    assert main(_args(root, tmp_path)) == 0
    assert not re.search(r"^\[\d+/\d+\]", capsys.readouterr().out, re.M)
    assert stamps == {k: (results / "jobs" / f"{k}.json").stat().st_mtime_ns for k in planned}
    main(_args(root, tmp_path, "--plan"))
    assert all(line.startswith("done") for line in capsys.readouterr().out.splitlines())

    # bench.fewshot_robustness: the k = 4 models on corrupted test images, clean scores as the jobs recorded them
    from bench.fewshot_robustness import LEVELS
    from bench.fewshot_robustness import main as robustness_main
    rob_args = ["--data", str(root), "--runs", str(tmp_path / "runs"), "--results", str(results), "--k", "4"]
    assert robustness_main([*rob_args, "--kinds", "jpeg,noise"]) == 0
    rob = json.loads((results / "fewshot_robustness_k4.json").read_text())
    fewshot = {k: r for k, r in jobs.items() if r["group"] == "fewshot"}
    assert sorted(rob["models"]) == sorted(fewshot) and rob["n"] == 12 and list(rob["per_model"]) == ["jpeg", "noise"]
    for key, rec in fewshot.items():
        for kind in ("jpeg", "noise"):
            r = rob["per_model"][kind]
            assert r["levels"] == [None, *LEVELS[kind]] and len(r["auroc"][key]) == len(r["levels"])
            assert r["auroc"][key][0] == pytest.approx(rec["test"]["auroc"])
            assert r["acc"][key][0] == pytest.approx(rec["test"]["acc"])
    assert main(_args(root, tmp_path, "--report-only")) == 0
    report = (results / "REPORT.md").read_text()
    head = report.index("### The k = 4 few-shot models under corruption")
    rows = [line for line in report[head:].splitlines() if line.startswith(("| clean |", "| noise 20 |"))]
    full = "gan64/squeezenet/k4/s0/full"
    assert len(rows) == 4 and f"| {100 * rob['per_model']['noise']['auroc'][full][-1]:.2f} |" in rows[1]
    assert "The same trained models as above (k = 4, every seed)" in report and "| clean, table above |" not in report
    with pytest.raises(SystemExit, match="no finished few-shot job with k = 7"):
        robustness_main([*rob_args, "--k", "7"])
    # a re-run of the k = 4 jobs elsewhere (another hold-out, so other models): swept, then shown beside the first run
    shutil.copytree(tmp_path / "runs" / "dfdc64", tmp_path / "runs2" / "dfdc64")
    rerun = ["--runs", str(tmp_path / "runs2"), "--results", str(tmp_path / "results2")]
    assert main(_args(root, tmp_path, *rerun, "--only", "fewshot", "--holdout", "3", "--no-report")) == 0
    assert robustness_main(["--data", str(root), "--k", "4", "--kinds", "jpeg", "--results", str(results),
                            "--runs", rerun[1], "--records", rerun[3]]) == 0
    rob = json.loads((results / "fewshot_robustness_k4.json").read_text())
    second = json.loads((tmp_path / "results2" / "jobs" / f"{full}.json").read_text())["test"]
    assert rob["records"] == str(tmp_path / "results2" / "jobs")
    assert rob["models"][full]["clean_test"]["acc"] == second["acc"]
    assert main(_args(root, tmp_path, "--report-only")) == 0
    report = (results / "REPORT.md").read_text()
    assert "A re-run of the k = 4 jobs above" in report and "The same trained models" not in report
    rows = [line for line in report[report.index("### The k = 4"):].splitlines() if line.startswith("| clean")]
    assert [r.split(" |")[0] for r in rows] == ["| clean, table above", "| clean"] * 2  # AUROC, then ACC
    assert f"| {100 * fewshot[full]['test']['acc']:.2f} |" in rows[2] and f"| {100 * second['acc']:.2f} |" in rows[3]

    # --export-default: the FDFtNet job and its baseline, with test metrics and a card, named in default.json
    monkeypatch.chdir(tmp_path)
    assert main(_args(root, tmp_path, "--export-default", "dfdc64/squeezenet/fdftnet-frozen")) == 0
    names = json.loads((tmp_path / "checkpoints" / "default.json").read_text())
    assert names == {"baseline": "baseline-squeezenet-dfdc64", "fdftnet": "fdftnet-squeezenet-dfdc64"}
    ev = json.loads((tmp_path / "checkpoints" / names["fdftnet"] / "eval.json").read_text())
    assert ev["acc"] == frozen["acc"] and ev["job"] == "dfdc64/squeezenet/fdftnet-frozen"
    assert (tmp_path / "checkpoints" / names["baseline"] / "model.safetensors").exists()
    for name in names.values():  # the card's usage names the exported folder, not the staging folder it was written in
        card = (tmp_path / "checkpoints" / name / "README.md").read_text()
        assert f'from_pretrained("{Path("checkpoints") / name}")' in card and ".export-" not in card

    # a failed export (the run's weights are gone) says so in one line and leaves the exported folders as they were
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()}
    (tmp_path / "runs" / "dfdc64/squeezenet/fdftnet-frozen" / "model.safetensors").unlink()
    with pytest.raises(SystemExit, match="model.safetensors is missing"):
        main(_args(root, tmp_path, "--export-default", "dfdc64/squeezenet/fdftnet-frozen"))
    with pytest.raises(SystemExit, match="no finished job"):
        main(_args(root, tmp_path, "--export-default", "dfdc64/squeezenet/nope"))
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()}
    assert after == before

    # an export whose second folder cannot be moved in puts the first one back: the old pair stays, not a mix
    import bench.reproduce as rp
    real_replace = rp.os.replace

    def replace(src, dst):  # the new FDFtNet folder (staging/<name>, not <name>.old) cannot be moved in
        if Path(src).name == "fdftnet-squeezenet-dfdc64" and ".export-" in str(src):
            raise PermissionError(13, "Permission denied", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(rp.os, "replace", replace)
    with pytest.raises(SystemExit, match="could not move the export"):
        main(_args(root, tmp_path, "--export-default", "dfdc64/squeezenet/fdftnet-unfrozen"))
    monkeypatch.setattr(rp.os, "replace", real_replace)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()}
    assert after == before
    assert main(_args(root, tmp_path, "--export-default", "dfdc64/squeezenet/fdftnet-unfrozen")) == 0
    ev = json.loads((tmp_path / "checkpoints" / names["fdftnet"] / "eval.json").read_text())
    assert ev["job"] == "dfdc64/squeezenet/fdftnet-unfrozen"


def test_report_tables_group_ablations_by_backbone():
    from bench.report import ablation_table, budget_table, main_table, seeds_table

    def run(bb, group, variant, acc, seed=0, **cfg):
        return {"backbone": bb, "group": group, "variant": variant, "shots": None, "epochs_run": 3, "seed": seed,
                "test": {"acc": acc, "auroc": acc + 0.05}, "train_config": cfg}

    runs = [run("xception", "ablation", "ablation-no-cutout", 0.7), run("shallownetv3", "ablation", "ablation-no-ftt", 0.6),
            run("xception", "main", "fdftnet-frozen", 0.65), run("shallownetv3", "main", "fdftnet-frozen", 0.62),
            run("xception", "main", "baseline", 0.66), run("xception", "main", "fdftnet-unfrozen-lowlr", 0.68, backbone_lr=1e-4)]
    rows = [line.split(" | ")[0] for line in ablation_table(runs)[2:]]
    assert rows == ["| shallownetv3 fdftnet-frozen", "| shallownetv3 ablation-no-ftt", "| xception fdftnet-frozen",
                    "| xception ablation-no-cutout"]
    table = main_table(runs)
    assert "backbone lr 0.0001" in table[0]
    assert table[3] == "| xception | 66.00 / 71.00 | 65.00 / 70.00 | not run | 68.00 / 73.00 | not run | 3 / 3 / – / 3 / – |"
    recipe = "fdftnet-unfrozen-lowlr-no-cutout"
    runs += [run("xception", "main", recipe, 0.68), run("xception", "main", recipe, 0.64, seed=1)]
    assert main_table(runs)[3].endswith("| 66.00 ± 2.83 / 71.00 ± 2.83 (2) | 3 / 3 / – / 3 / 3,3 |")
    assert budget_table(runs) == []  # no 'long' jobs
    runs[4].update(best_epoch=2, device="cpu", train_config={"epochs": 8, "patience": 3})  # the baseline
    runs[6].update(best_epoch=3, device="cpu", train_config={"epochs": 16, "patience": 5})  # the recipe, seed 0
    runs += [{**run("xception", "long", "baseline", 0.70), "best_epoch": 9, "device": "cuda",
              "train_config": {"epochs": 300, "patience": 20}},
             {**run("xception", "long", recipe, 0.69), "best_epoch": 30, "device": "cuda",
              "train_config": {"epochs": 300, "patience": 20}}]
    assert budget_table(runs)[2:] == [
        "| xception | 8, 3 / 16, 5 | 66.00 / 71.00 | 68.00 / 73.00 | +2.00 / +2.00 | 3, 2 / 3, 3 | cpu |",
        "| xception | 300, 20 | 70.00 / 75.00 | 69.00 / 74.00 | -1.00 / -1.00 | 3, 9 / 3, 30 | cuda |"]
    del runs[-1]  # the long FDFtNet did not finish: its baseline's row stays
    assert budget_table(runs)[-1] == "| xception | 300, 20 | 70.00 / 75.00 | not run | – | 3, 9 | cuda |"
    assert seeds_table(runs)[2:] == ["| xception | 0 | 66.00 / 71.00 | 68.00 / 73.00 | +2.00 / +2.00 | yes |",
                                     "| xception | 1 | 66.00 / 71.00 | 64.00 / 69.00 | -2.00 / -2.00 | no |"]


def test_recalibrate_resets_old_thresholds_without_training_and_refuses_changed_weights(tmp_path, capsys):
    root = tmp_path / "data"
    make_image_folder(root / "dfdc64", {"train": 10, "finetune": 8, "validation": 6, "test": 6}, seed=1)
    make_image_folder(root / "gan64", {"finetune": 10, "test": 6}, seed=2)
    results, runs = tmp_path / "results", tmp_path / "runs"
    args = _args(root, tmp_path, "--match", "squeezenet/baseline,k4/s0/head-only", "--only", "main,fewshot")
    assert main(args) == 0
    keys = ["dfdc64/squeezenet/baseline", "gan64/squeezenet/k4/s0/head-only"]
    for key in keys:  # as a job calibrated by an older rule left them: another threshold, no rule named
        path = results / "jobs" / f"{key}.json"
        rec = json.loads(path.read_text())
        path.write_text(json.dumps({**rec, "threshold_rule": None}))
        training = json.loads((runs / key / "training.json").read_text())
        training.pop("threshold_rule")
        model = load_model(runs / key)
        model.threshold.fill_(0.123)
        save_checkpoint(model, runs / key, extra_json={"training.json": training})
    # the head-only job's weights change after training: its validation AUROC no longer matches, it is left alone
    bad = runs / keys[1]
    model = load_model(bad)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    save_checkpoint(model, bad, extra_json={"training.json": json.loads((bad / "training.json").read_text())})
    bad_rec = (results / "jobs" / f"{keys[1]}.json").read_bytes()
    capsys.readouterr()

    assert main([*args, "--recalibrate"]) == 0
    out, err = capsys.readouterr()
    assert not re.search(r"^\[\d+/\d+\]", out, re.M)  # nothing trained
    assert "not recalibrated" in err and keys[1] in err and (results / "jobs" / f"{keys[1]}.json").read_bytes() == bad_rec
    rec = json.loads((results / "jobs" / f"{keys[0]}.json").read_text())
    training = json.loads((runs / keys[0] / "training.json").read_text())
    cfg = TrainConfig(**{**training["train_config"], "data": str(root / "dfdc64")})
    model = load_model(runs / keys[0])
    _, val = load_data(cfg)
    want, _ = best_threshold(val.labels.numpy(), predict_imageset(model, val))
    assert float(model.threshold) == pytest.approx(want) and rec["recalibrated_from"] == pytest.approx(0.123)
    assert rec["threshold_rule"] == training["threshold_rule"] == THRESHOLD_RULE
    assert rec["validation"]["threshold"] == pytest.approx(want) and training["validation"]["threshold"] == pytest.approx(want)
    assert rec["test"] == json.loads(json.dumps(evaluate(model, load_split(cfg, "test"))))
    # done once: a second pass rewrites nothing
    stamp = (results / "jobs" / f"{keys[0]}.json").stat().st_mtime_ns
    assert main([*args, "--recalibrate"]) == 0
    assert (results / "jobs" / f"{keys[0]}.json").stat().st_mtime_ns == stamp


def test_selfblend_table_sets_each_run_beside_its_comparison_over_seeds():
    from bench.report import selfblend_table

    def run(group, variant, auroc, seed=0, base=None, **cfg):
        return {"backbone": "efficientnet_lite0", "group": group, "variant": variant, "seed": seed, "base": base,
                "epochs_run": 6, "test": {"acc": auroc - 0.1, "auroc": auroc}, "train_config": cfg}

    base = "dfdc64/efficientnet_lite0/pretrained/baseline"
    runs = [run("pretrained", "baseline", 0.90), run("pretrained", "linear-probe", 0.67)]
    assert selfblend_table(runs) == []  # no selfblend job: no table
    runs += [run("selfblend", "reals-only", 0.59, reals_only=True),
             run("selfblend", "reals-only-all", 0.62, reals_only=True), run("selfblend", "reals-only-all", 0.64, seed=1, reals_only=True),
             run("selfblend", "continued-mixed", 0.90, base=base, train_split="finetune"),
             run("selfblend", "continued-mixed", 0.92, seed=1, base=base, train_split="finetune"),
             run("pretrained", "baseline-continued", 0.91, base=base, train_split="finetune")]
    rows = selfblend_table(runs)[2:]
    assert [r.split(" | ")[2] for r in rows] == ["`reals-only`", "`reals-only-all`", "`baseline`", "`baseline-continued`",
                                                 "`continued-mixed`"]
    assert rows[0].split(" | ")[3:5] == ["train (reals)", "none"]
    assert rows[1].endswith("| 53.00 ± 1.41 | 63.00 ± 1.41 | 2 |")
    rows.pop(1)
    assert rows[3].endswith("| 6,6 | 81.00 ± 1.41 | 91.00 ± 1.41 | 2 |")
    assert "its baseline’s, then finetune’s" in rows[3] and "| train | train’s |" in rows[1]

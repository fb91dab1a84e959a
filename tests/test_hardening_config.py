"""Issue #22.5/#22.6: untrusted checkpoint configs and NaN verdicts end in one line, before anything big is built.

Each case is a real squeezenet checkpoint with one field of config.json (or one tensor) made hostile, loaded
through the Python API (`load_model`) and the CLI (`fdftnet evaluate` / `predict`): a one-line CheckpointError,
exit status 2, never a traceback, a RecursionError or gigabytes allocated.
"""
import json
import math
import resource
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from fdftnet import BaselineDetector, FDFtNet
from fdftnet.models._hub import FORMAT_VERSION
from fdftnet.checkpoint import load_model
from fdftnet.cli import main
from fdftnet.inference import evaluate, predict_arrays
from fdftnet.models._hub import FORMAT_VERSION
from fdftnet.models import CheckpointError
from fdftnet.models._hub import check_config

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(backbone="squeezenet", ftt_stages=1, mb_blocks=1)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ck") / "fdftnet"
    torch.manual_seed(0)
    FDFtNet(**TINY).save_pretrained(d)
    return d


def _copy(src: Path, dst: Path, edit=None, raw: str | None = None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    cfg = json.loads((src / "config.json").read_text())
    if edit:
        edit(cfg)
    (dst / "config.json").write_text(raw if raw is not None else json.dumps(cfg))
    return dst


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg and "Traceback" not in msg, repr(msg)
    return msg


def _image(tmp_path: Path) -> str:
    p = tmp_path / "face.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(p)
    return str(p)


def _cli_refuses(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fdftnet: error:") and "\n" not in err and "Traceback" not in err, err
    return err


DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE = {  # name -> (config edit, words the message must hold)
    "ftt_channels_huge": (lambda c: c.update(ftt_channels=[30000]), "ftt_channels"),
    "mb_blocks_3000": (lambda c: c.update(mb_blocks=3000), "mb_blocks"),
    "mb_expand_float": (lambda c: c.update(mb_expand=1e7), "mb_expand"),
    "embed_dim_1e9": (lambda c: c.update(embed_dim=1e9), "embed_dim"),
    "embed_dim_int_1e9": (lambda c: c.update(embed_dim=10 ** 9), "embed_dim"),
    "freeze_backbone_no": (lambda c: c.update(freeze_backbone="no"), "freeze_backbone"),
    "format_version_str": (lambda c: c.update(format_version="1"), "format_version"),
    "format_version_null": (lambda c: c.update(format_version=None), "format_version"),
    "unknown_key": (lambda c: c.update(exec_me="rm -rf /"), "exec_me"),
    "unknown_backbone": (lambda c: c.update(backbone="../../etc/passwd"), "backbone"),
    "backbone_args_nested": (lambda c: c.update(backbone_args={"layers": [[3] * 1000]}), "backbone_args"),
    "backbone_args_bad_kwarg": (lambda c: c.update(backbone_args={"no_such_arg": 1}), "invalid values"),
    "ftt_stages_gt_channels": (lambda c: c.update(ftt_stages=3, ftt_channels=[8]), "invalid values"),
    "nan_mean": (lambda c: c.update(mean=[0.5, float("nan"), 0.5], std=[1, 1, 1]), "mean"),
    "zero_std": (lambda c: c.update(mean=[0.5, 0.5, 0.5], std=[1, 0, 1]), "std"),
    "input_size_4096": (lambda c: c.update(input_size=4096), "input_size"),
    "over_budget": (lambda c: c.update(ftt_channels=[2048] * 8, ftt_stages=8, mb_blocks=16, mb_expand=4096,
                                       mb_out=2048, embed_dim=4096), "limit is 100M"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_config_is_one_line_before_any_big_allocation(case, ckpt, tmp_path, capsys):
    edit, words = HOSTILE[case]
    d = _copy(ckpt, tmp_path / case, edit)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB; a peak, so it only grows
    with pytest.raises(CheckpointError) as err:
        load_model(d)
    assert words in _one_line(err.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 500_000  # under 0.5 GB more
    _cli_refuses(["predict", "--model", str(d), _image(tmp_path)], capsys)


def test_config_nested_100000_deep_is_one_line(ckpt, tmp_path, capsys):
    d = _copy(ckpt, tmp_path / "deep", raw='{"model_type": "fdftnet", "ftt_channels": ' + DEEP + "}")
    with pytest.raises(CheckpointError) as err:
        FDFtNet.from_pretrained(d)
    assert "nested" in _one_line(err.value)
    _cli_refuses(["evaluate", "--model", str(d), "--data", str(tmp_path)], capsys)


def test_format_version_messages_are_accurate(ckpt, tmp_path):
    for v, words in (("1", 'format_version "1"'), (None, "format_version null"), (FORMAT_VERSION + 1, "newer fdftnet")):
        d = _copy(ckpt, tmp_path / f"v{v}", lambda c: c.update(format_version=v))
        with pytest.raises(CheckpointError, match=words):
            load_model(d)


def test_valid_configs_still_load(ckpt, tmp_path):
    assert load_model(ckpt).model_type == "fdftnet"
    for d in sorted((ROOT / "checkpoints").glob("*/config.json")):  # the shipped checkpoints
        check_config(json.loads(d.read_text()))
    # the fields of issue #23, and any registered backbone name, pass the field checks
    check_config({"model_type": "baseline", "backbone": "squeezenet", "num_classes": 2, "input_size": 128,
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "backbone_args": {"drop_rate": 0.2}})
    d = tmp_path / "old"  # a checkpoint written before format_version existed
    _copy(ckpt, d, lambda c: c.pop("format_version"))
    assert load_model(d).model_type == "fdftnet"


# ----------------------------------------------------------------------------------------------
# 22.6: NaN weights, thresholds outside (0, 1), non-finite scores


def _with_state(src: Path, dst: Path, change) -> Path:
    _copy(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    change(state)
    save_file(state, str(dst / "model.safetensors"))
    return dst


@pytest.mark.parametrize("change,words", [
    (lambda s: [v.fill_(float("nan")) for v in s.values() if v.is_floating_point()], "NaN"),
    (lambda s: s["threshold"].fill_(float("nan")), "threshold"),
    (lambda s: s["threshold"].fill_(1.5), "threshold"),
    (lambda s: s["threshold"].fill_(0.0), "threshold"),
], ids=["all_nan", "nan_threshold", "threshold_1.5", "threshold_0"])
def test_nan_weights_or_bad_threshold_are_refused(change, words, ckpt, tmp_path, capsys):
    d = _with_state(ckpt, tmp_path / "bad", change)
    with pytest.raises(CheckpointError, match=words) as err:
        load_model(d)
    _one_line(err.value)
    err = _cli_refuses(["predict", "--model", str(d), _image(tmp_path)], capsys)
    assert "nan real" not in err


def test_non_finite_scores_are_an_error_not_real(tmp_path):
    model = BaselineDetector(backbone="squeezenet").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("inf"))  # e.g. weights that overflow at run time
    with pytest.raises(CheckpointError, match="NaN") as err:
        predict_arrays(model, [np.zeros((64, 64, 3), np.uint8)])
    _one_line(err.value)


def test_evaluate_refuses_threshold_outside_0_1(ckpt, capsys, tmp_path):
    from conftest import make_image_folder
    from fdftnet.data import load_image_folder
    data = load_image_folder(make_image_folder(tmp_path / "d", {"test": 2}), "test")
    model = load_model(ckpt)
    for t in (float("nan"), 1.5, 0.0, -1.0):
        with pytest.raises(ValueError, match="threshold"):
            evaluate(model, data, threshold=t)
    assert math.isfinite(evaluate(model, data, threshold=0.5)["acc"])
    _cli_refuses(["evaluate", "--model", str(ckpt), "--data", str(tmp_path / "d"), "--threshold", "nan"], capsys)

"""The GPU paths: training under bf16 autocast, pinned-memory batches, inference and the CLI on CUDA.

Every other test pins device="cpu" so that CI (which has no GPU) and a GPU machine compute the same
numbers. These run only where torch sees a CUDA device (bench/device_check.sh runs them on a lent GPU)
and are skipped elsewhere.
"""
import json
import math

import pytest
import torch

from fdftnet import FDFtNet, list_models, load_model
from fdftnet.cli import main as cli_main
from fdftnet.data import AugmentConfig, Batches, load_image_folder
from fdftnet.inference import evaluate, predict_tensor
from fdftnet.train import TrainConfig, finetune, forward_loss, pretrain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_batches_on_cuda_match_the_cpu_batches(synthetic_images):
    data = load_image_folder(synthetic_images, "finetune")
    aug = AugmentConfig()
    cpu = list(Batches(data, 16, augment=aug, cutout=True, seed=3, device="cpu"))
    gpu = list(Batches(data, 16, augment=aug, cutout=True, seed=3, device="cuda"))
    assert len(cpu) == len(gpu) == len(data) // 16
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.device.type == "cuda" and yg.device.type == "cuda" and xg.dtype == torch.float32
        assert torch.equal(yc, yg.cpu())
        # the same draws from the same CPU generator; only the interpolation kernels differ
        assert (xc - xg.cpu()).abs().mean().item() < 1e-3


@pytest.mark.parametrize("backbone", list_models())
def test_every_backbone_trains_a_step_under_bf16_autocast(backbone, seed):
    model = FDFtNet(backbone, mb_blocks=2, freeze_backbone=False).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(8, 3, 64, 64, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.tensor([0, 1] * 4, device="cuda")
    logits, loss = forward_loss(model, x, y, use_amp=True)
    assert logits.shape == (8, 2) and loss.dtype == torch.float32 and math.isfinite(loss.item())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
    opt.step()


def test_finetune_on_cuda_learns_and_the_checkpoint_loads_on_cpu(synthetic_images, tiny_baseline_dir, tmp_path):
    out = tmp_path / "ft"
    cfg = TrainConfig(stage="finetune", data=str(synthetic_images), backbone_from=str(tiny_baseline_dir),
                      out=str(out), epochs=8, batch_size=32, patience=8, monitor="val_acc", device="cuda",
                      seed=0, mb_blocks=2, shots=40, amp=True)
    events = list(finetune(cfg))
    assert events[0]["type"] == "start" and str(events[0]["device"]).startswith("cuda")
    assert events[-1]["type"] == "done"
    assert all(math.isfinite(e["train_loss"]) for e in events if e["type"] == "epoch")
    record = json.loads((out / "training.json").read_text())
    assert record["train_config"]["device"] == "cuda"
    test = load_image_folder(synthetic_images, "test")
    model = load_model(out, expect="fdftnet")  # written from the GPU, read on the CPU
    assert next(model.parameters()).device.type == "cpu"
    m = evaluate(model, test)
    assert m["acc"] >= 0.9 and m["auroc"] >= 0.9, m


def test_pretrain_on_cuda_runs_and_records_the_device(synthetic_images, tmp_path):
    out = tmp_path / "base"
    cfg = TrainConfig(stage="pretrain", data=str(synthetic_images), backbone="shallownetv3", out=str(out),
                      epochs=2, batch_size=32, patience=2, device="cuda", seed=0)
    events = list(pretrain(cfg))
    assert events[-1]["type"] == "done" and str(events[0]["device"]).startswith("cuda")
    assert load_model(out, expect="baseline") is not None


def test_cuda_predictions_match_cpu(tiny_baseline_dir, synthetic_images, seed):  # seed: no TF32
    test = load_image_folder(synthetic_images, "test")
    cpu_model = load_model(tiny_baseline_dir, expect="baseline")
    p_cpu = predict_tensor(cpu_model, test.images)
    gpu_model = load_model(tiny_baseline_dir, expect="baseline").cuda()
    p_gpu = predict_tensor(gpu_model, test.images)
    p_amp = predict_tensor(gpu_model, test.images, amp=True)
    assert abs(p_cpu - p_gpu).max() < 1e-4
    assert abs(p_cpu - p_amp).max() < 3e-2  # bf16: about the third decimal


def test_cli_evaluate_on_cuda_prints_the_cpu_metrics(tiny_baseline_dir, synthetic_images, capsys):
    args = ["evaluate", "--model", str(tiny_baseline_dir), "--data", str(synthetic_images), "--split", "test"]
    assert cli_main([*args, "--device", "cpu"]) == 0
    cpu_out = capsys.readouterr().out
    assert cli_main([*args, "--device", "cuda"]) == 0
    gpu_out = capsys.readouterr().out
    line = lambda out: next(l for l in out.splitlines() if l.startswith("test:")).split()  # noqa: E731
    assert line(cpu_out)[:4] == line(gpu_out)[:4]  # split, n, acc, auroc

"""Distributed (DDP, torchrun) training on 2 CPU processes with gloo, and the streamed HF training split.

Every multi-process test launches `python -m torch.distributed.run --standalone --nproc-per-node 2` in its
own session with a hard timeout (the whole process group is killed on expiry), on tiny generated images
with the tiny, BatchNorm-free "squeezenet" backbone. `FDFTNET_DEBUG_SAMPLES=DIR` makes fit() write what
each rank trained on to DIR/rank{R}.json (see `fdftnet.distributed.SampleLog`).
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import make_image_folder
from safetensors.torch import load_file

from fdftnet import load_model
from fdftnet.data import StreamBatches, load_hf_dataset, load_image_folder
from fdftnet.distributed import image_hash
from fdftnet.models import BaselineDetector

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 600  # s per torchrun launch: a hang guard, not a speed bound (the runs take ~10 s on 2 idle cores)


def _env(tmp_path: Path, **extra) -> dict:
    env = dict(os.environ)
    env.pop("FDFTNET_DEBUG_SAMPLES", None)
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_CACHE=str(tmp_path / "hf-cache"), FDFTNET_DIST_TIMEOUT="90",
               TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def torchrun(tmp_path: Path, args: list[str], nproc: int = 2, timeout: float = TIMEOUT, **env):
    """Run `torchrun --standalone --nproc-per-node N ARGS`; (returncode, stdout, stderr, seconds)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(tmp_path, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and every worker
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s (a rank hung?)\n{out[-3000:]}\n{err[-3000:]}")
    return proc.returncode, out, err, time.monotonic() - t0


def _ranks(debug_dir: Path, world: int = 2) -> list[dict]:
    return [json.loads((debug_dir / f"rank{r}.json").read_text()) for r in range(world)]


def _hashes(images: torch.Tensor) -> list[str]:
    return [image_hash(img) for img in images]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """ROOT/{train,validation}/{real,fake}: 16 + 8 images per class."""
    return make_image_folder(tmp_path_factory.mktemp("ddp-data"), {"train": 16, "validation": 8})


# ----------------------------------------------------------------------------- the CI test


def test_torchrun_two_cpu_processes_pretrain(folders, tmp_path):
    """2 gloo processes: exit 0, one log, a loadable checkpoint, and disjoint per-rank samples covering each epoch."""
    out, debug = tmp_path / "run", tmp_path / "samples"
    rc, stdout, stderr, _ = torchrun(
        tmp_path, ["-m", "fdftnet", "pretrain", "--data", str(folders), "--backbone", "squeezenet", "--epochs", "2",
                   "--batch-size", "8", "--device", "cpu", "--out", str(out)], FDFTNET_DEBUG_SAMPLES=debug)
    assert rc == 0, stderr[-3000:]
    assert stdout.count("done: best epoch") == 1 and stdout.count("epoch   2") == 1  # only rank 0 prints
    model = load_model(out, expect="baseline")
    assert model.backbone_name == "squeezenet"
    assert json.loads((out / "training.json").read_text())["train_config"]["batch_size"] == 8
    state = json.loads((out / "last" / "state.json").read_text())  # written by rank 0 after each epoch
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]

    train = set(_hashes(load_image_folder(folders, "train").images))
    assert len(train) == 32
    logs = _ranks(debug)
    assert [d["rank"] for d in logs] == [0, 1] and all(d["world_size"] == 2 for d in logs)
    for epoch in ("0", "1"):
        seen = [logs[r]["epochs"][epoch] for r in range(2)]
        assert logs[0]["batches"][epoch] == logs[1]["batches"][epoch] == 2  # 16 per rank, batch 8
        assert len(seen[0]) == len(seen[1]) == 16 and len(set(seen[0])) == 16
        assert not set(seen[0]) & set(seen[1])  # the ranks saw different samples
        assert set(seen[0]) | set(seen[1]) == train  # together: the whole epoch (32 is even: nothing trimmed)
    assert set(logs[0]["epochs"]["0"]) != set(logs[0]["epochs"]["1"])  # reshuffled across ranks each epoch


# ----------------------------------------------------------------------------- 1 process == 2 processes

_FIT_SCRIPT = textwrap.dedent('''
    """fit() of a dropout-free squeezenet baseline; args: DATA OUT BATCH EVENTS_JSON."""
    import json, sys
    import torch
    from fdftnet import distributed as dist
    from fdftnet.models import BaselineDetector
    from fdftnet.train import TrainConfig, fit, load_split

    def run(data, out, batch, events_json):
        cfg = TrainConfig(stage="pretrain", data=data, out=out, backbone="squeezenet", epochs=2, batch_size=batch,
                          optimizer="sgd", lr=0.01, patience=99, device="cpu", seed=0)
        torch.manual_seed(0)
        model = BaselineDetector("squeezenet", backbone_args={"drop_rate": 0.0})
        train, val = load_split(cfg, "train"), load_split(cfg, "validation")
        try:
            rows = [e for e in fit(model, train, val, cfg) if e["type"] == "epoch"]
            if dist.is_main():
                with open(events_json, "w") as f:
                    json.dump(rows, f)
        finally:
            dist.cleanup()

    if __name__ == "__main__":
        run(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
''')


def test_two_processes_match_one_process_up_to_float_noise(folders, tmp_path):
    """DDP with 2 ranks x batch 8 trains the same model as 1 process with batch 16.

    Exact equality is impossible (gradient sums run in another order), so the check is "up to float noise"
    and it is sound because nothing else differs:
    - squeezenet has no BatchNorm, and dropout is set to 0, so each image's loss and gradient do not depend
      on which other images share its batch;
    - `Batches` gives rank r every 2nd image of one shared seeded permutation, so at step b the two rank
      batches together are exactly the 1-process batch b (32 training images, no partial batch);
    - DDP averages the two equal-size rank means = the mean over the 16 images (the first gradients agree
      to ~1e-7); SGD is linear in the gradient (Adam's g/sqrt(v) would blow up the noise of near-zero ones).
    Per-epoch train loss (reduced over ranks) and validation metrics (gathered shards) agree to 1e-4.
    The weights are compared to how far training moved them, not to an absolute tolerance: float32
    ReLU/max-pool ties make this net's training sensitive (1 vs 2 threads alone, or float32 vs float64,
    differ by up to ~1e-4 after one step, and it grows with every step; larger lr grows it faster). After
    the 4 steps here the runs differ by < 0.1% of the update per tensor; we require < 5% per tensor and
    < 1% overall. Both ranks training on rank 0's shard instead gives > 200%.
    """
    script = tmp_path / "ddp_fit.py"
    script.write_text(_FIT_SCRIPT)
    one, two = tmp_path / "one", tmp_path / "two"
    rc, _, stderr, _ = torchrun(tmp_path, [str(script), str(folders), str(two), "8", str(tmp_path / "two.json")])
    assert rc == 0, stderr[-3000:]

    sys.path.insert(0, str(tmp_path))
    try:
        import ddp_fit
        ddp_fit.run(str(folders), str(one), 16, str(tmp_path / "one.json"))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("ddp_fit", None)

    rows1 = json.loads((tmp_path / "one.json").read_text())
    rows2 = json.loads((tmp_path / "two.json").read_text())
    assert len(rows1) == len(rows2) == 2
    for a, b in zip(rows1, rows2):
        for k in ("train_loss", "train_acc", "val_loss", "val_acc", "val_auroc", "lr"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (k, a, b)
    w1 = load_file(str(one / "last" / "model.safetensors"))
    w2 = load_file(str(two / "last" / "model.safetensors"))
    torch.manual_seed(0)
    w0 = BaselineDetector("squeezenet", backbone_args={"drop_rate": 0.0}).state_dict()
    params = [k for k in w1 if k.endswith((".weight", ".bias"))]
    assert w1.keys() == w2.keys() and len(params) == 52
    ratios = {k: float((w2[k] - w1[k]).norm() / (w1[k] - w0[k]).norm()) for k in params}
    assert max(ratios.values()) < 0.05, sorted(ratios.items(), key=lambda kv: -kv[1])[:5]
    flat = lambda w: torch.cat([w[k].flatten() for k in params])  # noqa: E731
    assert float((flat(w2) - flat(w1)).norm() / (flat(w1) - flat(w0)).norm()) < 0.01


# ----------------------------------------------------------------------------- failure in one rank

_FAIL_SCRIPT = textwrap.dedent('''
    """The CLI, with rank 1 sabotaged: FAIL_MODE=path gives it a missing --data folder, FAIL_MODE=mid makes its
    loader raise in the second epoch (rank 0 is then inside a collective)."""
    import os, sys
    from fdftnet.cli import main

    argv = sys.argv[1:]
    if os.environ.get("RANK") == "1":
        if os.environ["FAIL_MODE"] == "path":
            argv[argv.index("--data") + 1] = "/nonexistent/fdftnet-faces"
        else:
            import fdftnet.data.loader as loader
            from fdftnet.data import DataError
            real_iter = loader.Batches.__iter__

            def failing_iter(self):
                epoch = self.epoch
                for k, batch in enumerate(real_iter(self)):
                    if epoch == 1 and k == 1:
                        raise DataError("injected failure on rank 1")
                    yield batch
            loader.Batches.__iter__ = failing_iter
    sys.exit(main(argv))
''')


@pytest.mark.parametrize("mode", ["path", "mid"])
def test_error_in_one_rank_exits_without_hanging(folders, tmp_path, mode):
    """One rank fails (before joining the group, or mid-epoch): non-zero exit within the timeout, its one-line error."""
    script = tmp_path / "sabotage.py"
    script.write_text(_FAIL_SCRIPT)
    rc, stdout, stderr, seconds = torchrun(
        tmp_path, [str(script), "pretrain", "--data", str(folders), "--backbone", "squeezenet", "--epochs", "3",
                   "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "run")], FAIL_MODE=mode)
    assert rc != 0 and seconds < TIMEOUT
    errors = [line for line in stderr.splitlines() if line.startswith("fdftnet: error: ")]
    if mode == "path":  # rank 0 was still waiting to join the group: torchrun stopped it, silently
        assert errors == ["fdftnet: error: no dataset folder /nonexistent/fdftnet-faces"], stderr[-3000:]
        assert "[rank0]" not in stderr, stderr[-3000:]
    else:  # rank 0 (in a collective: its peer is gone) may report that too; it had kept epoch 1's checkpoint
        assert errors.count("fdftnet: error: injected failure on rank 1") == 1, stderr[-3000:]
        load_model(tmp_path / "run", expect="baseline")


# ----------------------------------------------------------------------------- streaming


@pytest.fixture()
def hf_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def _sorted_rows(images: torch.Tensor, labels: torch.Tensor) -> list[tuple[bytes, int]]:
    return sorted((img.numpy().tobytes(), int(y)) for img, y in zip(images, labels))


def test_streamed_split_yields_the_same_images_as_loading_it(folders, hf_offline):
    """StreamBatches over an imagefolder == load_hf_dataset of it (as a multiset of (uint8 image, label))."""
    ref = load_hf_dataset(folders, "train")
    assert len(ref) == 32
    stream = StreamBatches(folders, "train").configure(batch_size=5)
    xs, ys = zip(*list(stream))
    assert [len(y) for y in ys] == [5] * 6 + [2]
    assert xs[0].dtype == torch.float32 and xs[0].shape == (5, 3, 64, 64) and ys[0].dtype == torch.int64
    first = _sorted_rows(_uint8(torch.cat(xs)), torch.cat(ys))
    assert first == _sorted_rows(ref.images, ref.labels)

    stream.set_epoch(1)  # another order, the same images
    order1 = torch.cat([y for _, y in stream])
    assert not torch.equal(order1, torch.cat(ys)) and sorted(order1.tolist()) == sorted(torch.cat(ys).tolist())

    shards = []  # two ranks' shards (no process group: no step sync) partition the split
    for rank in range(2):
        stream.configure(batch_size=4, rank=rank, world_size=2, seed=3)
        stream.set_epoch(2)
        shards.append([(img.numpy().tobytes(), int(y)) for x, yy in stream for img, y in zip(_uint8(x), yy)])
    assert len(shards[0]) == len(shards[1]) == 16 and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == first

    unthreaded = StreamBatches(folders, "train", shuffle=False, prefetch=0, limit=3).configure(batch_size=4)
    assert sorted(torch.cat([y for _, y in unthreaded]).tolist()) == [0, 0, 0, 1, 1, 1]


def test_stream_reports_a_missing_split_at_once(folders, hf_offline):
    from fdftnet.data import DataError
    with pytest.raises(DataError, match="found splits"):
        StreamBatches(folders, "finetune")


def test_torchrun_streamed_pretrain_ranks_take_equal_steps(folders, tmp_path):
    """2 ranks stream 31 images (rank 0 gets 16, rank 1 gets 15): with batch 5 they would take 4 vs 3 steps;
    the per-step flag stops both after 3. grad-accum 2 then leaves one micro-batch, stepped at the epoch end."""
    data, out, debug = tmp_path / "hf", tmp_path / "run", tmp_path / "samples"
    make_image_folder(data, {"train": 16, "validation": 4})
    (data / "train" / "fake" / "fake_0015.png").unlink()  # 31 files: datasets splits them row by row
    rc, stdout, stderr, _ = torchrun(
        tmp_path, ["-m", "fdftnet", "pretrain", "--hf-dataset", str(data), "--streaming", "--backbone", "squeezenet",
                   "--epochs", "1", "--batch-size", "5", "--grad-accum", "2", "--device", "cpu", "--out", str(out)],
        FDFTNET_DEBUG_SAMPLES=debug)
    assert rc == 0, stderr[-3000:]
    assert "streamed train" in stdout and stdout.count("done: best epoch") == 1
    load_model(out, expect="baseline")
    logs = _ranks(debug)
    assert logs[0]["batches"]["0"] == logs[1]["batches"]["0"] == 3
    seen = [logs[r]["epochs"]["0"] for r in range(2)]
    assert len(seen[0]) == len(seen[1]) == 15 and not set(seen[0]) & set(seen[1])
    train = set(_hashes(load_image_folder(data, "train").images))
    assert set(seen[0]) | set(seen[1]) <= train

"""Hub support without the Hub: save/load round trips, loading from a Hub cache layout built here with
HF_HUB_OFFLINE=1, model cards, the commit a push would send, pull, token hygiene and the CLI.

No test reaches the network: the `hub_env` fixture turns huggingface_hub's offline mode on, points its
cache and login files into tmp_path, and makes every socket connect / DNS lookup fail. Runs in ~30 s on CPU.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard, constants

from conftest import make_image_folder  # pytest puts tests/ on sys.path ("tests.conftest" needs the repo root)
from fdftnet import BaselineDetector, CheckpointError, FDFtNet, load_model
from fdftnet.card import card_metadata, render_model_card, write_model_card
from fdftnet.checkpoint import save_checkpoint
from fdftnet.cli import main
from fdftnet.hub import HubError, PushResult, pull, push, resolve_token, source_info
from fdftnet.metrics import compute_metrics, jsonable
from fdftnet.train import TrainConfig

SECRET = "hf_secret_abc"
REPO = "user/fdftnet-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(backbone="squeezenet", ftt_stages=1, mb_blocks=1)  # ~1.4 M parameters, 5 MB of weights


def _blocked(*args, **kwargs):
    raise OSError("network access is disabled in tests")


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """Offline Hub with an empty HF_HOME in tmp_path, no token anywhere, and no sockets."""
    home = tmp_path / "hf_home"
    home.mkdir()
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # huggingface_hub reads these once at import, so the env vars alone do not reach this process
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(socket.socket, "connect", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)
    return home


def _sub_env(tmp_path, **extra) -> dict:
    """Environment for a `python -m fdftnet` subprocess: offline, empty HF_HOME, no token."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "sub_hf_home"),
               HF_HUB_CACHE=str(tmp_path / "sub_hf_home" / "hub"), PYTHONPATH=str(ROOT), **extra)
    return env


def _cli(args, tmp_path, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fdftnet", *args], cwd=ROOT, env=_sub_env(tmp_path, **extra),
                          capture_output=True, text=True, timeout=600)  # a hang guard, not a speed bound


def _training_record(model_type: str, **info) -> dict:
    """A training.json shaped exactly as `fit` writes it (real TrainConfig, real compute_metrics)."""
    rng = np.random.default_rng(0)
    y = np.array([0] * 8 + [1] * 8)
    p = np.clip(y * 0.5 + rng.uniform(0, 0.5, 16), 0, 1)
    stage = "pretrain" if model_type == "baseline" else "finetune"
    cfg = TrainConfig(stage=stage, data="../shared/data/dfdc64", backbone="squeezenet", shots=8, epochs=5,
                      backbone_from=None if stage == "pretrain" else "runs/base", out="runs/x")
    history = [{"epoch": e, "train_loss": 0.7 - 0.1 * e, "train_acc": 0.5 + 0.05 * e, "val_loss": 0.6,
                "val_acc": 0.7, "val_auroc": 0.8, "lr": 1e-3, "seconds": 1.0} for e in (1, 2, 3)]
    info = {"stage": stage, "backbone": "squeezenet", "data": cfg.data, "train_split": cfg.train_split,
            "val_split": "validation", "train_counts": {"real": 8, "fake": 8}, "val_counts": {"real": 8, "fake": 8},
            "shots": 8, "seed": 0, **info}
    return {"train_config": asdict(cfg), "info": info, "best_epoch": 2,
            "validation": jsonable(compute_metrics(y, p, threshold=0.6)), "history": history}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """Tiny FDFtNet and baseline checkpoint dirs as training leaves them (with last/ resume state)."""
    root = tmp_path_factory.mktemp("hub_ckpts")
    out = {}
    for kind, model in (("fdftnet", FDFtNet(**TINY)), ("baseline", BaselineDetector(backbone="squeezenet"))):
        torch.manual_seed(0)
        model.threshold.fill_(0.37)
        d = save_checkpoint(model, root / kind, extra_json={"training.json": _training_record(kind)})
        (d / "last").mkdir()
        (d / "last" / "optimizer.pt").write_bytes(b"optimizer state")
        (d / "last" / "state.json").write_text("{}")
        out[kind] = d
    return out


def _x() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _build_cache(cache: Path, repo_id: str, src: Path, commit: str = COMMIT, files=None) -> Path:
    """The Hub cache layout hf_hub_download leaves: blobs/, snapshots/<commit>/ (symlinks), refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for i, name in enumerate(files or ("config.json", "model.safetensors", "README.md", "training.json")):
        if (src / name).is_file():
            blob = repo / "blobs" / f"{i:02d}{commit[:38]}"
            shutil.copyfile(src / name, blob)
            (snap / name).symlink_to(os.path.relpath(blob, snap))
    return snap


# ----------------------------------------------------------------------------- 1. round trip

EXPECTED_CONFIG = {
    "fdftnet": {"backbone": "squeezenet", "num_classes": 2, "ftt_stages": 1, "ftt_channels": [32, 64, 128],
                "ftt_act": "relu", "use_ftt": True, "mb_blocks": 1, "mb_expand": 576, "mb_out": 128,
                "embed_dim": 576, "se_on_expanded": False, "freeze_backbone": True, "backbone_args": None,
                "model_type": "fdftnet", "format_version": 1, "input_size": 64, "mean": None, "std": None},
    "baseline": {"backbone": "squeezenet", "num_classes": 2, "backbone_args": None,
                 "model_type": "baseline", "format_version": 1, "input_size": 64, "mean": None, "std": None},
}


@pytest.mark.parametrize("kind", ["fdftnet", "baseline"])
def test_save_load_round_trip(kind, tmp_path, hub_env):
    cls = FDFtNet if kind == "fdftnet" else BaselineDetector
    torch.manual_seed(0)
    model = cls(**(TINY if kind == "fdftnet" else {"backbone": "squeezenet"})).eval()
    model.threshold.fill_(0.42)
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == EXPECTED_CONFIG[kind]
    assert not list((tmp_path / "m").glob("*.bin")) and not list((tmp_path / "m").glob("*.pt"))
    loaded = cls.from_pretrained(tmp_path / "m")
    assert not loaded.training
    assert torch.equal(model(_x()), loaded(_x()))
    assert float(loaded.threshold) == pytest.approx(0.42)
    defaults = {"crop_size": 64, **({"ftt_size": None} if kind == "fdftnet" else {})}  # format 2's, left out above
    assert loaded.config == {**{k: v for k, v in EXPECTED_CONFIG[kind].items()
                                if k not in ("model_type", "format_version")}, **defaults}


def test_a_native_resolution_model_is_format_2_and_reads_back(tmp_path, hub_env):
    """crop_size / ftt_size away from their defaults make the config format 2 (older readers refuse it in one
    line instead of feeding the model 64-px crops); it loads back with the same sizes and outputs."""
    torch.manual_seed(0)
    model = FDFtNet(**TINY, crop_size=96, ftt_size=48).eval()
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["format_version"], config["crop_size"], config["ftt_size"]) == (2, 96, 48)
    loaded = FDFtNet.from_pretrained(tmp_path / "m")
    assert (loaded.crop_size, loaded.ftt_size) == (96, 48)
    x = torch.rand(2, 3, 96, 96)
    assert torch.equal(model(x), loaded(x))


# ----------------------------------------------------------------------------- 2. Hub cache layout, offline

def test_load_from_hub_cache_offline(ckpts, tmp_path, hub_env):
    cache = tmp_path / "cache"
    _build_cache(cache, REPO, ckpts["fdftnet"])
    ref = FDFtNet.from_pretrained(ckpts["fdftnet"])(_x())
    for model in (FDFtNet.from_pretrained(REPO, cache_dir=cache),
                  load_model(REPO, cache_dir=cache, revision=COMMIT)):
        assert isinstance(model, FDFtNet) and torch.equal(model(_x()), ref)
    # default cache (HF_HUB_CACHE) works the same
    _build_cache(Path(constants.HF_HUB_CACHE), REPO, ckpts["fdftnet"])
    want = load_model(ckpts["fdftnet"]).state_dict()
    got = load_model(REPO).state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert source_info(REPO, cache_dir=cache) == {"base_model": REPO, "base_model_source": "hub",
                                                  "base_model_revision": COMMIT}
    with pytest.raises(CheckpointError, match="baseline"):
        load_model(REPO, cache_dir=cache, expect="baseline")


def test_unknown_repo_offline_is_one_quick_line(tmp_path, hub_env, network_attempts):
    with pytest.raises(CheckpointError) as e:
        load_model("user/no-such-model", cache_dir=tmp_path / "cache")
    assert network_attempts == []  # quick because nothing was tried: no DNS lookup, no connection, no retries
    assert "\n" not in str(e.value) and "user/no-such-model" in str(e.value)


def test_unknown_repo_offline_message_says_offline(tmp_path, hub_env):
    with pytest.raises(CheckpointError, match="offline|cache"):
        load_model("user/no-such-model", cache_dir=tmp_path / "cache")
    with pytest.raises(CheckpointError, match="offline|cache"):
        FDFtNet.from_pretrained("user/no-such-model", cache_dir=tmp_path / "cache")


def test_pull_from_cache_offline(ckpts, tmp_path, hub_env):
    cache = tmp_path / "cache"
    _build_cache(cache, REPO, ckpts["fdftnet"])
    snap = pull(REPO, cache_dir=cache)
    assert snap.name == COMMIT and (snap / "model.safetensors").is_file()
    out = pull(REPO, out=tmp_path / "pulled", cache_dir=cache, revision=COMMIT)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "training.json"]
    assert not (out / "config.json").is_symlink()
    assert torch.equal(load_model(out)(_x()), load_model(ckpts["fdftnet"])(_x()))

    with pytest.raises(HubError, match="not in the local Hub cache and HF_HUB_OFFLINE") as e:
        pull("user/missing", cache_dir=cache)
    assert "\n" not in str(e.value)
    with pytest.raises(HubError, match="local directory"):
        pull(str(ckpts["fdftnet"]))

    # a repo that is not an fdftnet model, and one written by a newer fdftnet
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    _build_cache(cache, "user/bert", other)
    with pytest.raises(CheckpointError, match="not an fdftnet checkpoint") as e:
        pull("user/bert", cache_dir=cache)
    assert str(cache) not in str(e.value)
    newer = tmp_path / "newer"
    shutil.copytree(ckpts["fdftnet"], newer, ignore=shutil.ignore_patterns("last"))
    cfg = json.loads((newer / "config.json").read_text())
    (newer / "config.json").write_text(json.dumps(dict(cfg, format_version=99)))
    _build_cache(cache, "user/newer", newer)
    with pytest.raises(CheckpointError, match="newer fdftnet"):
        pull("user/newer", cache_dir=cache)


# ----------------------------------------------------------------------------- 3. model card

def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_model_card_hub_provenance(ckpts, tmp_path, hub_env, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    d = tmp_path / "ft"
    shutil.copytree(ckpts["fdftnet"], d)
    record = _training_record("fdftnet", base_model="user/fdftnet-base-sq", base_model_revision=COMMIT,
                              base_model_source="hub")
    record["train_config"].update(data=None, hf_dataset="someone/dfdc-faces-64")
    (d / "training.json").write_text(json.dumps(record))
    test_m = dict(jsonable(compute_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])), split="test", data="someone/dfdc-faces-64")
    (d / "eval.json").write_text(json.dumps(test_m))

    text = render_model_card(d, repo_id=REPO)
    meta = _front_matter(text)
    assert meta == card_metadata(d, REPO)
    assert (meta["library_name"], meta["license"], meta["pipeline_tag"]) == ("fdftnet", "mit", "image-classification")
    assert {"fdftnet", "deepfake-detection", "backbone-squeezenet"} <= set(meta["tags"])
    assert meta["datasets"] == ["someone/dfdc-faces-64"] and meta["base_model"] == "user/fdftnet-base-sq"
    (index,) = meta["model-index"]
    assert index["name"] == "fdftnet-tiny"
    val, test = index["results"]
    assert val["dataset"] == {"name": "someone/dfdc-faces-64", "type": "someone/dfdc-faces-64", "split": "validation"}
    for result, src in ((val, record["validation"]), (test, test_m)):
        got = {m["name"]: m["value"] for m in result["metrics"]}
        assert got == {"ACC": src["acc"], "AUROC": src["auroc"], "AP": src["ap"], "EER": src["eer"]}  # exact
    card = ModelCard(text)  # huggingface_hub's own parser accepts the metadata
    assert card.data.library_name == "fdftnet" and card.data.base_model == "user/fdftnet-base-sq"
    assert {(r.dataset_split, r.metric_name) for r in card.data.eval_results} >= {("validation", "EER"), ("test", "ACC")}

    assert f'FDFtNet.from_pretrained("{REPO}")' in text and f"fdftnet predict --model {REPO}" in text
    assert f"at revision `{COMMIT}`" in text and "8 shots per class" in text
    assert "| cutout | yes: α = 3 holes, β = 10 |" in text and "| optimizer | adam |" in text
    assert "![ROC curve](roc.svg)" in text and "Research use only" in text
    assert SECRET not in text

    write_model_card(d, repo_id=REPO)
    assert (d / "README.md").read_text() == text
    svg = ET.fromstring((d / "roc.svg").read_text())
    assert svg.tag.endswith("svg") and len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 3  # chance + 2
    assert not list(d.glob(".*.tmp"))
    assert not any(SECRET in p.read_text(errors="ignore") for p in d.rglob("*") if p.is_file())


def test_model_card_local_provenance(ckpts, hub_env):
    """Local data and a local base model are shown in the text but are not Hub metadata."""
    text = render_model_card(ckpts["baseline"])
    meta = _front_matter(text)
    assert "datasets" not in meta and "base_model" not in meta
    assert "BaselineDetector.from_pretrained(" in text and "`../shared/data/dfdc64`" in text
    assert "trained from scratch" in text and "Research use only" in text  # the path says dfdc
    metrics = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics["AUROC"] == json.loads((ckpts["baseline"] / "training.json").read_text())["validation"]["auroc"]
    ModelCard(text)


def test_model_card_without_training_record(tmp_path, hub_env):
    FDFtNet(**TINY).save_pretrained(tmp_path / "bare")
    meta = _front_matter(render_model_card(tmp_path / "bare"))
    assert "model-index" not in meta and meta["library_name"] == "fdftnet"
    with pytest.raises(CheckpointError):
        render_model_card(tmp_path)  # not a checkpoint


# ----------------------------------------------------------------------------- 4. push

def test_push_dry_run_plans_the_commit(ckpts, tmp_path, hub_env):
    d = tmp_path / "ckpt"
    shutil.copytree(ckpts["fdftnet"], d)
    (d / ".tmp-0123").mkdir()
    (d / ".tmp-0123" / "model.safetensors").write_bytes(b"partial")
    (d / ".config.json.abc.tmp").write_text("{}")
    r = push(d, REPO, dry_run=True)
    assert isinstance(r, PushResult) and r.dry_run and not r.token_found and r.commit_url is None
    paths = [f["path"] for f in r.files]
    assert sorted(paths) == ["README.md", "config.json", "model.safetensors", "roc.svg", "training.json"]
    sizes = {f["path"]: f["size"] for f in r.files}
    assert sizes["model.safetensors"] == (d / "model.safetensors").stat().st_size
    readme = next(op for op in r.operations if op.path_in_repo == "README.md").path_or_fileobj.decode()
    assert f'from_pretrained("{REPO}")' in readme

    (d / "eval.json").write_text(json.dumps(dict(jsonable(compute_metrics([0, 1], [0.2, 0.7])), split="test")))
    assert "eval.json" in [f["path"] for f in push(d, REPO, dry_run=True).files]


def test_push_refuses_non_checkpoints(ckpts, tmp_path, hub_env):
    for bad in (tmp_path, ckpts["fdftnet"] / "last", tmp_path / "missing"):
        with pytest.raises(CheckpointError) as e:
            push(bad, REPO, dry_run=True)
        assert "\n" not in str(e.value)
    with pytest.raises(HubError, match="not a valid Hub repo id"):
        push(ckpts["fdftnet"], "not a/valid//id", dry_run=True)


def test_push_without_token(ckpts, hub_env):
    with pytest.raises(HubError, match="^no Hub token") as e:
        push(ckpts["fdftnet"], REPO)
    assert "\n" not in str(e.value)


def test_resolve_token_order(hub_env, monkeypatch):
    assert resolve_token() is None
    (hub_env / "token").write_text("hf_from_login_cache\n")
    assert resolve_token() == "hf_from_login_cache"
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert resolve_token() == SECRET
    assert resolve_token("hf_from_flag") == "hf_from_flag"


def test_push_offline_never_shows_the_token(ckpts, hub_env, monkeypatch, capsys, caplog):
    caplog.set_level("DEBUG")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with pytest.raises(HubError, match="offline mode is on") as e:  # what huggingface_hub raises offline
        push(ckpts["fdftnet"], REPO)
    assert e.value.__cause__ is None and e.value.__suppress_context__

    httpx2 = pytest.importorskip("httpx2")  # huggingface_hub 1.x/2.x's HTTP client

    def no_network(self, *a, **kw):  # a transport error whose text carries the token must come out scrubbed
        raise httpx2.ConnectError(f"connect failed, Authorization: Bearer {SECRET}")
    monkeypatch.setattr(HfApi, "create_repo", no_network)
    with pytest.raises(HubError, match="cannot be reached") as e2:
        push(ckpts["fdftnet"], REPO, token=SECRET)
    out, err = capsys.readouterr()
    for text in (str(e.value), str(e2.value), out, err, caplog.text):
        assert SECRET not in text
    assert "\n" not in str(e2.value)


def test_push_sends_one_commit(ckpts, hub_env, monkeypatch):
    """The real path up to the HTTP layer: create_repo, create_branch, create_commit with the planned files."""
    calls = []

    class Info:
        commit_url = f"https://huggingface.co/{REPO}/commit/{COMMIT}"

    def record(name, ret=None):
        def fn(self, *args, **kwargs):
            calls.append((name, self.token, args, kwargs))
            return ret
        return fn
    monkeypatch.setattr(HfApi, "create_repo", record("create_repo"))
    monkeypatch.setattr(HfApi, "create_branch", record("create_branch"))
    monkeypatch.setattr(HfApi, "create_commit", record("create_commit", Info()))
    monkeypatch.setenv("HF_TOKEN", SECRET)
    r = push(ckpts["fdftnet"], REPO, private=True, revision="v1", commit_message="tiny")
    assert [c[0] for c in calls] == ["create_repo", "create_branch", "create_commit"]
    assert all(c[1] == SECRET for c in calls)
    assert calls[0][3] == {"private": True, "exist_ok": True}
    assert calls[1][3] == {"branch": "v1", "exist_ok": True}
    commit = calls[2][3]
    assert commit["revision"] == "v1" and commit["commit_message"] == "tiny"
    assert sorted(op.path_in_repo for op in commit["operations"]) == sorted(f["path"] for f in r.files)
    assert r.commit_url == Info.commit_url and not r.dry_run


# ----------------------------------------------------------------------------- 5. CLI

def test_cli_push_dry_run_prints_the_plan(ckpts, hub_env, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert main(["push", "--model", str(ckpts["fdftnet"]), "--repo-id", REPO, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "dry run: would push 5 files" in out and "token: found" in out
    for name in ("config.json", "model.safetensors", "README.md", "training.json", "roc.svg"):
        assert name in out
    assert "optimizer" not in out and "last/" not in out and SECRET not in out + err


def test_cli_pull_missing_offline_subprocess(tmp_path):
    r = _cli(["pull", "--repo-id", "user/missing", "--out", str(tmp_path / "out")], tmp_path, HF_TOKEN=SECRET)
    assert r.returncode == 2
    assert r.stderr.startswith("fdftnet: error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "offline" in r.stderr.lower() and SECRET not in r.stdout + r.stderr and not (tmp_path / "out").exists()


def test_cli_token_never_printed(ckpts, hub_env, capsys):
    assert main(["push", "--model", str(ckpts["fdftnet"]), "--repo-id", REPO, "--token", SECRET]) == 2
    out, err = capsys.readouterr()
    assert "offline mode" in err and SECRET not in out + err
    assert main(["push", "--model", str(ckpts["fdftnet"]), "--repo-id", REPO]) == 2
    assert "no Hub token" in capsys.readouterr().err


def test_cli_predict_and_evaluate_read_hub_ids(ckpts, tmp_path, hub_env, capsys):
    cache = tmp_path / "cache"
    _build_cache(cache, REPO, ckpts["baseline"])
    data = make_image_folder(tmp_path / "data", {"test": 2})
    img = str(next((data / "test" / "fake").iterdir()))
    assert main(["predict", "--model", REPO, "--cache-dir", str(cache), "--revision", COMMIT,
                 "--device", "cpu", img]) == 0
    from_hub = capsys.readouterr().out.splitlines()
    assert main(["predict", "--model", str(ckpts["baseline"]), "--device", "cpu", img]) == 0
    local = capsys.readouterr().out.splitlines()
    assert local[1:] == from_hub[1:] and REPO in from_hub[0]  # the same rows; the header names the model
    assert main(["evaluate", "--model", REPO, "--cache-dir", str(cache), "--data", str(data), "--device", "cpu"]) == 0
    assert "test: n=4" in capsys.readouterr().out
    assert main(["predict", "--model", "user/unknown", "--cache-dir", str(cache), img]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ----------------------------------------------------------------------------- 6. --hf-dataset

def test_cli_evaluate_hf_imagefolder_matches_data(ckpts, tmp_path, hub_env):
    data = make_image_folder(tmp_path / "faces", {"test": 4}, seed=3)
    args = ["evaluate", "--model", str(ckpts["baseline"]), "--split", "test", "--limit", "4", "--device", "cpu"]
    r = _cli(args + ["--hf-dataset", str(data), "--json", str(tmp_path / "hf.json")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert main(args + ["--data", str(data), "--json", str(tmp_path / "folder.json")]) == 0
    hf, folder = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("hf", "folder"))
    assert hf["n"] == folder["n"] == 8 and (hf["n_real"], hf["n_fake"]) == (4, 4)
    assert hf["confusion"] == folder["confusion"]
    for k in ("acc", "auroc", "ap", "eer", "threshold"):
        assert hf[k] == pytest.approx(folder[k]), k

"""Hugging Face Hub plumbing shared by the two model classes users load (FDFtNet and BaselineDetector).

A checkpoint is a directory (or a Hub repo) with `config.json` (the `__init__` kwargs, plus `model_type` and
`format_version`), `model.safetensors` and a `README.md` model card. Weights only ever load from safetensors:
no pickle is ever opened, so a checkpoint from a stranger cannot run code.

    model = FDFtNet.from_pretrained("checkpoints/fdftnet-xception-dfdc")   # or a Hub id
"""
import json
import math
import os
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from safetensors.torch import load_file

from ._probe import check_outputs
from ._registry import is_model

__all__ = ["CheckpointError", "HubModel", "FORMAT_VERSION", "MAX_PARAMS", "read_config", "check_config",
           "resolve_file"]

FORMAT_VERSION = 2  # 2: crop_size, ftt_size (native-resolution models). Bump when a config.json written by this version could not be read by an older one
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
REPO_URL = "https://github.com/fdftnet-lab/fdftnet"
PAPER_URL = "https://doi.org/10.1007/978-3-030-58201-2_28"
FORMAT_2_DEFAULTS = {"crop_size": 64, "ftt_size": None}  # fields new in format 2, and their format-1 meaning
MAX_PARAMS = 100_000_000  # a checkpoint that would build more is refused before anything is allocated
MAX_CONFIG_BYTES = 64_000  # a real config.json is under 1 kB


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message is one line that says why."""


def resolve_file(
        model_id: str | Path,
        filename: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
) -> str:
    """Path of `filename` in a local checkpoint directory or a Hub repo (downloaded to / read from the cache)."""
    model_id = str(model_id)
    if os.path.isdir(model_id):
        path = os.path.join(model_id, filename)
        if not os.path.isfile(path):
            raise CheckpointError(f"{model_id} is not an fdftnet checkpoint: it has no {filename}")
        return path
    if os.path.exists(model_id) or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1:
        raise CheckpointError(f"no checkpoint directory {model_id!r}")
    try:
        return hf_hub_download(model_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                               local_files_only=local_files_only, force_download=force_download)
    except RepositoryNotFoundError:
        raise CheckpointError(f"Hub repo {model_id!r} not found (or private: pass a token)") from None
    except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError in huggingface_hub 2.x: catch it first
        raise CheckpointError(f"{model_id!r} is neither a local directory nor in the Hub cache, "
                              f"and the Hub cannot be reached (offline?)") from None
    except EntryNotFoundError:
        raise CheckpointError(f"Hub repo {model_id!r} is not an fdftnet model: it has no {filename}") from None
    except HfHubHTTPError as e:
        raise CheckpointError(f"Hub error for {model_id!r}: {str(e).splitlines()[0]}") from None
    except ValueError as e:  # malformed repo id
        raise CheckpointError(f"{model_id!r} is not a checkpoint directory nor a valid Hub id: {e}") from None


def read_config(model_id: str | Path, **hub_kwargs) -> dict:
    """The parsed config.json of a checkpoint, every field checked by `check_config` (one-line CheckpointError)."""
    path = resolve_file(model_id, CONFIG_NAME, **hub_kwargs)
    try:
        if os.path.getsize(path) > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{model_id}: config.json is over {MAX_CONFIG_BYTES:,} bytes: not an fdftnet config")
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except RecursionError:  # "[[[[..." nested deeper than the parser's stack
        raise CheckpointError(f"{model_id}: config.json is nested too deeply to be an fdftnet config") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{model_id}: config.json is not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(config, dict) or config.get("model_type") not in ("fdftnet", "baseline"):
        raise CheckpointError(f"{model_id} is not an fdftnet checkpoint (config.json has no fdftnet model_type)")
    version = config.get("format_version", 1)  # checkpoints older than the field are format 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{model_id}: config.json has format_version {json.dumps(version)}; "
                              f"it must be a whole number from 1 (this fdftnet reads up to {FORMAT_VERSION})")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{model_id} was written by a newer fdftnet (format {version}); "
                              f"this one reads up to format {FORMAT_VERSION}: upgrade fdftnet")
    try:
        check_config(config)
    except ValueError as e:
        raise CheckpointError(f"{model_id}: config.json: {e}") from None
    return config


# ----------------------------------------------------------------------------------------------
# config.json fields: a checkpoint may come from a stranger, so every field is checked before anything is built


def _int(lo: int, hi: int):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            return f"a whole number in {lo}..{hi}"
    return check


def _optional(check):
    def optional(v):
        return None if v is None else check(v)
    return optional


def _bool(v):
    if not isinstance(v, bool):
        return "true or false"


def _choice(*names):
    def check(v):
        if v not in names:
            return "one of " + ", ".join(names)
    return check


def _backbone(v):
    if not isinstance(v, str) or not is_model(v):
        return "a known backbone name (see `fdftnet models`)"


def _ints(lo: int, hi: int, n: int):
    def check(v):
        if not isinstance(v, list) or not 1 <= len(v) <= n or any(_int(lo, hi)(c) for c in v):
            return f"a list of 1..{n} whole numbers in {lo}..{hi}"
    return check


def _floats3(positive: bool):
    def check(v):
        if v is None:
            return None
        ok = isinstance(v, list) and len(v) == 3 and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and (c > 0 or not positive)
            for c in v)
        if not ok:
            return "null or a list of 3 " + ("positive numbers" if positive else "numbers")
    return check


def _backbone_args(v):
    """A flat dict of keyword args for the backbone entrypoint: a few scalar entries, e.g. {"drop_rate": 0.2}."""
    if v is None:
        return None
    scalar = lambda x: x is None or isinstance(x, (bool, int, str)) or (  # noqa: E731
        isinstance(x, float) and math.isfinite(x))
    if not isinstance(v, dict) or len(v) > 8 or not all(
            isinstance(k, str) and len(k) <= 64 and scalar(x) and len(str(x)) <= 64 for k, x in v.items()):
        return "null or a dict of at most 8 name: number/string/bool entries"


_ACTS = ("relu", "relu6", "hard_swish", "hswish", "hard_sigmoid", "hsigmoid", "sigmoid", "silu", "identity")
_COMMON = {"model_type": _choice("fdftnet", "baseline"), "format_version": _int(1, FORMAT_VERSION),
           "backbone": _backbone, "num_classes": _int(2, 1000), "backbone_args": _backbone_args,
           "input_size": _int(32, 512), "mean": _floats3(False), "std": _floats3(True), "crop_size": _int(32, 512)}
CONFIG_FIELDS = {
    "baseline": _COMMON,
    "fdftnet": {**_COMMON, "ftt_stages": _int(0, 8), "ftt_channels": _ints(1, 2048, 8), "ftt_act": _choice(*_ACTS),
                "use_ftt": _bool, "mb_blocks": _int(0, 16), "mb_expand": _int(1, 4096), "mb_out": _int(1, 2048),
                "embed_dim": _int(1, 4096), "se_on_expanded": _bool, "freeze_backbone": _bool,
                "ftt_size": _optional(_int(32, 512))},
}


def check_config(config: dict) -> None:
    """Raise ValueError (one line) for an unknown field or a value of the wrong type or range.

    Types are strict: "freeze_backbone": "no" is not a bool and 1e7 is not a channel count. The total
    parameter count is checked too, by `HubModel.check_size`, before the real model is built."""
    fields = CONFIG_FIELDS[config.get("model_type")]
    unknown = sorted(k for k in config if k not in fields)
    if unknown:
        raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown[:5]))}")
    for key, check in fields.items():
        if key in config and (want := check(config[key])):
            raise ValueError(f"{key} must be {want}, got {json.dumps(config[key])[:60]}")
    if (config.get("mean") is None) != (config.get("std") is None):
        raise ValueError("give both mean and std, or neither")


class HubModel(PyTorchModelHubMixin):
    """PyTorchModelHubMixin with safetensors-only, strict, validated loading and a typed config.json.

    Differs from the stock mixin on purpose: it loads with strict=True (an incompatible checkpoint is an error,
    not silently random weights), checks `model_type` so an FDFtNet is never loaded as a baseline or back,
    and refuses pickled weights.
    """
    model_type: str = ""

    def save_pretrained(self, save_directory, *, config: dict | None = None, **kwargs):
        config = dict(config if config is not None else (self._hub_mixin_config or {}))
        # format_version is the oldest reader that can load the file: format-2 fields at their defaults (a 64-px
        # model) are left out, so such a checkpoint stays format 1, readable by fdftnet releases before them
        for key, default in FORMAT_2_DEFAULTS.items():
            if key in config and config[key] == default:
                del config[key]
        version = 2 if any(k in config for k in FORMAT_2_DEFAULTS) else 1
        config.update(model_type=self.model_type, format_version=version)
        return super().save_pretrained(save_directory, config=config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, force_download: bool = False, token=None,
                        cache_dir=None, local_files_only: bool = False, revision: str | None = None, **model_kwargs):
        """The mixin's from_pretrained, after checking config.json ourselves (one-line errors, fast offline)."""
        read_config(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir, token=token,
                    local_files_only=local_files_only, force_download=force_download)
        return super().from_pretrained(pretrained_model_name_or_path, force_download=force_download, token=token,
                                       cache_dir=cache_dir, local_files_only=local_files_only, revision=revision,
                                       **model_kwargs)

    @property
    def config(self) -> dict:
        """The JSON-able architecture kwargs this model was built with."""
        return dict(self._hub_mixin_config or {})

    @classmethod
    def _from_pretrained(
            cls,
            *,
            model_id: str,
            revision: str | None,
            cache_dir: str | Path | None,
            force_download: bool,
            local_files_only: bool,
            token: str | bool | None,
            map_location: str = "cpu",
            strict: bool = True,
            **model_kwargs,
    ):
        hub = dict(revision=revision, cache_dir=cache_dir, token=token,
                   local_files_only=local_files_only, force_download=force_download)
        config = read_config(model_id, **hub)
        if config["model_type"] != cls.model_type:
            raise CheckpointError(f"{model_id} holds a {config['model_type']} model, not a {cls.model_type} model")
        cls.check_size(model_kwargs, model_id)
        model = cls(**model_kwargs)
        weights = resolve_file(model_id, WEIGHTS_NAME, **hub)
        try:
            state = load_file(weights, device=str(map_location))
        except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
            raise CheckpointError(f"{model_id}: model.safetensors is unreadable ({str(e).splitlines()[0]})") from None
        try:
            model.load_state_dict(state, strict=strict)
        except RuntimeError as e:
            first = [line.strip() for line in str(e).splitlines() if line.strip()][:2]
            raise CheckpointError(f"{model_id}: weights do not match config.json ({' '.join(first)[:300]})") from None
        bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
        if bad is not None:  # all-NaN weights would score every image NaN, i.e. "real"
            raise CheckpointError(f"{model_id}: model.safetensors holds NaN or infinite values (in {bad})")
        t = float(model.threshold)
        if not 0 < t < 1:
            raise CheckpointError(f"{model_id}: its decision threshold {t} is not a probability in (0, 1)")
        check_outputs(model, model_id)  # finite weights can still be broken: x 1e37 calls everything real
        return model.eval()

    @classmethod
    def check_size(cls, kwargs: dict, model_id: str | Path = "model") -> int:
        """Parameter count of `cls(**kwargs)`, built on the meta device (nothing allocated); CheckpointError
        when the arguments are refused or the count is over MAX_PARAMS."""
        try:
            with torch.device("meta"):
                probe = cls(**kwargs)
        except Exception as e:  # noqa: BLE001 - any refusal by a constructor is the config's fault
            raise CheckpointError(f"{model_id}: config.json has invalid values "
                                  f"({(str(e).splitlines() or [type(e).__name__])[0][:200]})") from None
        n = sum(p.numel() for p in probe.parameters()) + sum(b.numel() for b in probe.buffers())
        if n > MAX_PARAMS:
            raise CheckpointError(f"{model_id}: config.json describes a model of {n / 1e6:,.0f}M parameters; "
                                  f"the limit is {MAX_PARAMS / 1e6:,.0f}M")
        return n

    @torch.inference_mode()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """P(fake) for a float batch (B, 3, S, S) of crop_size crops in [0, 1]; class 1 is fake."""
        return torch.softmax(self(x).float(), dim=1)[:, 1]

"""Hugging Face Hub plumbing shared by the two model classes users load (FDFtNet and BaselineDetector).

A checkpoint is a directory (or a Hub repo) with `config.json` (the `__init__` kwargs, plus `model_type` and
`format_version`), `model.safetensors` and a `README.md` model card. Weights only ever load from safetensors:
no pickle is ever opened, so a checkpoint from a stranger cannot run code.

    model = FDFtNet.from_pretrained("checkpoints/fdftnet-xception-dfdc")   # or a Hub id
"""
import json
import os
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from safetensors.torch import load_file

__all__ = ["CheckpointError", "HubModel", "FORMAT_VERSION", "read_config", "resolve_file"]

FORMAT_VERSION = 1  # bump when a config.json written by this version could not be read by an older one
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
REPO_URL = "https://github.com/fdftnet-lab/fdftnet"
PAPER_URL = "https://doi.org/10.1007/978-3-030-58201-2_28"


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
    """The parsed config.json of a checkpoint, checked for a known model_type and a readable format."""
    path = resolve_file(model_id, CONFIG_NAME, **hub_kwargs)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{model_id}: config.json is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("model_type") not in ("fdftnet", "baseline"):
        raise CheckpointError(f"{model_id} is not an fdftnet checkpoint (config.json has no fdftnet model_type)")
    version = config.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{model_id} was written by a newer fdftnet (format {version}); "
                              f"this one reads up to format {FORMAT_VERSION}: upgrade fdftnet")
    return config


class HubModel(PyTorchModelHubMixin):
    """PyTorchModelHubMixin with safetensors-only, strict, validated loading and a typed config.json.

    Differs from the stock mixin on purpose: it loads with strict=True (an incompatible checkpoint is an error,
    not silently random weights), checks `model_type` so an FDFtNet is never loaded as a baseline or back,
    and refuses pickled weights.
    """
    model_type: str = ""

    def save_pretrained(self, save_directory, *, config: dict | None = None, **kwargs):
        config = dict(config if config is not None else (self._hub_mixin_config or {}))
        config.update(model_type=self.model_type, format_version=FORMAT_VERSION)
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
        try:
            model = cls(**model_kwargs)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{model_id}: config.json has invalid values ({e})") from None
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
        return model.eval()

    @torch.inference_mode()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """P(fake) for a float batch (B, 3, 64, 64) in [0, 1]; class 1 is fake."""
        return torch.softmax(self(x).float(), dim=1)[:, 1]

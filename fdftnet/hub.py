"""Publish checkpoints to and fetch them from the Hugging Face Hub.

`push` uploads a checkpoint's config.json, model.safetensors, training record and a freshly rendered model
card in one commit; never the `last/` resume state, optimizer state or temp files. `pull` downloads one
(checked to be an fdftnet checkpoint) into the Hub cache or a directory. Every expected failure is a
one-line HubError or CheckpointError, and the token never appears in any message, log line or file.

    plan = push("runs/sq-ft", "user/fdftnet-squeezenet", dry_run=True)   # what would be sent; no network
    push("runs/sq-ft", "user/fdftnet-squeezenet", private=True)          # token: flag, HF_TOKEN, login cache
    path = pull("user/fdftnet-squeezenet", out="models/sq-ft")
"""
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token, hf_hub_download, snapshot_download
from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
                                    OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)
from huggingface_hub.utils import validate_repo_id

from .card import ROC_NAME, render_model_card, render_roc
from .checkpoint import load_model
from .models import CheckpointError, read_config
from .models._hub import CONFIG_NAME, WEIGHTS_NAME, resolve_file

__all__ = ["HubError", "PushResult", "push", "pull", "plan_operations", "resolve_token", "source_info", "redact",
           "PUSH_FILES"]

# Files a checkpoint directory may hold that belong on the Hub; everything else (last/, optimizer.pt,
# .tmp-*, editor backups...) stays local. README.md is always re-rendered for the target repo.
PUSH_FILES = (CONFIG_NAME, WEIGHTS_NAME, "training.json", "eval.json", ROC_NAME, "calibration.json", "ood.safetensors",
              "families.json", "reliability.svg")  # the last four: verdicts' calibration, OOD bank, card data
PULL_FILES = PUSH_FILES + ("README.md",)
NO_TOKEN = "no Hub token: pass --token, set HF_TOKEN, or log in with `hf auth login`"


class HubError(RuntimeError):
    """A push or pull that cannot be done; the message is one line and never holds the token."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures raised by whichever HTTP client this huggingface_hub uses (httpx2, httpx or requests)."""
    errs: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for mod, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                       ("requests.exceptions", ("ConnectionError", "Timeout"))):
        try:
            m = __import__(mod, fromlist=list(names))
            errs += [getattr(m, n) for n in names if hasattr(m, n)]
        except ImportError:
            pass
    return tuple(errs)


_NETWORK_ERRORS = _transport_errors()
_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{30,}")  # the shape of a real Hub token


def redact(text, token: str | None = None, limit: int | None = 400) -> str:
    """`text` with `token` (and anything shaped like a Hub token) replaced by ***, cut to its first line."""
    text = str(text)
    if token:
        text = text.replace(token, "***")
    text = _TOKEN_LIKE.sub("hf_***", text)
    line = (text.strip().splitlines() or [""])[0]
    return line if limit is None else line[:limit]


def resolve_token(flag_token: str | None = None) -> str | None:
    """The Hub token: the flag, else env HF_TOKEN, else huggingface_hub's login cache (`hf auth login`)."""
    for tok in (flag_token, os.environ.get("HF_TOKEN")):
        if tok and tok.strip():
            return tok.strip()
    try:
        return get_token()
    except Exception as e:  # e.g. OIDC exchange failure when HF_OIDC_RESOURCE is set
        raise HubError(f"could not read the Hub login: {redact(e, flag_token)}") from None


def _hub_failure(e: BaseException, what: str, repo_id: str, token: str | None) -> HubError:
    """Map a huggingface_hub / HTTP exception to a one-line HubError without the token."""
    if isinstance(e, OfflineModeIsEnabled):
        return HubError(f"cannot {what} {repo_id}: offline mode is on (unset HF_HUB_OFFLINE to reach the Hub)")
    if isinstance(e, RepositoryNotFoundError):
        return HubError(f"Hub repo {repo_id!r} not found, or not accessible with this token")
    if isinstance(e, RevisionNotFoundError):
        return HubError(f"Hub repo {repo_id!r} has no such revision: {redact(e, token)}")
    if isinstance(e, LocalEntryNotFoundError):  # a subclass of EntryNotFoundError: test it first
        why = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else "the Hub cannot be reached (no network?)"
        return HubError(f"cannot {what} {repo_id}: it is not in the local Hub cache and {why}")
    if isinstance(e, EntryNotFoundError):
        return HubError(f"Hub repo {repo_id!r} is not an fdftnet model: it has no {CONFIG_NAME}")
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return HubError(f"the Hub refused the token for {repo_id} (HTTP {status}): check it has write access")
        return HubError(f"Hub error for {repo_id}: {redact(e, token)}")
    if isinstance(e, _NETWORK_ERRORS):
        return HubError(f"cannot {what} {repo_id}: the Hub cannot be reached (no network?): {redact(e, token)}")
    if isinstance(e, HFValidationError):
        return HubError(f"{repo_id!r} is not a valid Hub repo id (want USER/NAME)")
    return HubError(f"cannot {what} {repo_id}: {type(e).__name__}: {redact(e, token)}")


def _check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubError(f"{repo_id!r} is not a valid Hub repo id (want USER/NAME)") from None


# ----------------------------------------------------------------------------- push

@dataclass
class PushResult:
    """What `push` sent (or, with dry_run, would send)."""
    repo_id: str
    revision: str | None
    private: bool
    dry_run: bool
    operations: list[CommitOperationAdd] = field(repr=False)
    token_found: bool = False
    commit_url: str | None = None

    @property
    def files(self) -> list[dict]:
        """[{"path": path in repo, "size": bytes}] in upload order."""
        return [{"path": op.path_in_repo, "size": op.upload_info.size} for op in self.operations]


def plan_operations(model_dir: str | Path, repo_id: str | None = None) -> list[CommitOperationAdd]:
    """The commit operations a push of `model_dir` sends: allowed files + a model card rendered for `repo_id`.

    Raises CheckpointError when `model_dir` is not a loadable fdftnet checkpoint directory.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"no checkpoint directory {str(model_dir)!r}")
    read_config(model_dir)  # model_type and format_version checked: refuse anything else
    if not (model_dir / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{model_dir} is not an fdftnet checkpoint: it has no {WEIGHTS_NAME}")
    load_model(model_dir)  # the weights must load (shapes, finite values, threshold) before anything is sent
    roc = render_roc(model_dir)
    ops = []
    for name in PUSH_FILES:
        if name == ROC_NAME and roc is not None:
            ops.append(CommitOperationAdd(name, roc.encode("utf-8")))
        elif (model_dir / name).is_file():
            ops.append(CommitOperationAdd(name, str(model_dir / name)))
    ops.append(CommitOperationAdd("README.md", render_model_card(model_dir, repo_id).encode("utf-8")))
    return ops


def push(
        model_dir: str | Path,
        repo_id: str,
        private: bool = False,
        revision: str | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        dry_run: bool = False,
) -> PushResult:
    """Upload a checkpoint directory to the Hub repo `repo_id` (created if missing) in one commit.

    Args:
        model_dir: a checkpoint directory written by training (`fdftnet pretrain/finetune --out`).
        repo_id: "USER/NAME" (or "ORG/NAME").
        private: create the repo private (an existing repo keeps its visibility).
        revision: a branch to commit to; created from main when missing. Default: main.
        token: a Hub token; default: env HF_TOKEN, then the `hf auth login` cache.
        commit_message: default "Upload fdftnet checkpoint <dir name>".
        dry_run: only plan: return the operations without any network access.
    """
    _check_repo_id(repo_id)
    ops = plan_operations(model_dir, repo_id)
    tok = resolve_token(token)
    result = PushResult(repo_id, revision, private, dry_run, ops, token_found=tok is not None)
    if dry_run:
        return result
    if tok is None:
        raise HubError(NO_TOKEN)
    api = HfApi(token=tok)
    message = commit_message or f"Upload fdftnet checkpoint {Path(model_dir).resolve().name}"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.create_commit(repo_id, operations=ops, commit_message=message, revision=revision)
    except Exception as e:  # every failure becomes one line with the token scrubbed
        raise _hub_failure(e, "push to", repo_id, tok) from None
    result.commit_url = getattr(info, "commit_url", None) or str(info)
    return result


# ----------------------------------------------------------------------------- pull

def pull(
        repo_id: str,
        out: str | Path | None = None,
        revision: str | None = None,
        token: str | None = None,
        cache_dir: str | Path | None = None,
) -> Path:
    """Download an fdftnet checkpoint from the Hub; returns its directory (`out`, or the cached snapshot).

    Works offline (HF_HUB_OFFLINE=1) when the repo is already in the cache. The repo is checked to be an
    fdftnet checkpoint readable by this version before the weights are fetched.
    """
    if os.path.isdir(repo_id):
        raise HubError(f"{repo_id} is a local directory; `pull` takes a Hub repo id")
    _check_repo_id(repo_id)
    tok = resolve_token(token)
    hub = dict(revision=revision, cache_dir=cache_dir, token=tok)
    try:  # config.json first: refuse a repo that is not an fdftnet checkpoint before fetching weights
        config_dir = Path(hf_hub_download(repo_id, CONFIG_NAME, **hub)).parent
    except Exception as e:
        raise _hub_failure(e, "pull", repo_id, tok) from None
    try:
        read_config(config_dir)
    except CheckpointError as e:
        raise CheckpointError(redact(str(e).replace(str(config_dir), repo_id), tok)) from None
    try:
        snapshot = Path(snapshot_download(repo_id, allow_patterns=list(PULL_FILES), **hub))
    except Exception as e:
        raise _hub_failure(e, "pull", repo_id, tok) from None
    if not (snapshot / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"Hub repo {repo_id!r} is not an fdftnet model: it has no {WEIGHTS_NAME}")
    if out is None:
        return snapshot
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in PULL_FILES if (snapshot / n).is_file()]  # weights before the config that describes them
    for name in sorted(names, key=lambda n: (n != WEIGHTS_NAME, n != CONFIG_NAME)):
        tmp = out / f".{name}.{uuid.uuid4().hex}.tmp"
        shutil.copyfile(snapshot / name, tmp)  # follows the cache's symlinks to the blobs
        os.replace(tmp, out / name)
    return out


def source_info(model_id: str | Path, revision: str | None = None, **hub_kwargs) -> dict:
    """Provenance of a checkpoint to record in training.json: where it came from and which commit.

    {"base_model": id as given, "base_model_source": "local" | "hub", "base_model_revision": commit or None}
    """
    model_id = str(model_id)
    if os.path.isdir(model_id):
        return {"base_model": model_id, "base_model_source": "local", "base_model_revision": None}
    path = Path(resolve_file(model_id, CONFIG_NAME, revision=revision, **hub_kwargs))
    commit = path.parent.name if re.fullmatch(r"[0-9a-f]{40}", path.parent.name) else revision
    return {"base_model": model_id, "base_model_source": "hub", "base_model_revision": commit}

"""Results the Compare tab reads: bench-format runs and shots sweeps, from bench/results (or FDFTNET_RESULTS).

- Runs: every top-level *.json with {"runs": [{"backbone", "variant", "dataset", "shots", "seed", "metrics", ...}]}
  (a bare list is read too), plus the job records of bench.reproduce under jobs/**.json ({"key", ..., "test":
  metrics}) not already gathered into one of those files (same "key"). A run without metrics is skipped.
- Sweeps: sweep_*.json written by `fdftnet sweep --json` (docs: notes on fdftnet.sweep): {"config", "runs":
  [{"method", "k", "seed", "acc", "auroc", ...}], "summary"}.
Both become shots points {"dataset", "source", "backbone", "method", "k", "seed", "acc", "auroc"} for the
"vs shots" curves. Files are parsed once per (path, mtime).
"""
import json
import os
import re
from pathlib import Path

JOBS = "benchmark jobs (bench.reproduce)"
SESSION = "this session"
_PARSED: dict[str, tuple[float, object]] = {}


def results_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("FDFTNET_RESULTS", "bench/results"))


def _read(f: Path):
    mtime = f.stat().st_mtime
    hit = _PARSED.get(str(f))
    if hit and hit[0] == mtime:
        return hit[1]
    data = json.loads(f.read_text())
    _PARSED[str(f)] = (mtime, data)
    return data


def load_runs(root=None) -> tuple[list[dict], list[str]]:
    """(bench-format runs, problems as 'file: error') from root/*.json and root/jobs/**.json."""
    root = results_root(root)
    runs, problems, keys = [], [], set()
    files = sorted(f for f in root.glob("*.json") if not f.name.startswith("sweep_")) if root.is_dir() else []
    jobs = sorted((root / "jobs").rglob("*.json")) if (root / "jobs").is_dir() else []
    for f in files + jobs:
        try:
            data = _read(f)
            if f in jobs:  # one job record: its test metrics, unless a gathered file already had it
                if isinstance(data, dict) and data.get("key") not in keys and isinstance(data.get("test"), dict):
                    runs.append(dict(data, metrics=data["test"], source=JOBS))
                continue
            found = data.get("runs", []) if isinstance(data, dict) else data
            if not isinstance(found, list):  # another kind of result file (face_speed.json's "runs" is a count)
                continue
            new = [dict(r, source=f.name) for r in found if isinstance(r, dict) and isinstance(r.get("metrics"), dict)]
            keys |= {r.get("key") for r in new if r.get("key")}
            runs += new
        except (OSError, ValueError, AttributeError, TypeError) as e:
            problems.append(f"{f.relative_to(root)}: {type(e).__name__}")
    return runs, problems


def _sweep_dataset(config: dict) -> str:
    """The dataset a sweep ran on, by name: its data folder's name or its Hub dataset id."""
    name = config.get("dataset") or config.get("hf_dataset") or config.get("data") or "?"
    return Path(str(name).rstrip("/")).name if not config.get("hf_dataset") else str(name)


def load_sweeps(root=None) -> tuple[list[dict], list[str]]:
    """(shots points, problems) from root/sweep_*.json."""
    root = results_root(root)
    points, problems = [], []
    for f in sorted(root.glob("sweep_*.json")) if root.is_dir() else []:
        try:
            data = _read(f)
            cfg = data.get("config") or {}
            backbone = cfg.get("backbone") or Path(str(cfg.get("init_from") or "?")).name
            points += [{"dataset": _sweep_dataset(cfg), "source": f.name, "backbone": backbone,
                        "method": r["method"], "k": int(r["k"]), "seed": r.get("seed"), "acc": r.get("acc"),
                        "auroc": r.get("auroc")} for r in data.get("runs", [])]
        except (OSError, ValueError, AttributeError, TypeError, KeyError) as e:
            problems.append(f"{f.name}: {type(e).__name__}")
    return points, problems


def _method(variant: str) -> str:
    """bench.reproduce's ablation rows shots-100, shots-250 ... are one method at several k."""
    return re.sub(r"^shots-\d+$", "fdftnet (shots ablation)", str(variant))


def run_points(runs: list[dict]) -> list[dict]:
    """Shots points from bench-format runs that were trained on k images per class."""
    return [{"dataset": str(r.get("dataset")), "source": SESSION if r.get("source") == SESSION else JOBS,
             "backbone": r.get("backbone", "?"), "method": _method(r.get("variant", "?")), "k": int(r["shots"]),
             "seed": r.get("seed"), "acc": r["metrics"].get("acc"), "auroc": r["metrics"].get("auroc")}
            for r in runs if r.get("shots") is not None]

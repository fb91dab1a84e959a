"""Re-select a finished run's checkpoint by another monitor, when that monitor's best epoch is the run's last one.

    python -m bench.reselect RUN_DIR --monitor val_auroc

A run keeps two things: its best epoch by `monitor` (OUT/config.json + model.safetensors) and its last epoch
(OUT/last/). With a one-cycle schedule the validation loss can bottom out early while accuracy and AUROC keep
rising (the model grows confident as the lr decays). This turns the last epoch into the run's checkpoint, as a
run with `--monitor MONITOR` would have saved it, and refuses unless:
- the recorded history says the last epoch is the best by MONITOR, and
- the last weights, scored again on the run's own validation images, give the validation loss recorded for that
  epoch (to 1e-5): they are that epoch's weights, on that data.
The threshold is then calibrated on those validation scores by today's rule, as training does; training.json
records the new monitor and what was re-selected.
"""
import argparse
import json
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from fdftnet.card import write_model_card
from fdftnet.checkpoint import load_model, save_checkpoint
from fdftnet.metrics import THRESHOLD_RULE, best_threshold, compute_metrics, jsonable
from fdftnet.train import TrainConfig, _score, load_data, validate


def reselect(out: Path, monitor: str) -> dict:
    out = Path(out)
    training = json.loads((out / "training.json").read_text())
    state = json.loads((out / "last" / "state.json").read_text())
    history = state["history"]
    last = history[-1]
    best = max(history, key=lambda h: _score(h, monitor))
    if best["epoch"] != last["epoch"]:
        raise ValueError(f"{out}: the best epoch by {monitor} is {best['epoch']}, not the last ({last['epoch']}); "
                         f"only the last epoch's weights are kept")
    cfg = TrainConfig.from_dict(training["train_config"])
    _, val = load_data(cfg)
    model = load_model(out)
    model.load_state_dict(load_file(str(out / "last" / "model.safetensors")))
    scored, y, p = validate(model, val, "cpu", cfg.batch_size)
    if abs(scored["val_loss"] - last["val_loss"]) > 1e-5:
        raise ValueError(f"{out}: last/ scores validation loss {scored['val_loss']:.6f}, not the {last['val_loss']:.6f} "
                         f"recorded for epoch {last['epoch']}; not re-selected")
    threshold, _ = best_threshold(y, p)
    model.threshold.fill_(threshold)
    old_epoch = training["best_epoch"]
    training.update(best_epoch=last["epoch"], validation=jsonable(compute_metrics(y, p, threshold=threshold)),
                    threshold_rule=THRESHOLD_RULE, history=history,
                    train_config={**training["train_config"], "monitor": monitor},
                    reselected={"from_epoch": old_epoch, "from_monitor": training["train_config"]["monitor"],
                                "monitor": monitor, "at": time.strftime("%Y-%m-%d %H:%M:%S")})
    save_checkpoint(model, out, extra_json={"training.json": training})
    write_model_card(out)
    state.update(best_epoch=last["epoch"], best_score=_score(last, monitor), bad_epochs=0)
    (out / "last" / "state.json").write_text(json.dumps(state, indent=2, allow_nan=False))
    return {"out": str(out), "from_epoch": old_epoch, "to_epoch": last["epoch"], "val_loss": scored["val_loss"],
            "val_acc": scored["val_acc"], "val_auroc": scored["val_auroc"], "threshold": threshold}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="+", help="run folders (a checkpoint with last/)")
    ap.add_argument("--monitor", choices=["val_acc", "val_auroc"], required=True)
    args = ap.parse_args(argv)
    for run in args.run:
        try:
            print(json.dumps(reselect(Path(run), args.monitor)))
        except (ValueError, FileNotFoundError) as e:
            print(f"not re-selected: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

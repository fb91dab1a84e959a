"""Measure the training crops' framing and check the face path against the direct path on dfdc64/test.

1. Framing: each test crop (64 px) is upscaled to 256 px and pasted into a 640x480 "photo" (its own
   blurred enlargement as background, so hair and shoulders continue past the crop's edge); MTCNN runs
   on it (`fdftnet.faces._detect`), and the box -> crop relation is fitted for several box-size measures
   (box width, height, sqrt(w*h), eye distance, ...): crop side = scale x measure, crop centre = box
   centre + (dx, dy) x measure, each the median over the images. The measure whose fitted square
   overlaps the true crop best (median IoU) wins; `fdftnet.faces.FRAMING` holds its figures.
2. Scores: the shipped default FDFtNet's P(fake) on (a) the original crops (direct path), (b) the crop
   `find_faces` cuts from the same photo (face path) and (c) the true square cut from the 256 px upscale
   (resampling only: what is lost on the way 64 -> 256 -> 64 without any framing error).

    nice -n 15 .venv/bin/python -m bench.face_framing                # 1000 + 1000 fits, 400 + 400 scores
    nice -n 15 .venv/bin/python -m bench.face_framing --fit 200 --score 100   # a quick look
Writes bench/results/face_framing.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image, ImageFilter

from fdftnet import faces
from fdftnet.checkpoint import load_model
from fdftnet.data import list_image_folder, load_image
from fdftnet.inference import predict_arrays
from fdftnet.metrics import compute_metrics

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "dfdc64")
OUT = os.path.join(os.path.dirname(__file__), "results", "face_framing.json")
FACE = 256  # upscaled crop side: MTCNN finds the benchmark's tight faces reliably from ~100 px up
CANVAS = (640, 480)  # (W, H) of the synthetic photo
LEFT, TOP = (CANVAS[0] - FACE) // 2, (CANVAS[1] - FACE) // 2


# ----------------------------------------------------------------------------------------------
# synthetic photos


def make_photo(crop: np.ndarray) -> np.ndarray:
    """(64, 64, 3) crop -> (480, 640, 3) photo: 256 px face on its own blurred enlargement."""
    W, H = CANVAS
    face = Image.fromarray(crop).resize((FACE, FACE), Image.Resampling.BICUBIC)
    bg = Image.fromarray(crop).resize((W, W), Image.Resampling.BICUBIC)
    bg = bg.crop((0, (W - H) // 2, W, (W + H) // 2)).filter(ImageFilter.GaussianBlur(12))
    bg.paste(face, (LEFT, TOP))
    return np.asarray(bg)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) boxes with (N, 4) or (4,) boxes."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


TRUE = np.array([LEFT, TOP, LEFT + FACE, TOP + FACE], dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# 1. framing


def measures(box: np.ndarray, lm: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate face-size measures (N,) from boxes (N, 4) and landmarks (N, 5, 2)."""
    w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    eyes = (lm[:, 0] + lm[:, 1]) / 2  # (N, 2)
    mouth = (lm[:, 3] + lm[:, 4]) / 2
    return {
        "width": w, "height": h, "sqrt_wh": np.sqrt(w * h), "max_wh": np.maximum(w, h),
        "eye_dist": np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1),
        "eye_mouth": np.linalg.norm(mouth - eyes, axis=1),
    }


def centres(box: np.ndarray, lm: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate face centres (N, 2): the box centre or the mean of the 5 landmarks."""
    return {"box": np.stack([(box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2], 1),
            "landmarks": lm.mean(1)}


def fit(box, lm, true_side, true_c) -> dict:
    """Per measure x centre: median scale/dx/dy, spread of log(scale), IoU of the fitted square."""
    out = {}
    for cname, c in centres(box, lm).items():
        cx, cy = c[:, 0], c[:, 1]
        for name, m in measures(box, lm).items():
            scale, dx, dy = true_side / m, (true_c[0] - cx) / m, (true_c[1] - cy) / m
            s, ox, oy = float(np.median(scale)), float(np.median(dx)), float(np.median(dy))
            side, qx, qy = s * m, cx + ox * m, cy + oy * m
            pred = np.stack([qx - side / 2, qy - side / 2, qx + side / 2, qy + side / 2], 1)
            ov = iou(pred, TRUE)
            logs = np.log(scale)
            out[f"{name}@{cname}"] = {
                "size": name, "centre": cname, "scale": s, "dx": ox, "dy": oy,
                "log_scale_mad": float(np.median(np.abs(logs - np.median(logs)))),
                "iou_median": float(np.median(ov)), "iou_p10": float(np.percentile(ov, 10)),
                "iou_mean": float(ov.mean())}
    return out


def detect_all(crops: np.ndarray) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """Per crop: the detection that overlaps the pasted face best (IoU > 0.3) or None."""
    found, boxes, lms, scores = [], [], [], []
    for c in crops:
        b, p, lm, _ = faces._detect(make_photo(c), faces.MIN_FACE)
        ov = iou(b, TRUE) if len(b) else np.zeros(0)
        if len(b) and ov.max() > 0.3:
            i = int(np.argmax(ov))
            found.append(True), boxes.append(b[i]), lms.append(lm[i]), scores.append(p[i])
        else:
            found.append(False)
    return found, np.array(boxes).reshape(-1, 4), np.array(lms).reshape(-1, 5, 2), np.array(scores)


# ----------------------------------------------------------------------------------------------
# 2. scores: direct vs face path vs resampling only


def score_paths(model, crops: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """ACC/AUROC of the three paths; the face path falls back to nothing (counted) when no face."""
    face_crops, got, resampled, notes = [], [], [], {}
    for c in crops:
        photo = make_photo(c)
        res = faces.find_faces(photo)
        if res.message:
            notes[res.message] = notes.get(res.message, 0) + 1
        got.append(bool(res.faces))
        if res.faces:
            face_crops.append(res.faces[0].crop)
        resampled.append(np.asarray(Image.fromarray(photo).resize(
            (64, 64), Image.Resampling.LANCZOS, box=tuple(TRUE))))
    got = np.array(got)
    p_direct = predict_arrays(model, crops)
    p_resampled = predict_arrays(model, np.stack(resampled))
    p_face = predict_arrays(model, np.stack(face_crops)) if face_crops else np.zeros(0)

    def summary(y, p):
        m = compute_metrics(y, p, threshold=threshold)
        return {k: m[k] for k in ("n", "acc", "auroc", "acc_real", "acc_fake")}

    y_got = labels[got]
    return {
        "threshold": threshold, "n": int(len(crops)), "faces_found": int(got.sum()), "messages": notes,
        "direct": summary(labels, p_direct),
        "direct_on_found": summary(y_got, p_direct[got]),  # same images as the face path
        "face_path": summary(y_got, p_face),
        "resampled_only": summary(labels, p_resampled),
        "face_vs_direct": {
            "mean_abs_dp": float(np.abs(p_face - p_direct[got]).mean()),
            "median_abs_dp": float(np.median(np.abs(p_face - p_direct[got]))),
            "pearson_r": float(np.corrcoef(p_face, p_direct[got])[0, 1]),
            "same_verdict": float(((p_face >= threshold) == (p_direct[got] >= threshold)).mean()),
        },
        "resampled_vs_direct_mean_abs_dp": float(np.abs(p_resampled - p_direct).mean()),
    }


# ----------------------------------------------------------------------------------------------


def load_split(n: int, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n crops per class after the first `skip` of a seeded shuffle: fit and score sets are disjoint."""
    pairs = list_image_folder(ROOT, "test")
    rng = np.random.default_rng(0)
    picked = []
    for label in (0, 1):
        members = [p for p in pairs if p[1] == label]
        picked += [members[i] for i in rng.permutation(len(members))[skip:skip + n]]
    return np.stack([load_image(p) for p, _ in picked]), np.array([y for _, y in picked])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", type=int, default=1000, help="crops per class for the framing fit")
    ap.add_argument("--score", type=int, default=400, help="crops per class for the score comparison")
    ap.add_argument("--checkpoint", help="default: checkpoints/default.json's fdftnet")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)  # the CPUs are shared with training runs
    t0 = time.time()

    crops, labels = load_split(args.fit)
    found, box, lm, score = detect_all(crops)
    found = np.array(found)
    true_c = np.array([LEFT + FACE / 2, TOP + FACE / 2])
    cands = fit(box, lm, FACE, true_c)
    best = max(cands, key=lambda k: cands[k]["iou_median"])
    y = labels[found]
    per_class = {c: fit(box[y == i], lm[y == i], FACE, true_c)[best]
                 for i, c in enumerate(("real", "fake"))}
    fill = (box[:, 2] - box[:, 0]) / FACE  # box width / crop width
    big = np.stack([np.asarray(Image.fromarray(c).resize((FACE, FACE), Image.Resampling.BICUBIC))
                    for c in crops[: min(200, len(crops))]])
    framing = {
        "n": int(len(crops)), "detected": int(found.sum()), "detection_rate": float(found.mean()),
        "detection_rate_real": float(found[labels == 0].mean()),
        "detection_rate_fake": float(found[labels == 1].mean()),
        "score_p01": float(np.percentile(score, 1)), "score_min": float(score.min()),
        "best": best, "fitted": {k: cands[best][k] if k in ("size", "centre") else round(cands[best][k], 3)
                   for k in ("size", "centre", "scale", "dx", "dy")},
        "candidates": cands, "per_class": per_class,
        "box_width_over_crop": {q: float(np.percentile(fill, int(q[1:]))) for q in ("p01", "p05", "p50", "p95")},
        "is_face_crop_on_256px_crops": float(np.mean([faces.is_face_crop(b) for b in big])),
    }
    print(json.dumps({k: framing[k] for k in ("detection_rate", "best", "fitted", "box_width_over_crop")}))
    print({k: round(v["iou_median"], 3) for k, v in cands.items()})

    # score with the fitted framing (faces.FRAMING may lag behind a re-measurement)
    shipped = dict(faces.FRAMING)
    faces.FRAMING.update(framing["fitted"])
    ckpt = args.checkpoint or os.path.join(
        "checkpoints", json.load(open(os.path.join("checkpoints", "default.json")))["fdftnet"])
    model = load_model(ckpt)
    crops, labels = load_split(args.score, skip=args.fit)
    scores = score_paths(model, crops, labels, float(model.threshold))
    print(json.dumps({k: scores[k] for k in ("faces_found", "direct", "face_path", "resampled_only")}))

    result = {"framing": framing, "framing_shipped_in_faces_py": shipped,
              "scores": {"checkpoint": ckpt, **scores},
              "setup": {"face_px": FACE, "canvas": CANVAS, "background": "blurred enlargement of the crop",
                        "fit_per_class": args.fit, "score_per_class": args.score,
                        "min_score": faces.MIN_SCORE, "seconds": round(time.time() - t0)}}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()

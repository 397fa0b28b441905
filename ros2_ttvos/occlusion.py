"""Occlusion and re-appearance study on the hold-out train sequences (``ttvos-occlusion``).

    ttvos-occlusion --out out/occlusion [--train-config config/train.yaml] [--weights W]

The tracker's ``hold_when_lost`` policies are compared on the same frames: what an object keeps
while it is lost (confidence below ``--threshold``): ``state`` (all of it), ``template`` (the
long-term template and usual area) or ``none`` (everything follows every frame).
Each hold-out sequence is run as recorded (natural losses: runs of frames with confidence below
the threshold), and with a synthetic full occlusion: for ``length`` frames starting at 25, 50 and
75 % of the sequence, a grey box covers the object's bounding box and the ground truth is empty.
An occlusion counts as recovered when J >= 0.5 on a frame within ``window`` frames after the
object is visible again. DAVIS16 val is never used: the sequences are the training config's
hold-out, and a sequence outside the train list is refused.

Writes ``OUT/occlusion.json``, ``OUT/occlusion.md`` (the table) and ``OUT/confidence.png``.
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from ros2_ttvos import metrics
from ros2_ttvos.data.davis import Davis, DavisSequence
from ros2_ttvos.evaluate import git_commit
from ros2_ttvos.schedule import load_config
from ros2_ttvos.tracker import HOLD_POLICIES, Tracker

LOG = logging.getLogger("ttvos-occlusion")
OCCLUDER_GREY = 124
STARTS = (0.25, 0.5, 0.75)


def occlude(image: np.ndarray, mask: np.ndarray, margin: float = 0.15) -> np.ndarray:
    """``image`` with a grey box over the bounding box of ``mask``, grown by ``margin`` per side."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return image
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    top, bottom = max(0, int(ys.min() - margin * h)), min(mask.shape[0], int(ys.max() + margin * h) + 1)
    left, right = max(0, int(xs.min() - margin * w)), min(mask.shape[1], int(xs.max() + margin * w) + 1)
    out = image.copy()
    out[top:bottom, left:right] = OCCLUDER_GREY
    return out


def run_clip(tracker: Tracker, images: List[np.ndarray], truth: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Track object 1 from frame 0; per-frame confidence and J (frame 0 is the given mask)."""
    tracker.reset()
    tracker.add_objects(images[0], truth[0])
    confidence, labels = [1.0], [truth[0]]
    for image in images[1:]:
        result = tracker.step(image)
        confidence.append(result.confidences.get(1, 0.0))
        labels.append(result.labels)
    return np.array(confidence), metrics.region_similarity(np.stack(labels) == 1, truth == 1)


def lost_events(confidence: np.ndarray, jaccard: np.ndarray, threshold: float) -> List[Dict[str, int]]:
    """Runs of frames below ``threshold``; each says whether the object was picked up again later
    (confidence back at or above the threshold with J >= 0.5)."""
    events, index = [], 1
    while index < len(confidence):
        if confidence[index] >= threshold:
            index += 1
            continue
        end = index
        while end < len(confidence) and confidence[end] < threshold:
            end += 1
        later = [t for t in range(end, len(confidence)) if confidence[t] >= threshold and jaccard[t] >= 0.5]
        events.append({"start": index, "frames": end - index, "picked_up_at": later[0] if later else -1})
        index = end
    return events


def occlusion_trial(
    tracker: Tracker,
    images: List[np.ndarray],
    truth: np.ndarray,
    start: int,
    length: int,
    window: int,
    threshold: float,
) -> Dict[str, float]:
    """One synthetic occlusion of frames [start, start + length); confidence < threshold = lost."""
    end = min(len(images), start + length)
    images = [occlude(im, truth[t]) if start <= t < end else im for t, im in enumerate(images)]
    truth = truth.copy()
    truth[start:end] = 0
    confidence, jaccard = run_clip(tracker, images, truth)
    after = jaccard[end : end + window]
    recovered = np.nonzero(after >= 0.5)[0]
    return {
        "start": start,
        "end": end,
        "recovered": bool(len(recovered)),
        "frames_to_recover": int(recovered[0]) if len(recovered) else -1,
        "reported_lost": float(np.mean(confidence[start:end] < threshold)),
        "J_during": float(np.mean(jaccard[start:end])),
        "J_after": float(np.mean(jaccard[end:])) if end < len(jaccard) else float("nan"),
        "confidence": confidence.round(4).tolist(),
    }


def study(
    trackers: Dict[str, Tracker], sequences: List[DavisSequence], threshold: float, length: int, window: int
) -> Dict:
    """Natural and synthetic-occlusion results of every policy on every sequence."""
    results = {name: {"natural": {}, "occlusion": {}} for name in trackers}
    bar = tqdm(total=len(trackers) * len(sequences) * (1 + len(STARTS)), desc="occlusion", unit="run")
    for sequence in sequences:
        images = list(sequence.images())
        truth = np.stack([(sequence.mask(t) > 0).astype(np.uint8) for t in range(len(sequence))])
        for name, tracker in trackers.items():
            confidence, jaccard = run_clip(tracker, images, truth)
            results[name]["natural"][sequence.name] = {
                "J_mean": float(np.mean(jaccard[1:-1])),
                "lost_events": lost_events(confidence, jaccard, threshold),
            }
            bar.update(1)
            trials = []
            for fraction in STARTS:
                start = int(fraction * len(images))
                trials.append(occlusion_trial(tracker, images, truth, start, length, window, threshold))
                bar.update(1)
            results[name]["occlusion"][sequence.name] = trials
    bar.close()
    return results


def summary(results: Dict) -> Dict[str, Dict[str, float]]:
    """Per policy: recovery rate and timing, J around the occlusion, natural losses."""
    out = {}
    for name, policy in results.items():
        trials = [t for seq in policy["occlusion"].values() for t in seq]
        events = [e for seq in policy["natural"].values() for e in seq["lost_events"]]
        recovered = [t["frames_to_recover"] for t in trials if t["recovered"]]
        out[name] = {
            "trials": len(trials),
            "recovered": len(recovered),
            "mean_frames_to_recover": float(np.mean(recovered)) if recovered else float("nan"),
            "reported_lost_during": float(np.mean([t["reported_lost"] for t in trials])),
            "J_during": float(np.mean([t["J_during"] for t in trials])),
            "J_after": float(np.nanmean([t["J_after"] for t in trials])),
            "natural_J": float(np.mean([seq["J_mean"] for seq in policy["natural"].values()])),
            "natural_lost_events": len(events),
            "natural_picked_up": sum(e["picked_up_at"] >= 0 for e in events),
        }
    return out


def markdown_table(stats: Dict[str, Dict[str, float]], length: int, window: int) -> str:
    lines = [
        f"| policy | recovered (J >= 0.5 within {window} frames) | frames to recover | reported lost while "
        f"hidden | J while hidden | J after | natural: J | natural: lost / picked up again |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in stats.items():
        lines.append(
            f"| {name} | {s['recovered']} / {s['trials']} | {s['mean_frames_to_recover']:.1f} "
            f"| {100 * s['reported_lost_during']:.0f} % | {100 * s['J_during']:.1f} | {100 * s['J_after']:.1f} "
            f"| {100 * s['natural_J']:.1f} | {s['natural_lost_events']} / {s['natural_picked_up']} |"
        )
    lines.append("")
    lines.append(f"Synthetic occlusion: {length} frames, grey box over the object's bounding box (+15 % per side).")
    return "\n".join(lines) + "\n"


def plot_confidence(results: Dict, path: Path) -> None:
    """Confidence through the middle occlusion of each sequence, one panel per sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(results.values()))["occlusion"])
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    for ax, sequence in zip(axes[0], names, strict=True):
        for policy, data in results.items():
            trial = data["occlusion"][sequence][len(STARTS) // 2]
            ax.plot(trial["confidence"], label=policy)
        ax.axvspan(trial["start"], trial["end"], color="grey", alpha=0.3, label="occluded")
        ax.set(title=sequence, xlabel="frame", ylabel="confidence", ylim=(0, 1.05))
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-occlusion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-config", type=Path, default=Path("config/train.yaml"), help="data and hold-out")
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the shipped weights)")
    parser.add_argument("--backend", default="auto", help="torch, onnxruntime, openvino or auto")
    parser.add_argument("--threads", type=int, help="CPU threads of the backend")
    parser.add_argument("--internal-size", type=int, default=480, help="processing short side")
    parser.add_argument("--threshold", type=float, default=0.5, help="confidence below it = lost")
    parser.add_argument("--policies", nargs="+", choices=HOLD_POLICIES, default=list(HOLD_POLICIES))
    parser.add_argument("--length", type=int, default=10, help="frames of each synthetic occlusion")
    parser.add_argument("--window", type=int, default=10, help="frames after it to be picked up again")
    parser.add_argument(
        "--search-region", action=argparse.BooleanOptionalAction, default=True, help="see Tracker (default: on)"
    )
    parser.add_argument(
        "--region-state", action=argparse.BooleanOptionalAction, default=False, help="see Tracker (default: off)"
    )
    parser.add_argument("--precision", default="auto", help="see Tracker.from_pretrained")
    parser.add_argument("--out", type=Path, default=Path("out/occlusion"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        data = load_config(args.train_config)["data"]
        train_names = Path(data["davis_train_list"]).read_text().split()
        outside = [name for name in data["holdout"] if name not in train_names]
        if outside:
            raise ValueError(f"{outside} are not training sequences: this study never runs on val")
        davis = Davis(data["davis_root"], 2016, resolution=data["resolution"], sequences=data["holdout"])
        options = {"backend": args.backend, "threads": args.threads, "precision": args.precision}
        base = Tracker.from_pretrained(args.weights, **options)
        trackers = {
            p: Tracker(base.backend, args.internal_size, args.threshold, p, args.search_region, args.region_state)
            for p in args.policies
        }
        sequences = [davis.sequence(n) for n in data["holdout"]]
        results = study(trackers, sequences, args.threshold, args.length, args.window)
    except (ValueError, OSError) as error:
        LOG.error("%s", error)
        return 1
    stats = summary(results)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"summary": stats, "results": results, "args": {k: str(v) for k, v in vars(args).items()}}
    report["git_commit"] = git_commit()
    (args.out / "occlusion.json").write_text(json.dumps(report, indent=2))
    table = markdown_table(stats, args.length, args.window)
    (args.out / "occlusion.md").write_text(table)
    plot_confidence(results, args.out / "confidence.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

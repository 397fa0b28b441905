"""Offline evaluation on DAVIS (``ttvos-eval``): run the Tracker over sequences and score them.

    ttvos-eval --davis ../shared/data/DAVIS --year 2016 --split val --resolution 480p --out DIR
    ttvos-eval --score PRED_DIR --davis ../shared/data/DAVIS --out DIR    # score existing PNGs

Writes ``DIR/<seq>/<frame>.png`` (palette PNGs), ``DIR/per_sequence.csv`` and ``DIR/summary.json``.
Timing covers image in to labels out (``Tracker.step``); reading frames from disk is reported
separately as ``io_ms_per_frame``.
"""

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from ros2_ttvos import checkpoint, metrics
from ros2_ttvos.data.box_samples import object_clicks
from ros2_ttvos.data.davis import Davis, DavisSequence, read_mask, write_mask
from ros2_ttvos.prompt_crops import jittered, mask_box
from ros2_ttvos.prompts import METHOD_CHOICES, resolve_method
from ros2_ttvos.tracker import HOLD_POLICIES, Tracker

LOG = logging.getLogger("ttvos-eval")
CSV_FIELDS = [
    "sequence", "object", "J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay", "frames", "fps",
    *metrics.FAILURE_COLUMNS, "visible_frames",
]  # fmt: skip


@dataclass
class SequenceRun:
    """Predicted labels of a whole sequence and how long the tracker took."""

    labels: np.ndarray  # (T, H, W) uint8
    truth: np.ndarray  # (T, H, W) uint8, frames without annotation are all zero
    object_ids: List[int]
    step_seconds: List[float] = field(default_factory=list)  # one per Tracker.step call
    io_seconds: float = 0.0  # reading frames and masks from disk
    given_j: Dict[int, float] = field(default_factory=dict)  # J of what each object was started from


@dataclass(frozen=True)
class PromptInit:
    """Start each object from a prompt made from its first mask, turned into a mask by ``method``:
    ``kind`` "box": its bounding box, moved and resized by up to ``jitter`` of its size per side;
    "click": one positive click inside it, drawn towards its interior as people click
    (``data.box_samples.object_clicks``). Seeded per sequence."""

    kind: str = "box"
    method: Optional[str] = None  # None or auto: see prompts.resolve_method
    jitter: float = 0.0
    seed: int = 0

    def prompts(self, mask: np.ndarray, ids: List[int], rng) -> Tuple[Optional[Dict], Optional[Dict]]:
        """The (boxes, clicks) of the objects ``ids`` of the label image ``mask``, one of them None."""
        if self.kind == "click":
            return None, {k: object_clicks(mask == k, 1, rng) for k in ids}
        return {k: jittered(mask_box(mask == k), rng, self.jitter, mask.shape) for k in ids}, None

    def labels(self, tracker: Tracker, image: np.ndarray, mask: np.ndarray, ids: List[int], rng) -> np.ndarray:
        """The label image ``tracker`` makes from the prompts of ``mask``'s objects ``ids``."""
        return tracker.prompt_mask(image, *self.prompts(mask, ids, rng), self.method)


def track_sequence(
    tracker: Tracker, sequence: DavisSequence, progress=None, prompt_init: Optional[PromptInit] = None
) -> SequenceRun:
    """Track every object of ``sequence`` from its first annotated frame.

    The first-frame objects are added with ``add_objects`` (or from prompts, ``prompt_init``);
    objects that first appear later are added on the frame they appear in (what they were given
    is then that frame's output for them). ``SequenceRun.given_j`` has the J of what each object
    was given against its annotation (1.0 for masks).
    """
    tracker.reset()
    labels, truth, step_seconds = [], [], []
    given_j: Dict[int, float] = {}
    rng = np.random.default_rng([prompt_init.seed, sum(map(ord, sequence.name))]) if prompt_init else None
    seen: set = set()
    io_seconds = 0.0
    for index in range(len(sequence)):
        start = time.perf_counter()
        image = sequence.image(index)
        mask = sequence.mask(index)
        if mask is None:
            mask = np.zeros(image.shape[:2], np.uint8)
        io_seconds += time.perf_counter() - start
        output = np.zeros(image.shape[:2], np.uint8)
        if tracker.object_ids:
            start = time.perf_counter()
            output = tracker.step(image).labels
            step_seconds.append(time.perf_counter() - start)
        new_ids = [int(v) for v in np.unique(mask) if v != 0 and int(v) not in seen]
        if new_ids:
            given = np.where(np.isin(mask, new_ids), mask, 0).astype(np.uint8)
            if prompt_init is not None:  # from each object's (jittered) bounding box, or a click
                given = prompt_init.labels(tracker, image, mask, new_ids, rng)
            tracker.add_objects(image, given)
            for k in new_ids:
                given_j[k] = float(metrics.region_similarity((given == k)[None], (mask == k)[None])[0])
            output = np.where(given > 0, given, output)
            seen.update(new_ids)
        labels.append(output)
        truth.append(mask)
        if progress is not None:
            progress.update(1)
    return SequenceRun(np.stack(labels), np.stack(truth), sorted(seen), step_seconds, io_seconds, given_j)


def summarise(
    scores: List[Dict[int, metrics.ObjectScores]], failures: List[Dict[int, metrics.FrameFailures]]
) -> Dict[str, float]:
    """Dataset statistics: the mean over all objects of all sequences of each per-object value;
    identity switches, lost and spilled frames summed over all objects, and their shares of the
    frames objects are visible; frames objects are back in view after they were hidden, and the
    share of them on which they were lost (``lost_on_return_rate``)."""
    objects = [s for seq in scores for s in seq.values()]
    counted = [s for seq in failures for s in seq.values()]
    visible = sum(s.frames for s in counted)
    out = {"id_switches": sum(s.switches for s in counted), "n_objects": len(objects)}
    out["id_switch_rate"] = out["id_switches"] / visible if visible else 0.0
    for kind in ("lost", "spilled"):
        out[f"{kind}_frames"] = sum(getattr(s, kind) for s in counted)
        out[f"{kind}_rate"] = out[f"{kind}_frames"] / visible if visible else 0.0
    out["returned_frames"] = sum(s.returned for s in counted)
    out["lost_on_return"] = sum(s.lost_on_return for s in counted)
    out["lost_on_return_rate"] = out["lost_on_return"] / out["returned_frames"] if out["returned_frames"] else 0.0
    for measure in ("J", "F"):
        stats = [getattr(s, f"{measure}_stats") for s in objects]
        out[f"{measure}_mean"] = float(np.mean([s.mean for s in stats]))
        out[f"{measure}_recall"] = float(np.mean([s.recall for s in stats]))
        out[f"{measure}_decay"] = float(np.mean([s.decay for s in stats]))
    out["JF_mean"] = (out["J_mean"] + out["F_mean"]) / 2
    return out


def evaluate_sequences(
    tracker: Tracker,
    sequences: List[DavisSequence],
    between: Optional[Callable[[], Any]] = None,
    desc: Optional[str] = None,
) -> Dict[str, float]:
    """Track and score ``sequences``; returns the dataset statistics (hold-out model selection).
    ``between`` is called after each sequence (the trainer adjusts its threads there); with
    ``desc``, a progress bar of that name counts the frames."""
    runs = []
    total = sum(len(s) for s in sequences)
    with tqdm(total=total, desc=desc, unit="frame", disable=desc is None) as progress:
        for sequence in sequences:
            runs.append(track_sequence(tracker, sequence, progress))
            if between is not None:
                between()
    return summarise(
        [metrics.sequence_scores(r.labels, r.truth, r.object_ids) for r in runs],
        [metrics.frame_failures(r.labels, r.truth, r.object_ids) for r in runs],
    )


def _csv_rows(name: str, scores, failures, frames: int, fps: Optional[float]):
    for object_id, s in scores.items():
        yield {
            "sequence": name, "object": object_id, "frames": frames, "fps": "" if fps is None else round(fps, 2),
            **failures[object_id].columns(), "visible_frames": failures[object_id].frames,
            "J_mean": s.J_stats.mean, "J_recall": s.J_stats.recall, "J_decay": s.J_stats.decay,
            "F_mean": s.F_stats.mean, "F_recall": s.F_stats.recall, "F_decay": s.F_stats.decay,
        }  # fmt: skip


def git_commit() -> str:
    """Short hash of the checked-out commit of this package, or 'unknown'."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_evaluation(args: argparse.Namespace) -> Dict:
    davis = Davis(args.davis, args.year, args.split, args.resolution, args.sequences)
    sequences = list(davis)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    tracker = None
    if args.score is None:
        tracker = Tracker.from_pretrained(
            args.weights,
            args.device,
            args.backend,
            threads=args.threads,
            precision=args.precision,
            internal_size=args.internal_size,
            hold_when_lost=args.hold_when_lost,
            search_region=args.search_region,
            region_state=args.region_state,
        )
    all_scores, all_failures, rows = [], [], []
    given_j: List[float] = []
    prompt_init = None
    if args.init != "mask":
        prompt_init = PromptInit(args.init, args.box_method, args.box_jitter, args.box_seed)
    step_seconds: List[float] = []
    io_seconds = 0.0
    n_frames = sum(len(s) for s in sequences)
    with tqdm(total=n_frames, desc="score" if tracker is None else "track", unit="frame") as progress:
        for sequence in sequences:
            if tracker is None:
                labels = np.stack(
                    [read_mask(args.score / sequence.name / f"{n}.png", False) for n in sequence.frame_names]
                )
                masks = [sequence.mask(i) for i in range(len(sequence))]
                truth = np.stack([m if m is not None else np.zeros(labels.shape[1:], np.uint8) for m in masks])
                run = SequenceRun(labels, truth, [int(v) for v in np.unique(truth) if v != 0])
                progress.update(len(sequence))
            else:
                run = track_sequence(tracker, sequence, progress, prompt_init)
                given_j += list(run.given_j.values())
                for name, labels in zip(sequence.frame_names, run.labels, strict=True):
                    write_mask(out / sequence.name / f"{name}.png", labels)
                if args.overlay:
                    write_overlay(sequence, run.labels, out / "overlays" / f"{sequence.name}.mp4")
            scores = metrics.sequence_scores(run.labels, run.truth, run.object_ids)
            failures = metrics.frame_failures(run.labels, run.truth, run.object_ids)
            fps = len(run.step_seconds) / sum(run.step_seconds) if run.step_seconds else None
            rows += list(_csv_rows(sequence.name, scores, failures, len(sequence), fps))
            all_scores.append(scores)
            all_failures.append(failures)
            step_seconds += run.step_seconds
            io_seconds += run.io_seconds
    with open(out / "per_sequence.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(all_scores, all_failures)
    timed = tracker is not None and step_seconds
    summary.update(
        fps=len(step_seconds) / sum(step_seconds) if timed else None,
        ms_per_frame=1000 * sum(step_seconds) / len(step_seconds) if timed else None,
        io_ms_per_frame=1000 * io_seconds / n_frames if tracker is not None else None,
        n_sequences=len(sequences),
        n_frames=n_frames,
        device=tracker.device if tracker else None,
        backend=tracker.backend.name if tracker else None,
        precision=getattr(tracker.backend, "precision", "fp32") if tracker else None,
        internal_size=args.internal_size if tracker else None,
        hold_when_lost=args.hold_when_lost if tracker else None,
        search_region=tracker.search_region if tracker else None,
        region_state=tracker.region_state if tracker and tracker.search_region else None,
        init=args.init if tracker else None,
        box_method=resolve_method(tracker, args.box_method) if prompt_init else None,
        box_jitter=args.box_jitter if prompt_init else None,
        given_J_mean=float(np.mean(given_j)) if given_j else None,  # J of the masks tracking started from
        threads=args.threads if tracker else None,
        weights=str(args.weights or checkpoint.SHIPPED_WEIGHTS) if tracker else None,
        predictions=str(args.score) if tracker is None else str(out),
        git_commit=git_commit(),
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def write_overlay(sequence: DavisSequence, labels: np.ndarray, path: Path) -> None:
    from ros2_ttvos.visualize import VideoWriter, overlay

    with VideoWriter(path, fps=15) as writer:
        for index, frame_labels in enumerate(labels):
            writer.write(overlay(sequence.image(index), frame_labels))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS root folder")
    parser.add_argument("--year", type=int, default=2016, choices=(2016, 2017))
    parser.add_argument("--split", default="val")
    parser.add_argument("--resolution", default="480p")
    parser.add_argument("--sequences", type=lambda s: [x for x in s.split(",") if x], help="a,b,c (default: all)")
    parser.add_argument("--weights", type=Path, help="checkpoint or export folder (default: the shipped weights)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"))
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16", "int8", "fp16"),
        help="auto: bf16 with openvino on CPUs with bf16 units, else fp32; bf16: openvino; fp16: torch on CUDA",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    parser.add_argument("--internal-size", type=int, default=480, help="processing short side (pixels)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads of the backend")
    parser.add_argument("--hold-when-lost", default="template", choices=HOLD_POLICIES, help="see Tracker")
    parser.add_argument(
        "--search-region", action=argparse.BooleanOptionalAction, default=True, help="see Tracker (default: on)"
    )
    parser.add_argument(
        "--region-state", action=argparse.BooleanOptionalAction, default=False,
        help="with the search region: each object's state from its foreground in it, or all of it (default)",
    )  # fmt: skip
    parser.add_argument("--score", type=Path, metavar="PRED_DIR", help="score existing predictions instead")
    parser.add_argument("--overlay", action="store_true", help="also write an overlay video per sequence")
    parser.add_argument(
        "--init", default="mask", choices=("mask", "box", "click"),
        help="start objects from their masks, their bounding boxes or one click on each (box method head)",
    )  # fmt: skip
    parser.add_argument(
        "--box-method", choices=METHOD_CHOICES, default="auto",
        help="box to mask (auto: head where the weights have a box head, else network)",
    )  # fmt: skip
    parser.add_argument("--box-jitter", type=float, default=0.0, help="move and resize boxes by up to this share")
    parser.add_argument("--box-seed", type=int, default=0, help="seed of the box jitter")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        summary = run_evaluation(args)
    except (ValueError, OSError) as error:
        LOG.error("%s", error)
        return 1
    print(
        f"J&F {100 * summary['JF_mean']:.2f}  J {100 * summary['J_mean']:.2f}  F {100 * summary['F_mean']:.2f}"
        + f"  identity switches {summary['id_switches']} ({100 * summary['id_switch_rate']:.1f} % of visible frames)"
        + f", lost {100 * summary['lost_rate']:.1f} %, spilled {100 * summary['spilled_rate']:.1f} %"
        + f", lost on return {summary['lost_on_return']} of {summary['returned_frames']}"
        + (f"  started from masks of J {100 * summary['given_J_mean']:.2f}" if args.init != "mask" else "")
        + (f"  {summary['fps']:.1f} FPS on {summary['device']}" if summary["fps"] else "")
        + f"  ({summary['n_sequences']} sequences, {summary['n_frames']} frames) -> {args.out / 'summary.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

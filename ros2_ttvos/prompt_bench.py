"""``ttvos-bench --boxes``: what a prompt costs on the CPU, and (``--prompt-davis``) how close
its mask comes to the annotation, per method (``prompts``)."""

import time
from typing import Dict, List

import numpy as np
from tqdm import tqdm

from ros2_ttvos import metrics
from ros2_ttvos.data.davis import Davis
from ros2_ttvos.demo import sample_clip
from ros2_ttvos.evaluate import PromptInit, git_commit
from ros2_ttvos.prompts import BOX_METHODS
from ros2_ttvos.tracker import Tracker

EVERY = 3  # every 3rd annotated frame of each sequence
JITTER = 0.1  # as ttvos-eval --box-jitter 0.1


def _cases(tracker: Tracker) -> List[tuple]:
    """(method, prompt) pairs this tracker can run: every method with a box, the head with a click."""
    cases = [(method, "box") for method in BOX_METHODS] + [("head", "click")]
    return [(method, kind) for method, kind in cases if method != "head" or tracker.backend.box_crop is not None]


def prompt_quality(tracker: Tracker, sequences, every: int = EVERY) -> List[Dict]:
    """Mean J of the mask each method makes from the annotation's box (exact, and jittered by up
    to ``JITTER`` a side) and the head from one click, on every ``every``-th annotated frame."""
    frames = [(s, i) for s in sequences for i in range(0, len(s), every) if s.mask(i) is not None and s.mask(i).any()]
    rows = []
    for method, kind in _cases(tracker):
        prompts = ("exact", "jittered") if kind == "box" else ("click",)
        scores: Dict[str, List[float]] = {name: [] for name in prompts}
        inits = {name: PromptInit(kind, method, JITTER if name == "jittered" else 0.0) for name in prompts}
        for number, (sequence, index) in enumerate(tqdm(frames, desc=f"{method}, {kind}", unit="frame")):
            image, truth = sequence.image(index), sequence.mask(index) > 0
            labels = truth.astype(np.uint8)
            for name, init in inits.items():
                found = init.labels(tracker, image, labels, [1], np.random.default_rng(number)) == 1
                scores[name].append(float(metrics.region_similarity(found[None], truth[None])[0]))
        row = {"method": method, "prompt": kind, "frames": len(frames)}
        row.update({f"J_{name}": float(np.mean(values)) for name, values in scores.items()})
        rows.append(row)
        print(f"{method + ', ' + kind:14} " + "  ".join(f"J {name} {100 * row[f'J_{name}']:.1f}" for name in prompts))
    return rows


def prompt_speed(args, update_results) -> int:
    """``--boxes``: median ms of ``Tracker.prompt_mask`` for one box (and for one click, box head)
    on the sample clip's frames (480x854), per method, with the tracker the node would build here
    (backend auto; precision ``--precision``, auto by default); with ``--prompt-davis`` also
    ``prompt_quality`` on those sequences."""
    clip = sample_clip()
    tracker = Tracker.from_pretrained(
        args.weights, device=args.device, backend="auto", threads=args.threads, precision=args.precision
    )
    rows = []
    print(f"\n{'prompt':14} {'median ms':>10} {'p95 ms':>8}   ({tracker.backend.name}, {tracker.backend.precision})")
    if tracker.backend.box_crop is None:
        print("head: skipped, these weights have no box head")
    for method, kind in _cases(tracker):
        times = []
        for index in range(0, min(len(clip), args.frames), 2):
            image, mask = clip.image(index), (clip.mask(index) > 0).astype(np.uint8)
            boxes, clicks = PromptInit(kind, method).prompts(mask, [1], np.random.default_rng(index))
            start = time.perf_counter()
            tracker.prompt_mask(image, boxes, clicks, method)
            times.append(1000 * (time.perf_counter() - start))
        timed = times[1:]  # the first call compiles the graphs for one object
        row = {
            "method": method,
            "prompt": kind,
            "median_ms": float(np.median(timed)),
            "p95_ms": float(np.percentile(timed, 95)),
        }
        rows.append(row)
        print(f"{method + ', ' + kind:14} {row['median_ms']:>10.1f} {row['p95_ms']:>8.1f}")
    section = {"backend": tracker.backend.name, "precision": tracker.backend.precision, "rows": rows}
    if args.prompt_davis:
        davis = Davis(args.prompt_davis, 2016, args.prompt_split, "480p", args.prompt_sequences)
        print(f"\nmask J from prompts on every {EVERY}rd annotated frame of {len(davis)} sequences:")
        section["quality"] = {
            "davis": str(args.prompt_davis), "split": args.prompt_split, "sequences": [s.name for s in davis],
            "rows": prompt_quality(tracker, list(davis)),
        }  # fmt: skip
    update_results(args.out, {"boxes": {"git_commit": git_commit(), "threads": args.threads, **section}})
    return 0

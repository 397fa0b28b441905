"""``ttvos-bench --boxes``: what a prompt costs on the CPU, per method (``prompts``)."""

import time

import numpy as np

from ros2_ttvos.data.box_samples import object_clicks
from ros2_ttvos.demo import sample_clip
from ros2_ttvos.evaluate import git_commit
from ros2_ttvos.prompt_crops import mask_box
from ros2_ttvos.prompts import BOX_METHODS
from ros2_ttvos.tracker import Tracker


def prompt_speed(args, update_results) -> int:
    """``--boxes``: median ms of ``Tracker.prompt_mask`` for one box (and for one click, box head)
    on the sample clip's frames (480x854), per method, with the tracker the node would build here
    (backend and precision auto)."""
    clip = sample_clip()
    tracker = Tracker.from_pretrained(args.weights, device=args.device, backend="auto", threads=args.threads)
    rows = []
    print(f"\n{'prompt':14} {'median ms':>10} {'p95 ms':>8}   ({tracker.backend.name}, {tracker.backend.precision})")
    cases = [(method, "box") for method in BOX_METHODS] + [("head", "click")]
    for method, kind in cases:
        if method == "head" and tracker.backend.box_crop is None:
            print(f"{method + ', ' + kind:14} skipped: these weights have no box head")
            continue
        times = []
        for index in range(0, min(len(clip), args.frames), 2):
            image, mask = clip.image(index), clip.mask(index) > 0
            boxes = {1: mask_box(mask)} if kind == "box" else None
            clicks = {1: object_clicks(mask, 1, np.random.default_rng(index))} if kind == "click" else None
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
    update_results(args.out, {"boxes": {"git_commit": git_commit(), "threads": args.threads, **section}})
    return 0

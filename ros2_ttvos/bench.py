"""``ttvos-bench``: speed, memory and size of the Tracker, printed and written to bench/results.json.

    ttvos-bench [--weights W] [--device auto] [--frames 50] [--memory-frames 1000] [--out bench/results.json]
    ttvos-bench --model-info          # parameter count and GFLOPs per frame only

Speed: median ms of ``Tracker.step`` (image in, labels out) at 480x854 and 240x427 input, each
processed at its own short side, for 1, 2 and 4 objects, after warm-up; torch threads = cores.
Memory: state bytes and peak RSS after 100 and after ``--memory-frames`` frames of one stream.
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ros2_ttvos.demo import sample_clip
from ros2_ttvos.evaluate import git_commit
from ros2_ttvos.tracker import Tracker

SIZES = [(480, 854), (240, 427)]
OBJECT_COUNTS = [1, 2, 4]
WARMUP_FRAMES = 5


def object_masks(shape, count: int) -> np.ndarray:
    """``count`` non-overlapping box objects spread over a frame of ``shape``."""
    h, w = shape
    labels = np.zeros(shape, np.uint8)
    for k in range(count):
        x0 = int(w * (0.05 + 0.9 * k / count))
        labels[h // 4 : 3 * h // 4, x0 : x0 + int(0.8 * w / count)] = k + 1
    return labels


def clip_frames(shape) -> List[np.ndarray]:
    import cv2

    sequence = sample_clip()
    return [cv2.resize(sequence.image(i), shape[::-1], interpolation=cv2.INTER_AREA) for i in range(len(sequence))]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def time_steps(tracker: Tracker, shape, objects: int, frames: int) -> Dict[str, float]:
    images = clip_frames(shape)
    tracker.reset()
    tracker.add_objects(images[0], object_masks(shape, objects))
    times = []
    for index in range(WARMUP_FRAMES + frames):
        image = images[1 + index % (len(images) - 1)]
        start = time.perf_counter()
        tracker.step(image)
        if index >= WARMUP_FRAMES:
            times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"median_ms": 1000 * median, "p95_ms": 1000 * float(np.percentile(times, 95)), "fps": 1 / median}


def memory_run(tracker: Tracker, shape, frames: int) -> Dict[str, float]:
    images = clip_frames(shape)
    tracker.reset()
    tracker.add_objects(images[0], object_masks(shape, 2))
    out = {"size": list(shape), "objects": 2}
    for index in range(1, frames + 1):
        tracker.step(images[1 + index % (len(images) - 1)])
        if index in (100, frames):
            out[f"after_{index}"] = {
                "state_bytes": tracker.state_nbytes(),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "rss_mb": round(current_rss_mb(), 1),
            }
    return out


def model_info(tracker: Tracker, shape=(480, 864)) -> Dict[str, float]:
    """Parameters and FLOPs of one tracking step (backbone + one object) at ``shape``."""
    model = tracker.model
    image = torch.rand(1, 3, *shape, device=tracker.device) * 255
    mask = torch.zeros(1, 1, *shape, device=tracker.device)
    mask[..., shape[0] // 4 : shape[0] // 2, shape[1] // 4 : shape[1] // 2] = 1
    with torch.inference_mode():
        state = model.init_state(model.encode_image(image), mask)
        with FlopCounterMode(display=False) as counter:
            feats = model.encode_image(image)
            out = model.segment(feats, state)
            model.update_state(feats, state, out.weight, torch.softmax(out.logits, 1)[:, 1:])
    total = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for p in model.backbone.parameters())
    return {
        "parameters": total,
        "parameters_excluding_backbone": total - backbone,
        "gflops_per_frame": counter.get_total_flops() / 1e9,
        "flops_input": list(shape),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the shipped weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    parser.add_argument("--frames", type=int, default=50, help="timed frames per case (after warm-up)")
    parser.add_argument("--memory-frames", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: cores)")
    parser.add_argument("--model-info", action="store_true", help="print parameters and GFLOPs only")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tracker = Tracker.from_pretrained(args.weights, device=args.device)
    info = model_info(tracker)
    print(
        f"parameters {info['parameters'] / 1e6:.2f} M ({info['parameters_excluding_backbone'] / 1e6:.2f} M "
        f"outside the backbone), {info['gflops_per_frame']:.2f} GFLOPs per frame at 480x864, one object"
    )
    if args.model_info:
        return 0
    results = {"device": str(tracker.device), "threads": args.threads, "git_commit": git_commit(), **info}
    devices = [tracker.device] + ([torch.device("cpu")] if tracker.device.type == "cuda" else [])
    results["speed"] = []
    print(f"\n{'device':8} {'input':>9} {'objects':>7} {'median ms':>10} {'p95 ms':>8} {'FPS':>7}")
    for device in devices:
        runner = Tracker(tracker.model, device, internal_size=None)
        for shape in SIZES:
            for objects in OBJECT_COUNTS:
                row = {"device": str(device), "input": list(shape), "objects": objects}
                row.update(time_steps(runner, shape, objects, args.frames))
                results["speed"].append(row)
                print(
                    f"{device.type:8} {shape[0]:>4}x{shape[1]:<4} {objects:>7} {row['median_ms']:>10.1f} "
                    f"{row['p95_ms']:>8.1f} {row['fps']:>7.2f}"
                )
    runner = Tracker(tracker.model, tracker.device, internal_size=None)
    results["memory"] = memory_run(runner, SIZES[1], args.memory_frames)
    memory = results["memory"]
    print(f"\nmemory, one stream at {SIZES[1][0]}x{SIZES[1][1]}, 2 objects:")
    for key in ("after_100", f"after_{args.memory_frames}"):
        m = memory[key]
        print(f"  {key:>11}: state {m['state_bytes']} B, RSS {m['rss_mb']} MB, peak RSS {m['peak_rss_mb']} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

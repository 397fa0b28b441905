"""How the benchmarks time the tracker: steps taken in turns on the bundled clip's frames, and
the network's parameters and FLOPs per frame."""

import time
from typing import Dict, Hashable, List, Tuple

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ros2_ttvos.bench_inputs import clip_frames, object_masks
from ros2_ttvos.model.streaming import ObjectEncoder, TrackingStep
from ros2_ttvos.tracker import Tracker

SIZES = [(480, 854), (240, 427)]
OBJECT_COUNTS = [1, 2, 4]
WARMUP_FRAMES = 5
TURN_FRAMES = 6  # frames per tracker before the next one's turn (the first of them is not timed)


def time_object_counts(trackers: Dict[int, Tracker], shape, frames: int) -> Dict[int, Dict[str, float]]:
    """Step times of one tracker per object count (the keys), taken in turns."""
    return time_in_turns({objects: (tracker, objects) for objects, tracker in trackers.items()}, shape, frames)


def time_in_turns(cases: Dict[Hashable, Tuple[Tracker, int]], shape, frames: int) -> Dict[Hashable, Dict[str, float]]:
    """Step times of each case's tracker with its number of objects, taken in turns of
    ``TURN_FRAMES`` frames on the same frames.

    Taking turns exposes every case to the same machine load, so that their ratios hold even
    where the absolute times drift between runs. Turns of several frames keep one runtime's idle
    threads (ONNX Runtime spins a while after each run) out of the next one's timing: only the
    first frame of a turn is dropped.
    """
    images = clip_frames(shape)
    times: Dict[Hashable, List[float]] = {}
    for key, (tracker, objects) in cases.items():
        tracker.reset()
        tracker.add_objects(images[0], object_masks(shape, objects))
        times[key] = []
    for turn in range(0, WARMUP_FRAMES + frames, TURN_FRAMES):
        for key, (tracker, _) in cases.items():
            for index in range(turn, turn + TURN_FRAMES):
                image = images[1 + index % (len(images) - 1)]
                start = time.perf_counter()
                tracker.step(image)
                times[key].append(time.perf_counter() - start)
    rows = {}
    for objects, measured in times.items():
        timed = [t for index, t in enumerate(measured) if index >= WARMUP_FRAMES and index % TURN_FRAMES]
        median = float(np.median(timed))
        rows[objects] = {
            "median_ms": 1000 * median,
            "p95_ms": 1000 * float(np.percentile(timed, 95)),
            "fps": 1 / median,
            "first_step_ms": 1000 * measured[0],  # the first step after add_objects
        }
    return rows


def model_info(model, device: str, shape=(480, 864)) -> Dict[str, float]:
    """Parameters, and FLOPs of one ``TrackingStep`` at ``shape``: one object, and each further object."""
    image = torch.rand(1, 3, *shape, device=device) * 255

    def step_flops(objects: int) -> int:
        masks = torch.zeros(objects, 1, *shape, device=device)
        masks[..., shape[0] // 4 : shape[0] // 2, shape[1] // 4 : shape[1] // 2] = 1
        with torch.inference_mode():
            state = ObjectEncoder(model)(image, masks)
            with FlopCounterMode(display=False) as counter:
                TrackingStep(model)(image, *state, torch.tensor(0.5), torch.tensor(0.0))
        return counter.get_total_flops()

    one, two = step_flops(1), step_flops(2)
    total = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for p in model.backbone.parameters())
    return {
        "parameters": total,
        "parameters_excluding_backbone": total - backbone,
        "gflops_per_frame": one / 1e9,
        "gflops_per_extra_object": (two - one) / 1e9,
        "flops_input": list(shape),
    }

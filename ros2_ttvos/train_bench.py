"""Training throughput, ``ttvos-bench --train``: frames per second of one training step (clips
run recurrently, the three losses, backward, Adam) per precision, memory layout and number of
trained backbone blocks, timed in turns on the same batch so that the ratios hold on a noisy
machine. ``ttvos-bench
--train-threads``: the same step on 2 threads under each OpenMP wait policy, and on 1 thread."""

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Tuple

import torch

from ros2_ttvos.model import TTVOS, ttvos_losses
from ros2_ttvos.model.recurrent import ClipRunner
from ros2_ttvos.schedule import cpu_has_native_bf16

Case = Tuple[str, bool, int]  # (precision, channels_last, trained backbone blocks)


def _batch(clips: int, frames: int, size: Tuple[int, int], objects: int, device: torch.device):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(clips, frames, 3, *size, generator=generator) * 255
    labels = torch.zeros(clips, frames, *size, dtype=torch.long)
    h, w = size
    for k in range(objects):  # boxes that drift to the right, one per target
        for t in range(frames):
            x0 = int(w * (0.1 + 0.25 * k)) + 2 * t
            labels[:, t, h // 4 : 3 * h // 4, x0 : x0 + w // 5] = k + 1
    first = torch.stack([(labels[:, 0] == k + 1).float() for k in range(objects)], dim=1)
    return images.to(device), labels.to(device), first.to(device)


def training_speed(
    model: TTVOS,
    device: torch.device,
    cases: List[Case],
    clips: int = 4,
    frames: int = 8,
    size: Tuple[int, int] = (240, 432),
    objects: int = 1,
    rounds: int = 3,
) -> List[Dict]:
    """Median seconds of a training step for each case, the cases taken in turns ``rounds`` times
    after one warm-up step each."""
    images, labels, first = _batch(clips, frames, size, objects, device)
    model = model.to(device).train()
    runner = ClipRunner(model)
    model.backbone.set_trainable_blocks(max(blocks for _, _, blocks in cases))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-6)  # skips grad None
    seconds: Dict[Case, List[float]] = {case: [] for case in cases}

    def step(case: Case) -> float:
        precision, channels_last, blocks = case
        model.backbone.set_trainable_blocks(blocks)
        model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            outputs = runner(images, first)
        loss = sum(ttvos_losses(outputs, labels).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for case in cases:
        step(case)  # warm-up
    for _ in range(rounds):
        for case in cases:
            seconds[case].append(step(case))
    rows = []
    for (precision, channels_last, blocks), times in seconds.items():
        median = statistics.median(times)
        rows.append(
            {
                "device": str(device), "precision": precision, "channels_last": channels_last, "trained_blocks": blocks,
                "clips": clips, "frames": frames, "size": list(size), "objects": objects,
                "step_s": round(median, 3), "frames_per_s": round(clips * frames / median, 2),
            }
        )  # fmt: skip
    return rows


def default_cases(device: torch.device) -> List[Case]:
    """fp32 everywhere; bf16 on CUDA and on CPUs with native bf16 (elsewhere it is emulated and
    ~100x slower: not worth timing); each in both memory layouts, with the backbone's last block
    trained; and the fastest of them with its last two blocks trained (run v2's `trunk` stage)."""
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" or cpu_has_native_bf16() else [])
    return [(p, layout, 1) for p in precisions for layout in (False, True)] + [(precisions[-1], True, 2)]


# OpenMP reads its wait policy when it starts: each setting is timed in a fresh process.
WAIT_POLICIES = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},  # threads sleep as soon as they wait
    "spin": {},  # libgomp's default: spin a long while, then sleep
    "spin-10000": {"GOMP_SPINCOUNT": "10000"},  # spin briefly, then sleep (docs/training.md)
}
THREAD_CASES = [(2, "passive"), (2, "spin"), (2, "spin-10000"), (1, "spin")]
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # what the policies above set


def thread_settings_speed(
    rounds: int = 2, clips: int = 2, frames: int = 16, objects: int = 2, size: Tuple[int, int] = (240, 432)
) -> List[Dict]:
    """Frames/s of the training step (channels_last, bf16 where native) for each (threads, wait
    policy) of ``THREAD_CASES``, each in its own process, the cases taken in turns ``rounds`` times;
    ``wait_env`` is the OpenMP settings the process saw."""
    rows = []
    for attempt in range(rounds):
        for threads, policy in THREAD_CASES:
            env = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES}
            env.update(WAIT_POLICIES[policy])
            arguments = (threads, clips, frames, objects, *size)
            command = [sys.executable, "-m", "ros2_ttvos.train_bench", *map(str, arguments)]
            timed = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
            rows.append({"round": attempt + 1, "threads": threads, "wait_policy": policy, **timed})
    return rows


def _time_one_setting(threads: int, clips: int, frames: int, objects: int, height: int, width: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    case = ("bf16" if cpu_has_native_bf16() else "fp32", True, 1)
    model = TTVOS(pretrained_backbone=False)
    (row,) = training_speed(model, torch.device("cpu"), [case], clips, frames, (height, width), objects, rounds=4)
    wait_env = {k: os.environ[k] for k in WAIT_VARIABLES if k in os.environ}
    print(json.dumps({**row, "wait_env": wait_env}))


if __name__ == "__main__":  # one case of thread_settings_speed
    _time_one_setting(*map(int, sys.argv[1:7]))

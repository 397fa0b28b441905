"""Training throughput, ``ttvos-bench --train``: frames per second of one training step (clips
run recurrently, the three losses, backward, Adam) per precision and memory layout, timed in
turns on the same batch so that the ratios hold on a noisy machine."""

import statistics
import time
from typing import Dict, List, Tuple

import torch

from ros2_ttvos.model import TTVOS, ttvos_losses
from ros2_ttvos.model.recurrent import ClipRunner
from ros2_ttvos.schedule import cpu_has_native_bf16

Case = Tuple[str, bool]  # (precision, channels_last)


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
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    seconds: Dict[Case, List[float]] = {case: [] for case in cases}

    def step(case: Case) -> float:
        precision, channels_last = case
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
    for (precision, channels_last), times in seconds.items():
        median = statistics.median(times)
        rows.append(
            {
                "device": str(device), "precision": precision, "channels_last": channels_last,
                "clips": clips, "frames": frames, "size": list(size), "objects": objects,
                "step_s": round(median, 3), "frames_per_s": round(clips * frames / median, 2),
            }
        )  # fmt: skip
    return rows


def default_cases(device: torch.device) -> List[Case]:
    """fp32 everywhere; bf16 on CUDA and on CPUs with native bf16 (elsewhere it is emulated and
    ~100x slower: not worth timing); each in both memory layouts."""
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" or cpu_has_native_bf16() else [])
    return [(p, layout) for p in precisions for layout in (False, True)]

"""Training batches: what each step of a stage trains on, drawn ahead in a background thread.

A batch is a pure function of (seed, rank, step), each of its clips of (seed, rank, step, clip):
a resumed run, a prefetching thread, clips drawn by several worker threads (a GPU's large
batches) and each data-parallel rank all get exactly the batches they would have got otherwise,
with no sampler state to save.
"""

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ros2_ttvos.data.clips import DAVIS_ZOOM, DavisClips, StillImages, synthetic_clip
from ros2_ttvos.data.composite import add_look_alike, cut_out_sampler, hide_behind, multi_object_clip

Batch = Tuple[np.ndarray, np.ndarray]  # frames (B, T, H, W, 3) uint8 RGB, labels (B, T, H, W) uint8


class BatchSampler:
    """Clips for a stage: ``synthetic`` share of still-image scenes, the rest DAVIS train clips;
    ``objects: [min, max]`` targets per clip (one count per batch); ``frames``: the clip length,
    or ``[min, max]`` (one length per batch); single-target clips get pasted cut-outs with
    probability ``paste`` (always when there are several targets); ``zoom: [min, max]``: the scale
    range of the DAVIS clips (``DavisClips.clip``); ``look_alike``: the share of clips through which
    a copy of one of their targets passes (``add_look_alike``); ``hide``: the share of clips in
    which one target passes behind a panel and comes out again (``hide_behind``)."""

    def __init__(
        self,
        clips: DavisClips,
        stills: Optional[StillImages],
        davis_still_fraction: float,
        seed: int,
        rank: int = 0,
        workers: int = 1,
    ):
        self.clips = clips
        self.stills = stills
        self.davis_still_fraction = davis_still_fraction
        self.seed = seed
        self.rank = rank
        self.sample_cut = cut_out_sampler(self._sample_still)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clips") if workers > 1 else None

    def _sample_still(self, rng: np.random.Generator):
        if self.stills is None or rng.random() < self.davis_still_fraction:
            return self.clips.still(rng)
        return self.stills.sample(rng)

    def _clip(self, stage: Dict[str, Any], size: Tuple[int, int], targets: int, rng: np.random.Generator):
        # The clip is drawn first, and the look-alike's draws are made only in stages that have
        # them: stages without look_alike or hide keep the clips they had before those existed.
        clip = self._composed_clip(stage, size, targets, rng)
        look_alike = stage.get("look_alike", 0.0)
        if clip is not None and look_alike > 0 and rng.random() < look_alike:
            clip = add_look_alike(clip, rng)
        if clip is not None and rng.random() < stage.get("hide", 0.0):
            return hide_behind(clip, rng, self.sample_cut)
        return clip

    def _composed_clip(self, stage: Dict[str, Any], size: Tuple[int, int], targets: int, rng: np.random.Generator):
        """A scene clip with its targets, pasted ones among them, before look-alikes and panels."""
        if rng.random() < stage["synthetic"]:
            scene = synthetic_clip(self._sample_still, rng, stage["frames"], size)
        else:
            zoom = tuple(stage.get("zoom", DAVIS_ZOOM))
            scene = self.clips.clip(rng, stage["frames"], size, stage.get("max_stride", 3), zoom)
        if targets == 1 and rng.random() >= stage.get("paste", 0.5):
            return scene if scene[1][0].any() else None
        return multi_object_clip(scene, targets, rng, self.sample_cut, stage.get("distractors", 2))

    def _visible_clip(self, stage, size, targets: int, step: int, index: int):
        """Clip ``index`` of the batch of ``step``: drawn again until every target is visible
        on frame 0."""
        for attempt in range(1000):
            rng = np.random.default_rng([self.seed, self.rank, step, index, attempt])
            clip = self._clip(stage, size, targets, rng)
            if clip is not None and all((clip[1][0] == k).any() for k in range(1, targets + 1)):
                return clip
        raise ValueError(f"no clip with {targets} visible targets in 1000 draws (stage {stage['name']})")

    def batch(self, stage: Dict[str, Any], step: int, default_size: Sequence[int]) -> Batch:
        """The batch of ``step`` (0-based) in ``stage``; every target is visible on frame 0."""
        size = tuple(stage.get("size", default_size))
        low, high = stage.get("objects", [1, 1])
        step_rng = np.random.default_rng([self.seed, self.rank, step])
        targets = int(step_rng.integers(low, high + 1))
        if isinstance(stage["frames"], (list, tuple)):  # a length per batch, from the range
            stage = {**stage, "frames": int(step_rng.integers(stage["frames"][0], stage["frames"][1] + 1))}
        draw = lambda index: self._visible_clip(stage, size, targets, step, index)  # noqa: E731
        indices = range(stage["batch"])
        clips = list(self._pool.map(draw, indices) if self._pool else map(draw, indices))
        return np.stack([c[0] for c in clips]), np.stack([c[1] for c in clips])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class Prefetcher:
    """Draws the next step's batch in a background thread while the current step trains.

    ``get(stage, step, next_stage)`` returns the batch of ``step`` (drawn now if it was not asked
    for ahead in that size) and starts drawing the one of ``next_step`` (``step + 1`` unless a
    step counts as several, see ``Trainer.stage``); ``wait_seconds`` sums the time the caller waited.
    """

    def __init__(self, sampler: BatchSampler, default_size: Sequence[int]):
        self.sampler = sampler
        self.default_size = default_size
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches")
        self._ahead: Optional[Tuple[Tuple[int, int], Future]] = None  # ((step, batch size), batch)
        self.wait_seconds = 0.0

    def get(
        self,
        stage: Dict[str, Any],
        step: int,
        next_stage: Optional[Dict[str, Any]],
        next_step: Optional[int] = None,
    ) -> Batch:
        start = time.perf_counter()
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == (step, stage["batch"]):
            batch = ahead[1].result()
        else:
            batch = self.sampler.batch(stage, step, self.default_size)
        self.wait_seconds += time.perf_counter() - start
        if next_stage is not None:
            following = step + 1 if next_step is None else next_step
            future = self._pool.submit(self.sampler.batch, next_stage, following, self.default_size)
            self._ahead = ((following, next_stage["batch"]), future)
        return batch

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.sampler.close()


def batch_tensors(batch: Tuple[np.ndarray, np.ndarray], device: torch.device):
    """A batch as the network takes it: frames (B, T, 3, H, W) float, labels (B, T, H, W) long,
    and the first frame's mask of every target (B, K, H, W) float."""
    frames, labels = (torch.from_numpy(array).to(device) for array in batch)
    frames = frames.permute(0, 1, 4, 2, 3).float()
    labels = labels.long()
    targets = int(labels[:, 0].max())
    first = torch.stack([(labels[:, 0] == k).float() for k in range(1, targets + 1)], dim=1)
    return frames, labels, first

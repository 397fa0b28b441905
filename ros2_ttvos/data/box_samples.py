"""Training samples of the box head: an image and its object mask -> crop, prompt maps, target.

Prompts are drawn as a detector or a person would give them (``PROMPT_MODES``): the object's
bounding box moved and resized by a few percent per side (sometimes exact), the box with clicks
on it (positive inside the object, negative on the background inside the box), or clicks alone
on a region of random extent around the object. Every batch is a pure function of (seed, step),
so a resumed run trains on the same samples.
"""

from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ros2_ttvos.data.clips import colour_jitter
from ros2_ttvos.prompt_crops import Click, crop_image, mask_box, prompt_maps, region_of

ImageSampler = Callable[[np.random.Generator], Tuple[np.ndarray, np.ndarray]]  # -> RGB image, {0, 1} mask
Sample = Tuple[np.ndarray, np.ndarray, np.ndarray]  # crop (S, S, 3) uint8, prompts (3, S, S), target (S, S) uint8
PROMPT_MODES = {"box": 0.6, "box+clicks": 0.2, "clicks": 0.2}
BOX_JITTER_SD = 0.06  # per side, share of the box's size (clipped at 3 SD); a fifth of the boxes are exact
MIN_OBJECT_PIXELS = 64


def detector_box(box: Tuple[int, int, int, int], rng: np.random.Generator, shape: Tuple[int, int]) -> Tuple[float, ...]:
    """``box`` as a detector might report it: each side off by a Gaussian share of the box's size."""
    if rng.random() < 0.2:
        return tuple(float(v) for v in box)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    offsets = np.clip(rng.normal(0.0, BOX_JITTER_SD, size=4), -3 * BOX_JITTER_SD, 3 * BOX_JITTER_SD)
    out = (x0 + offsets[0] * w, y0 + offsets[1] * h, x1 + offsets[2] * w, y1 + offsets[3] * h)
    height, width = shape
    x0, y0 = min(max(0.0, out[0]), width - 2.0), min(max(0.0, out[1]), height - 2.0)
    return x0, y0, max(x0 + 2.0, min(float(width), out[2])), max(y0 + 2.0, min(float(height), out[3]))


def _pick(candidates: np.ndarray, weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    weights = weights / weights.sum()
    return candidates[rng.choice(len(candidates), size=min(count, len(candidates)), replace=False, p=weights)]


def object_clicks(mask: np.ndarray, count: int, rng: np.random.Generator) -> List[Click]:
    """``count`` positive clicks inside the object, favouring its interior as people click."""
    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    ys, xs = np.nonzero(distance)
    chosen = _pick(np.stack([xs, ys], 1), distance[ys, xs] ** 2, count, rng)
    return [(float(x), float(y), True) for x, y in chosen]


def background_clicks(mask: np.ndarray, box, count: int, rng: np.random.Generator) -> List[Click]:
    """``count`` negative clicks on background pixels inside ``box`` (else near the object)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inside = np.zeros(mask.shape, bool)
    inside[y0:y1, x0:x1] = True
    ys, xs = np.nonzero(inside & (mask == 0))
    if len(xs) == 0:
        return []
    chosen = _pick(np.stack([xs, ys], 1), np.ones(len(xs)), count, rng)
    return [(float(x), float(y), False) for x, y in chosen]


def prompt_sample(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, size: int) -> Optional[Sample]:
    """One training sample from ``image`` and its object ``mask``; None when the object is too small."""
    if int(mask.sum()) < MIN_OBJECT_PIXELS:
        return None
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    image, mask = np.ascontiguousarray(colour_jitter(image, rng)), np.ascontiguousarray(mask)
    shape = mask.shape
    exact = mask_box(mask > 0)
    mode = rng.choice(list(PROMPT_MODES), p=list(PROMPT_MODES.values()))
    if mode == "clicks":
        box = None
        clicks = object_clicks(mask, int(rng.integers(1, 3)), rng)
        clicks += background_clicks(mask, region_of(shape, exact), int(rng.integers(0, 3)), rng)
        if rng.random() < 0.5:  # the whole image, as at inference, or a random part around the object
            region = region_of(shape, None)
        else:
            x0, y0, x1, y1 = exact
            grow = rng.uniform(0.1, 1.5, size=4) * np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
            region = (x0 - grow[0], y0 - grow[1], x1 + grow[2], y1 + grow[3])
    else:
        box = detector_box(exact, rng, shape)
        region = region_of(shape, box)
        clicks = []
        if mode == "box+clicks":
            clicks = object_clicks(mask, int(rng.integers(0, 3)), rng)
            clicks += background_clicks(mask, box, int(rng.integers(1, 3)), rng)
    crop = crop_image(image, region, size)
    target = crop_image(mask.astype(np.uint8), region, size, nearest=True)
    if not target.any():
        return None
    return crop, prompt_maps(region, size, box, clicks), target


class PromptBatches:
    """Batches of box-head samples: ``still_fraction`` from the still sets, the rest DAVIS frames."""

    def __init__(self, sample_still: ImageSampler, sample_frame: ImageSampler, still_fraction: float, seed: int):
        self.sample_still = sample_still
        self.sample_frame = sample_frame
        self.still_fraction = still_fraction
        self.seed = seed

    def batch(self, step: int, batch_size: int, size: int) -> Tuple[np.ndarray, ...]:
        """(crops (B, S, S, 3) uint8, prompts (B, 3, S, S) float32, targets (B, S, S) uint8)."""
        samples: List[Sample] = []
        for index in range(batch_size):
            rng = np.random.default_rng((self.seed, step, index))
            sample = None
            while sample is None:
                draw = self.sample_still if rng.random() < self.still_fraction else self.sample_frame
                sample = prompt_sample(*draw(rng), rng, size)
            samples.append(sample)
        crops, prompts, targets = zip(*samples, strict=True)
        return np.stack(crops), np.stack(prompts), np.stack(targets)


def frame_sampler(sequences: Sequence) -> ImageSampler:
    """Random annotated frames of DAVIS sequences (anything with ``len``, ``image(i)``, ``mask(i)``)."""

    def sample(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        while True:
            sequence = sequences[rng.integers(len(sequences))]
            index = int(rng.integers(len(sequence)))
            mask = sequence.mask(index)
            if mask is not None and mask.any():
                return sequence.image(index), (mask > 0).astype(np.uint8)

    return sample

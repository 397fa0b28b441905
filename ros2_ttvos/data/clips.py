"""Training clips: synthetic clips from still images and real clips from DAVIS sequences.

Every sampler is driven by a ``numpy.random.Generator`` handed in by the caller, so a training
run that saves and restores that generator resumes on exactly the same clips.
"""

from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import cv2
import numpy as np

from ros2_ttvos.data.davis import read_image, read_mask

Clip = Tuple[np.ndarray, np.ndarray]  # frames (T, H, W, 3) uint8 RGB, masks (T, H, W) uint8 {0, 1}
StillSampler = Callable[[np.random.Generator], Tuple[np.ndarray, np.ndarray]]  # -> RGB image, {0,1} mask


class StillImages:
    """Image/mask pairs from saliency sets (folders of images and same-named masks)."""

    def __init__(self, pairs: Sequence[Tuple[Path, Path]]):
        if not pairs:
            raise ValueError("no image/mask pairs found")
        self.pairs = list(pairs)

    @classmethod
    def from_folders(cls, folders: Sequence[Tuple[str, str]]) -> "StillImages":
        """folders: (image_dir, mask_dir) tuples; masks are matched by file stem."""
        pairs = []
        for image_dir, mask_dir in folders:
            masks = {p.stem: p for p in Path(mask_dir).expanduser().glob("*.png")}
            for image in sorted(Path(image_dir).expanduser().glob("*.jpg")):
                if image.stem in masks:
                    pairs.append((image, masks[image.stem]))
        return cls(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def sample(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        image, mask = self.pairs[rng.integers(len(self.pairs))]
        return read_image(image), read_mask(mask, binary=True)


def _random_affine(rng: np.random.Generator, size: Tuple[int, int], strength: float) -> np.ndarray:
    """2x3 affine: rotation, scale, shear and translation around the image centre."""
    h, w = size
    angle = rng.uniform(-20, 20) * strength
    scale = np.exp(rng.uniform(-0.15, 0.15) * strength)
    shear = rng.uniform(-0.1, 0.1) * strength
    tx, ty = rng.uniform(-0.1, 0.1, size=2) * strength * np.array([w, h])
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[0, 1] += shear
    matrix[:, 2] += (tx, ty)
    return matrix


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine a after b."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


DAVIS_ZOOM = (1.0, 1.4)  # a stage's default ``zoom`` of video clips (DavisClips.clip)


def colour_jitter(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random per-channel gain and a brightness offset."""
    gain = rng.uniform(0.8, 1.2, size=3)
    bias = rng.uniform(-20, 20)
    return np.clip(frame.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


def _fit(image: np.ndarray, mask: np.ndarray, size: Tuple[int, int], rng: np.random.Generator) -> Clip:
    """Random-scale and crop an image/mask pair to ``size`` (h, w), keeping the object in view."""
    h, w = size
    scale = max(h / image.shape[0], w / image.shape[1]) * rng.uniform(1.0, 1.3)
    new = (max(w, round(image.shape[1] * scale)), max(h, round(image.shape[0] * scale)))
    image = cv2.resize(image, new, interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(mask, new, interpolation=cv2.INTER_NEAREST)
    ys, xs = np.nonzero(mask)
    if len(ys):
        cy, cx = int(np.median(ys)), int(np.median(xs))
        y0 = int(np.clip(cy - h // 2 + rng.integers(-h // 4, h // 4 + 1), 0, new[1] - h))
        x0 = int(np.clip(cx - w // 2 + rng.integers(-w // 4, w // 4 + 1), 0, new[0] - w))
    else:
        y0, x0 = rng.integers(0, new[1] - h + 1), rng.integers(0, new[0] - w + 1)
    return image[y0 : y0 + h, x0 : x0 + w], mask[y0 : y0 + h, x0 : x0 + w]


def synthetic_clip(sample_still: StillSampler, rng: np.random.Generator, frames: int, size: Tuple[int, int]) -> Clip:
    """A clip made from one still image by smooth random affine motion and colour changes; its
    mask is the image's object (``data.composite`` pastes other objects over such clips)."""
    image, mask = _fit(*sample_still(rng), size, rng)
    motion = np.eye(3)[:2]
    out_frames, out_masks = [], []
    for _ in range(frames):
        motion = _compose(_random_affine(rng, size, 0.5), motion)
        out_frames.append(colour_jitter(cv2.warpAffine(image, motion, size[::-1], borderMode=cv2.BORDER_REFLECT), rng))
        out_masks.append((cv2.warpAffine(mask, motion, size[::-1], flags=cv2.INTER_NEAREST) > 0).astype(np.uint8))
    return np.stack(out_frames), np.stack(out_masks)


class DavisClips:
    """Real clips of consecutive or stride-sampled frames from DAVIS sequences (``DavisSequence``
    or a pack's ``PackedSequence``: anything with ``len``, ``image(i)`` and ``mask(i)``)."""

    def __init__(self, sequences: Sequence):
        self.sequences = list(sequences)
        if not self.sequences:
            raise ValueError("no DAVIS training sequences")

    def still(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """A random annotated frame (for synthetic clips)."""
        seq = self.sequences[rng.integers(len(self.sequences))]
        index = int(rng.integers(len(seq)))
        return seq.image(index), seq.mask(index)

    def clip(
        self,
        rng: np.random.Generator,
        frames: int,
        size: Tuple[int, int],
        max_stride: int = 3,
        zoom: Tuple[float, float] = DAVIS_ZOOM,
    ) -> Clip:
        """``frames`` frames at a random stride (at most what the sequence allows), random
        crop/scale/flip; the object is visible in frame 0. Sequences shorter than ``frames`` are
        passed over. ``zoom``: the range (drawn log-uniformly) of the frames' scale over the
        smallest that covers ``size``: 1 shows the whole frame; with 480p frames and a 240x432
        crop, 2 shows them at their own pixel size, as the tracker sees them at internal size 480."""
        if all(len(seq) < frames for seq in self.sequences):
            raise ValueError(f"no training sequence has {frames} frames")
        if not 0 < zoom[0] <= zoom[1]:
            raise ValueError(f"zoom must be [min, max] with 0 < min <= max, got {list(zoom)}")
        for _ in range(20):
            seq = self.sequences[rng.integers(len(self.sequences))]
            stride = int(rng.integers(1, max_stride + 1))
            if len(seq) < frames:
                continue
            stride = min(stride, (len(seq) - 1) // max(1, frames - 1))  # the longest stride that fits
            span = (frames - 1) * stride + 1
            start = int(rng.integers(0, len(seq) - span + 1))
            indices = list(range(start, start + span, stride))
            if rng.random() < 0.5:
                indices = indices[::-1]
            first = seq.mask(indices[0])
            if first is not None and first.any():
                break
        images = [seq.image(i) for i in indices]
        masks = [seq.mask(i) for i in indices]
        masks = [m if m is not None else np.zeros(images[0].shape[:2], np.uint8) for m in masks]
        h, w = size
        scale = max(h / images[0].shape[0], w / images[0].shape[1]) * np.exp(rng.uniform(*np.log(zoom)))
        new = (max(w, round(images[0].shape[1] * scale)), max(h, round(images[0].shape[0] * scale)))
        ys, xs = np.nonzero(cv2.resize(masks[0], new, interpolation=cv2.INTER_NEAREST))
        y0 = int(np.clip(np.median(ys) - h // 2 + rng.integers(-h // 4, h // 4 + 1), 0, new[1] - h))
        x0 = int(np.clip(np.median(xs) - w // 2 + rng.integers(-w // 4, w // 4 + 1), 0, new[0] - w))
        flip = rng.random() < 0.5
        out_frames: List[np.ndarray] = []
        out_masks: List[np.ndarray] = []
        for image, mask in zip(images, masks, strict=True):
            image = cv2.resize(image, new, interpolation=cv2.INTER_LINEAR)[y0 : y0 + h, x0 : x0 + w]
            mask = cv2.resize(mask, new, interpolation=cv2.INTER_NEAREST)[y0 : y0 + h, x0 : x0 + w]
            if flip:
                image, mask = image[:, ::-1], mask[:, ::-1]
            out_frames.append(colour_jitter(image, rng))
            out_masks.append(mask)
        return np.stack(out_frames), np.stack(out_masks)

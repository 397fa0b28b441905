"""What the box head sees: a square crop around a prompt, and the prompt drawn as maps.

A prompt is a box (x0, y0, x1, y1; pixels, ends exclusive), clicks ((x, y, positive) in
pixels), or both. Its *region* is the box grown by ``MARGIN`` of its size on every side (the
head then sees the object's surroundings and can reach past a box drawn too tight), or the
whole image for clicks alone. The region is resized to ``size`` x ``size`` (its aspect is not
kept) with zeros where it leaves the image, and the prompt is drawn on three maps in crop
pixels: the box (1 inside; all 0 without one), positive and negative clicks (Gaussian discs).
The head's probability comes back to the image with ``paste``. Pure numpy and OpenCV: training
(``data/box_samples.py``) and inference (``prompts.py``) share it.
"""

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

MARGIN = 0.2  # share of the box's width (height) added on the left and right (top and bottom)
MIN_MARGIN = 8.0  # pixels: small boxes still get some surroundings
CLICK_SIGMA = 1 / 32  # Gaussian radius of a click, as a share of the crop side
PROMPT_CHANNELS = 3  # box, positive clicks, negative clicks

Box = Tuple[float, float, float, float]
IntBox = Tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1 and y1 exclusive
Click = Tuple[float, float, bool]  # x, y (pixels), positive


def region_of(shape: Tuple[int, int], box: Optional[Box]) -> Box:
    """The image region a prompt crops: the box grown by the margin, or the whole image."""
    if box is None:
        return 0.0, 0.0, float(shape[1]), float(shape[0])
    x0, y0, x1, y1 = (float(v) for v in box)
    grow_x = max(MARGIN * (x1 - x0), MIN_MARGIN)
    grow_y = max(MARGIN * (y1 - y0), MIN_MARGIN)
    return x0 - grow_x, y0 - grow_y, x1 + grow_x, y1 + grow_y


def _to_crop(region: Box, size: int) -> np.ndarray:
    """2x3 affine from image pixels to crop pixels (pixel centres map to pixel centres)."""
    x0, y0, x1, y1 = region
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array([[sx, 0.0, -x0 * sx + 0.5 * sx - 0.5], [0.0, sy, -y0 * sy + 0.5 * sy - 0.5]], np.float64)


def crop_image(image: np.ndarray, region: Box, size: int, nearest: bool = False) -> np.ndarray:
    """``image`` (H, W[, C]) cut to ``region`` and resized to size x size; zeros outside the image."""
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, _to_crop(region, size), (size, size), flags=flags, borderValue=0)


def prompt_maps(region: Box, size: int, box: Optional[Box], clicks: Sequence[Click] = ()) -> np.ndarray:
    """(3, size, size) float32: the box and the clicks of a prompt drawn in the crop of ``region``."""
    maps = np.zeros((PROMPT_CHANNELS, size, size), np.float32)
    matrix = _to_crop(region, size)
    if box is not None:
        # Continuous coordinates: box pixel x covers [x, x + 1), crop pixel j's centre is j + 0.5.
        x0, y0 = region[0], region[1]
        sx, sy = size / (region[2] - region[0]), size / (region[3] - region[1])
        centres = np.arange(size) + 0.5
        inside_x = (centres >= (box[0] - x0) * sx) & (centres < (box[2] - x0) * sx)
        inside_y = (centres >= (box[1] - y0) * sy) & (centres < (box[3] - y0) * sy)
        maps[0] = inside_y[:, None] & inside_x[None, :]
    if clicks:
        sigma = CLICK_SIGMA * size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        for x, y, positive in clicks:
            cx, cy = matrix[:, :2] @ (x, y) + matrix[:, 2]
            disc = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
            channel = 1 if positive else 2
            maps[channel] = np.maximum(maps[channel], disc)
    return maps


def paste(probability: np.ndarray, region: Box, shape: Tuple[int, int]) -> np.ndarray:
    """A crop's (size, size) float probability back on an image of ``shape``; 0 outside the region."""
    size = probability.shape[-1]
    inverse = cv2.invertAffineTransform(_to_crop(region, size))
    return cv2.warpAffine(
        probability.astype(np.float32), inverse, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderValue=0
    )


def mask_box(mask: np.ndarray) -> IntBox:
    """The bounding box (x0, y0, x1, y1, exclusive ends) of a non-empty boolean mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def interior_point(mask: np.ndarray) -> Tuple[float, float]:
    """(x, y) of the pixel of a non-empty boolean mask farthest from its border: where a person
    would click the object."""
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x), float(y)


def jittered(box: IntBox, rng: np.random.Generator, amount: float, shape: Tuple[int, int]) -> IntBox:
    """``box`` moved and resized by up to ``amount`` of its size per side, as a detector's would be."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    dx0, dx1 = rng.uniform(-amount, amount, size=2) * w
    dy0, dy1 = rng.uniform(-amount, amount, size=2) * h
    out = (x0 + dx0, y0 + dy0, x1 + dx1, y1 + dy1)
    height, width = shape
    x0, y0 = max(0, round(out[0])), max(0, round(out[1]))
    x1, y1 = min(width, max(x0 + 2, round(out[2]))), min(height, max(y0 + 2, round(out[3])))
    return x0, y0, x1, y1

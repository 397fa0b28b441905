"""What every benchmark runs on: the bundled clip's frames at a given size and box objects."""

from typing import List

import cv2
import numpy as np

from ros2_ttvos.demo import sample_clip


def object_masks(shape, count: int) -> np.ndarray:
    """``count`` non-overlapping box objects spread over a frame of ``shape``."""
    h, w = shape
    labels = np.zeros(shape, np.uint8)
    for k in range(count):
        x0 = int(w * (0.05 + 0.9 * k / count))
        labels[h // 4 : 3 * h // 4, x0 : x0 + int(0.8 * w / count)] = k + 1
    return labels


def clip_frames(shape) -> List[np.ndarray]:
    """The bundled clip's frames resized to ``shape`` (h, w)."""
    sequence = sample_clip()
    return [cv2.resize(sequence.image(i), shape[::-1], interpolation=cv2.INTER_AREA) for i in range(len(sequence))]

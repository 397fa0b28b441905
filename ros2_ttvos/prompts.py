"""Box prompts: a detector's bounding box (or a box drawn in a UI) turned into the object mask
that tracking starts from (``Tracker.add_objects_from_boxes``).

Methods, all on the CPU:
  "network"  the tracker's own network refines the box: the box is given as the object's mask
             on the frame, the frame is segmented with it, and the result (kept inside the box)
             is given again, ``NETWORK_ROUNDS`` times. Runs in whatever backend the tracker uses.
  "grabcut"  OpenCV's GrabCut inside the box (the classical baseline).
  "box"      the filled box itself.
Which is the default is decided on the hold-out sequences (``ttvos-eval --init box``: README,
Evaluate).
"""

from typing import Dict, Mapping, Sequence, Tuple

import cv2
import numpy as np

BOX_METHODS = ("network", "grabcut", "box")
DEFAULT_BOX_METHOD = "network"
NETWORK_ROUNDS = 3  # hold-out first-frame J 55.6 / 62.8 / 69.0 after 1 / 2 / 3 rounds (tracking J&F 70.5 all)
GRABCUT_ITERATIONS = 5
Box = Tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1 and y1 exclusive


def check_boxes(boxes: Mapping[int, Sequence[float]], shape: Tuple[int, int], max_id: int = 255) -> Dict[int, Box]:
    """Boxes as integer pixel boxes clipped to an image of ``shape`` (h, w); ValueError saying
    what is wrong with any of them (nothing is clipped away silently: a box must overlap the
    image by at least 2x2 pixels)."""
    if not boxes:
        raise ValueError("no boxes given")
    height, width = shape
    checked = {}
    for object_id, box in boxes.items():
        if not 1 <= int(object_id) <= max_id:
            raise ValueError(f"object id {object_id} must be in 1..{max_id}")
        if len(box) != 4 or not all(np.isfinite(float(v)) for v in box):
            raise ValueError(f"box of object {object_id} must be 4 finite numbers (x0, y0, x1, y1), got {box}")
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box of object {object_id} is empty or inverted: {box}")
        clipped = (max(0, round(x0)), max(0, round(y0)), min(width, round(x1)), min(height, round(y1)))
        if clipped[2] - clipped[0] < 2 or clipped[3] - clipped[1] < 2:
            raise ValueError(f"box of object {object_id} {box} lies outside the {width}x{height} image")
        checked[int(object_id)] = clipped
    return checked


def _paint(shape: Tuple[int, int], masks: Dict[int, np.ndarray], boxes: Dict[int, Box]) -> np.ndarray:
    """One label image: larger boxes first, so that an object in front of a larger one keeps its pixels."""
    labels = np.zeros(shape, np.uint8)
    for object_id in sorted(masks, key=lambda i: -(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])):
        labels[masks[object_id]] = object_id
    return labels


def _inside(box: Box, shape: Tuple[int, int]) -> np.ndarray:
    inside = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    inside[y0:y1, x0:x1] = True
    return inside


def grabcut_mask(image: np.ndarray, box: Box) -> np.ndarray:
    """GrabCut's foreground inside ``box`` (bool, image size); the whole box if it finds none."""
    x0, y0, x1, y1 = box
    mask = np.zeros(image.shape[:2], np.uint8)
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    cv2.grabCut(
        bgr, mask, (x0, y0, x1 - x0, y1 - y0), background, foreground, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT
    )
    found = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return found if found.any() else _inside(box, image.shape[:2])


def network_labels(tracker, image: np.ndarray, boxes: Dict[int, Box]) -> np.ndarray:
    """The tracker's network refining the boxes on ``image`` (see the module's docstring)."""
    from ros2_ttvos.tracker import Tracker

    scratch = Tracker(tracker.backend, internal_size=tracker.internal_size, hold_when_lost="none")
    shape = image.shape[:2]
    masks = {object_id: _inside(box, shape) for object_id, box in boxes.items()}
    for _ in range(NETWORK_ROUNDS):
        scratch.reset()
        scratch.add_objects(image, _paint(shape, masks, boxes))
        labels = scratch.step(image).labels
        for object_id, box in boxes.items():
            refined = (labels == object_id) & _inside(box, shape)
            if refined.sum() >= 16:  # an object the network loses keeps its previous mask
                masks[object_id] = refined
    return _paint(shape, masks, boxes)


def box_labels(image: np.ndarray, boxes: Dict[int, Box], method: str, tracker=None) -> np.ndarray:
    """The label image that ``boxes`` (checked) make on ``image`` by ``method``."""
    if method not in BOX_METHODS:
        raise ValueError(f"box method must be one of {BOX_METHODS}, got {method!r}")
    if method == "network":
        return network_labels(tracker, image, boxes)
    shape = image.shape[:2]
    make = (lambda box: grabcut_mask(image, box)) if method == "grabcut" else (lambda box: _inside(box, shape))
    return _paint(shape, {object_id: make(box) for object_id, box in boxes.items()}, boxes)


def mask_box(mask: np.ndarray) -> Box:
    """The bounding box (x0, y0, x1, y1, exclusive ends) of a non-empty boolean mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def jittered(box: Box, rng: np.random.Generator, amount: float, shape: Tuple[int, int]) -> Box:
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

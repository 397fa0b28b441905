"""Prompts: a detector's bounding box, a box drawn in a UI, or clicks on the target turned into
the object mask that tracking starts from (``Tracker.add_objects_from_prompts``).

Methods, all on the CPU:
  "head"     the box head (model/box_head.py), trained for it: boxes, clicks (positive and
             negative), or both. Runs in whatever backend the tracker uses; the only method
             that takes clicks.
  "network"  the tracker's own network refines the box: the box is given as the object's mask
             on the frame, the frame is segmented with it, and the result (kept inside the box)
             is given again, ``NETWORK_ROUNDS`` times. Runs in whatever backend the tracker uses.
  "grabcut"  OpenCV's GrabCut inside the box (the classical baseline).
  "box"      the filled box itself.
The default is decided on the hold-out sequences (``ttvos-eval --init box``: docs/evaluation.md):
"head" where the tracker's weights have a box head, else "network".
"""

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from ros2_ttvos.prompt_crops import Click, crop_image, paste, prompt_maps, region_of

BOX_METHODS = ("head", "network", "grabcut", "box")
METHOD_CHOICES = ("auto", *BOX_METHODS)  # auto: see ``resolve_method``
DEFAULT_BOX_METHOD = "head"
FALLBACK_BOX_METHOD = "network"  # the default where the weights have no box head
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


def check_clicks(
    clicks: Mapping[int, Sequence[Sequence[float]]], shape: Tuple[int, int], max_id: int = 255
) -> Dict[int, List[Click]]:
    """Clicks {object_id: [(x, y, positive), ...]} checked: ids in range, finite pixel positions
    inside an image of ``shape`` (h, w); ValueError saying what is wrong."""
    height, width = shape
    checked: Dict[int, List[Click]] = {}
    for object_id, points in clicks.items():
        if not 1 <= int(object_id) <= max_id:
            raise ValueError(f"object id {object_id} must be in 1..{max_id}")
        if not points:
            raise ValueError(f"object {object_id} has an empty list of clicks")
        checked[int(object_id)] = []
        for point in points:
            if len(point) != 3 or not all(np.isfinite(float(v)) for v in point[:2]):
                raise ValueError(f"click of object {object_id} must be (x, y, positive), got {point}")
            x, y, positive = float(point[0]), float(point[1]), bool(point[2])
            if not (0 <= x < width and 0 <= y < height):
                raise ValueError(f"click ({x:g}, {y:g}) of object {object_id} lies outside the {width}x{height} image")
            checked[int(object_id)].append((x, y, positive))
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


def head_probabilities(
    backend, image: np.ndarray, boxes: Dict[int, Box], clicks: Dict[int, List[Click]]
) -> Tuple[List[int], np.ndarray]:
    """(ids, (N, H, W) probabilities at the image's size): the box head (in ``backend``) on each
    object's prompt, rows in the order of ``ids``."""
    if backend.box_crop is None:
        raise ValueError(f"box method head: the {backend.name} backend's weights have no box head")
    shape, size = image.shape[:2], backend.box_crop
    ids = sorted(set(boxes) | set(clicks))
    regions = [region_of(shape, boxes.get(object_id)) for object_id in ids]
    crops = np.stack([crop_image(image, region, size).transpose(2, 0, 1) for region in regions]).astype(np.float32)
    maps = np.stack(
        [prompt_maps(region, size, boxes.get(i), clicks.get(i, ())) for i, region in zip(ids, regions, strict=True)]
    )
    probability = backend.box(crops, maps)
    return ids, np.stack([paste(p[0], region, shape) for p, region in zip(probability, regions, strict=True)])


def head_labels(backend, image: np.ndarray, boxes: Dict[int, Box], clicks: Dict[int, List[Click]]) -> np.ndarray:
    """``head_probabilities`` as labels: a pixel goes to the object most sure of it, if any is
    more than half sure. A boxed object that gets no pixel keeps its box."""
    shape = image.shape[:2]
    ids, full = head_probabilities(backend, image, boxes, clicks)
    labels = np.zeros(shape, np.uint8)
    sure = full.max(axis=0) > 0.5
    labels[sure] = np.asarray(ids, np.uint8)[full.argmax(axis=0)[sure]]
    for object_id in ids:
        if object_id in boxes and not (labels == object_id).any():
            labels[_inside(boxes[object_id], shape) & (labels == 0)] = object_id
    return labels


def resolve_method(tracker, method: Optional[str]) -> str:
    """``method``, with None and "auto" made "head" where ``tracker``'s backend has a box head,
    else ``FALLBACK_BOX_METHOD``."""
    if method not in (None, "auto"):
        return method
    return DEFAULT_BOX_METHOD if getattr(tracker.backend, "box_crop", None) else FALLBACK_BOX_METHOD


def box_labels(
    image: np.ndarray, boxes: Dict[int, Box], method: str, tracker=None, clicks: Optional[Dict[int, List[Click]]] = None
) -> np.ndarray:
    """The label image that ``boxes`` and ``clicks`` (checked) make on ``image`` by ``method``
    (clicks: "head" only)."""
    if method not in BOX_METHODS:
        raise ValueError(f"box method must be one of {BOX_METHODS}, got {method!r}")
    if method == "head":
        return head_labels(tracker.backend, image, boxes, clicks or {})
    if clicks:
        raise ValueError(f"clicks need box method head; {method} takes boxes only")
    if method == "network":
        return network_labels(tracker, image, boxes)
    shape = image.shape[:2]
    make = (lambda box: grabcut_mask(image, box)) if method == "grabcut" else (lambda box: _inside(box, shape))
    return _paint(shape, {object_id: make(box) for object_id, box in boxes.items()}, boxes)


def prompt_labels(
    tracker,
    image: np.ndarray,
    boxes: Optional[Mapping[int, Sequence[float]]],
    clicks: Optional[Mapping[int, Sequence[Sequence[float]]]],
    method: Optional[str],
    max_id: int,
) -> np.ndarray:
    """``Tracker.prompt_mask``: the prompts checked, then made a label image by ``method``."""
    if not boxes and not clicks:
        raise ValueError("no boxes and no clicks given")
    checked = check_boxes(boxes, image.shape[:2], max_id) if boxes else {}
    checked_clicks = check_clicks(clicks, image.shape[:2], max_id) if clicks else {}
    unboxed = [i for i, points in checked_clicks.items() if i not in checked and not any(p[2] for p in points)]
    if unboxed:
        raise ValueError(f"objects {unboxed} have neither a box nor a positive click")
    labels = box_labels(image, checked, resolve_method(tracker, method), tracker, checked_clicks)
    empty = [object_id for object_id in sorted({*checked, *checked_clicks}) if not (labels == object_id).any()]
    if empty:
        raise ValueError(f"objects {empty} get no pixels (covered by other objects, or nothing found at the clicks)")
    return labels

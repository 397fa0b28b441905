"""What a ``set_targets`` request asks for: a label mask, boxes, clicks, or any mix of them,
checked, and the one label image they make on the frame (``Tracker.prompt_mask`` for the boxes
and clicks; the mask's own pixels stay its objects')."""

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from ros2_ttvos.ros import conversions


@dataclass
class Targets:
    """labels: the request's mask (zeros without one); boxes: {id: (x0, y0, x1, y1)}; clicks:
    {id: [(x, y, positive), ...]}. An id is the mask's, or a prompt's (a box's, its clicks', or both)."""

    labels: np.ndarray
    boxes: Dict[int, Tuple[int, int, int, int]] = field(default_factory=dict)
    clicks: Dict[int, List[Tuple[float, float, bool]]] = field(default_factory=dict)

    @property
    def ids(self) -> List[int]:
        return [int(v) for v in np.unique(self.labels) if v != 0] + sorted({*self.boxes, *self.clicks})


def parse_request(request, image: np.ndarray) -> Targets:
    """The request's targets; ValueError or ``conversions.ConversionError`` saying what is wrong."""
    if image is None:
        raise ValueError("no frame received yet: send the image with the request or wait for the camera")
    if len(request.boxes) != len(request.box_ids):
        raise ValueError(f"{len(request.boxes)} boxes but {len(request.box_ids)} box_ids: one id per box")
    if len(request.clicks) != len(request.click_ids):
        raise ValueError(f"{len(request.clicks)} clicks but {len(request.click_ids)} click_ids: one id per click")
    if request.click_positive and len(request.click_positive) != len(request.clicks):
        raise ValueError(
            f"{len(request.click_positive)} click_positive for {len(request.clicks)} clicks: one per click, or none"
        )
    box_ids = [int(i) for i in request.box_ids]
    if len(set(box_ids)) != len(box_ids):
        raise ValueError(f"box_ids repeat an id: {box_ids}")
    if not request.mask.data and not box_ids and not request.clicks:
        raise ValueError("the request has no mask, no boxes and no clicks")
    labels = np.zeros(image.shape[:2], np.uint8)
    if request.mask.data:
        labels = conversions.image_to_labels(request.mask)
        if not labels.any():
            raise ValueError("mask has no object pixels (all background)")
    positive = list(request.click_positive) or [True] * len(request.clicks)
    clicks: Dict[int, List[Tuple[float, float, bool]]] = {}
    for object_id, point, sign in zip(request.click_ids, request.clicks, positive, strict=True):
        clicks.setdefault(int(object_id), []).append((float(point.x), float(point.y), bool(sign)))
    clash = sorted(({*box_ids} | {*clicks}) & {int(v) for v in np.unique(labels)})
    if clash:
        raise ValueError(f"ids {clash} of boxes or clicks are also ids of the mask")
    boxes = {i: conversions.roi_to_box(roi) for i, roi in zip(box_ids, request.boxes, strict=True)}
    return Targets(labels, boxes, clicks)


def target_labels(tracker, image: np.ndarray, targets: Targets, method: str) -> np.ndarray:
    """One label image: the mask, with the boxes' and clicks' objects (made by ``method``) on its
    background; ValueError when a prompt's object ends with no pixels."""
    if not targets.boxes and not targets.clicks:
        return targets.labels
    made = tracker.prompt_mask(image, targets.boxes, targets.clicks, method)
    labels = np.where(targets.labels > 0, targets.labels, made).astype(np.uint8)
    covered = [i for i in sorted({*targets.boxes, *targets.clicks}) if not (labels == i).any()]
    if covered:
        raise ValueError(f"the objects of boxes or clicks {covered} lie entirely under the mask's objects")
    return labels

"""DAVIS region similarity J and contour accuracy F, as pure functions of masks.

Follows the official DAVIS evaluation protocol:
- J is the intersection over union; an empty union scores 1.
- F is the F-measure of boundary pixels matched within a tolerance of
  ceil(0.008 * image diagonal) pixels (a disk-shaped dilation); when neither mask has a
  boundary F is 1, when only one has, its precision/recall is 0/1.
- Sequence statistics are computed over frames 1..T-2: the first frame (given) and the last
  frame are excluded, as the official code does. Callers pass all frames to ``sequence_scores``.
"""

from typing import Dict, NamedTuple, Optional

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008
DECAY_BINS = 4


class Statistics(NamedTuple):
    mean: float
    recall: float  # fraction of frames scoring above 0.5
    decay: float  # mean of the first quarter minus mean of the last quarter


def region_similarity(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """J (IoU) of boolean masks over the last two axes; leading axes are kept."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    intersection = np.sum(prediction & truth, axis=(-2, -1))
    union = np.sum(prediction | truth, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        score = intersection / union
    return np.where(union == 0, 1.0, score)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a boolean (H, W) mask, as in the DAVIS reference."""
    seg = mask.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def _disk(radius: int) -> np.ndarray:
    grid = np.arange(-radius, radius + 1)
    return ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).astype(np.uint8)


def contour_accuracy(prediction: np.ndarray, truth: np.ndarray) -> float:
    """F of one frame: boundary F-measure of boolean (H, W) masks."""
    tolerance = int(np.ceil(BOUNDARY_TOLERANCE * np.linalg.norm(prediction.shape)))
    disk = _disk(tolerance)
    pred_boundary = boundary_map(prediction)
    true_boundary = boundary_map(truth)
    n_pred, n_true = int(pred_boundary.sum()), int(true_boundary.sum())
    if n_pred == 0 and n_true == 0:
        return 1.0
    if n_pred == 0 or n_true == 0:
        return 0.0  # precision or recall is 0, the other 1
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), disk)
    true_dilated = cv2.dilate(true_boundary.astype(np.uint8), disk)
    precision = np.sum(pred_boundary & (true_dilated > 0)) / n_pred
    recall = np.sum(true_boundary & (pred_dilated > 0)) / n_true
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def statistics(per_frame: np.ndarray) -> Statistics:
    """Mean, recall (> 0.5) and decay of per-frame scores (NaN entries ignored)."""
    values = np.asarray(per_frame, dtype=np.float64)
    valid = ~np.isnan(values)
    mean = float(np.mean(values[valid]))
    recall = float(np.mean(values[valid] > 0.5))
    edges = (np.round(np.linspace(1, len(values), DECAY_BINS + 1) + 1e-10) - 1).astype(int)
    bins = [values[edges[i] : edges[i + 1] + 1] for i in range(DECAY_BINS)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[-1]))
    return Statistics(mean, recall, decay)


class ObjectScores(NamedTuple):
    J: np.ndarray  # per evaluated frame (frames 1..T-2)
    F: np.ndarray
    J_stats: Statistics
    F_stats: Statistics


def object_scores(prediction: np.ndarray, truth: np.ndarray) -> ObjectScores:
    """Scores of one object over a sequence: boolean (T, H, W) masks of all T frames."""
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from ground truth {truth.shape}")
    prediction, truth = prediction[1:-1], truth[1:-1]
    j = region_similarity(prediction, truth).astype(np.float64)
    f = np.array([contour_accuracy(p, t) for p, t in zip(prediction, truth, strict=True)], dtype=np.float64)
    return ObjectScores(j, f, statistics(j), statistics(f))


def sequence_scores(
    predicted_labels: np.ndarray, true_labels: np.ndarray, object_ids: Optional[list] = None
) -> Dict[int, ObjectScores]:
    """Scores per object of label sequences (T, H, W); ``object_ids`` default: ids in the truth."""
    if object_ids is None:
        object_ids = [int(v) for v in np.unique(true_labels) if v != 0]
    return {k: object_scores(predicted_labels == k, true_labels == k) for k in object_ids}


HIDDEN = 0.25  # an object with less than this share of its first-frame area in view is hidden
BACK = 0.5  # ... and back in view, after it was hidden, with at least this share


class FrameFailures(NamedTuple):
    """How an object fails, counted over the evaluated frames on which it is visible."""

    frames: int  # evaluated frames on which the object is visible in the ground truth
    switches: int  # most of its true pixels carry one other object's label (an identity switch)
    lost: int  # under half of its true pixels carry its label, and it is not a switch
    spilled: int  # more of its label lies outside its true pixels than inside (onto others, background)
    returned: int = 0  # frames on which it is back in view after it was hidden (``HIDDEN``, ``BACK``)
    lost_on_return: int = 0  # of those, the lost ones: it was not picked up again

    def columns(self) -> Dict[str, int]:
        """The failure counts under their column names in ``per_sequence.csv`` and the bag report."""
        counts = (self.switches, self.lost, self.spilled, self.returned, self.lost_on_return)
        return dict(zip(FAILURE_COLUMNS, counts, strict=True))


FAILURE_COLUMNS = ("id_switches", "lost_frames", "spilled_frames", "returned_frames", "lost_on_return")


def frame_failures(
    predicted_labels: np.ndarray, true_labels: np.ndarray, object_ids: Optional[list] = None
) -> Dict[int, FrameFailures]:
    """Per object, on the frames J and F evaluate (1..T-2): identity switches, lost frames and
    spilled frames, and the frames on which it is back in view after it was hidden, lost or not
    (``FrameFailures``). A frame can be lost and spilled at once."""
    if object_ids is None:
        object_ids = [int(v) for v in np.unique(true_labels) if v != 0]
    counts = {}
    for k in object_ids:
        first_area = np.count_nonzero(true_labels[0] == k)
        frames = switches = lost = spilled = returned = lost_on_return = 0
        was_hidden = False
        for index in range(1, len(true_labels) - 1):
            predicted, truth = predicted_labels[index], true_labels[index]
            inside = predicted[truth == k]
            back = was_hidden and inside.size >= BACK * first_area
            was_hidden = was_hidden or inside.size < HIDDEN * first_area
            if inside.size == 0:
                continue
            frames += 1
            labels = np.bincount(inside, minlength=256)
            own = int(labels[k])
            labels[[0, k]] = 0
            switched = labels.max() > inside.size / 2
            switches += int(switched)
            is_lost = not switched and own < inside.size / 2
            lost += int(is_lost)
            spilled += int(np.count_nonzero(predicted == k) - own > own)
            returned += int(back)
            lost_on_return += int(back and is_lost)
        counts[k] = FrameFailures(frames, switches, lost, spilled, returned, lost_on_return)
    return counts
